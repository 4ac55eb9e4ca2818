"""Writing a run directory: prepare it, lock it, and write every file atomically.

Each file is written to a temporary name beside it and renamed into place, so a
reader (or a crash) never sees half a file. Tables are checked against their
schema (schema.py) as they are written.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

from ..errors import RunDirError
from .schema import MANIFEST, STATE, schema

LOCK = ".lock"  # inside the run directory; survives --overwrite (prepare_run_dir keeps it)


def prepare_run_dir(path: str | Path, *, overwrite: bool, resume: bool, dry: bool = False) -> Path:
    """Create (or reuse, with resume/overwrite) a run directory we can write to.

    dry=True only checks, changing nothing: measure() calls it before the slow
    model load, so that a bad --out fails fast and a failed load keeps the old run.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output {out} exists and is not a directory", "choose another --out")
    if out.exists() and any(p.name != LOCK for p in out.iterdir()):
        is_run = (out / MANIFEST).exists()
        if resume and is_run:
            return out
        if resume:
            raise RunDirError(f"--resume given, but {out} holds no run", "drop --resume to start a new run")
        if not overwrite:
            raise RunDirError(
                f"output directory {out} already exists",
                "pass --overwrite to replace it or --resume to continue it",
            )
        if not is_run:
            raise RunDirError(f"{out} is not empty and is not an actscope run", "choose another --out")
        if dry:
            return out
        _clear(out)
    if dry:
        parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
        if not os.access(parent, os.W_OK):
            raise RunDirError(
                f"cannot write to output directory {out} (permission denied)", "choose a writable --out"
            )
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunDirError(
            f"cannot write to output directory {out} ({e.strerror})", "choose a writable --out"
        ) from None
    return out


def _clear(out: Path) -> None:
    """Remove a run's files, keeping the lock file that the writing process holds."""
    for p in out.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


class RunLock:
    """An exclusive lock on a run directory for one writing process (flock on OUT/.lock).

    Two `measure --overwrite` into one --out would otherwise both report success
    with one run gone; the second now fails at once with a clear message.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(
                f"cannot write to output directory {self.out} ({e.strerror})", "choose a writable --out"
            ) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise RunDirError(
                f"another actscope process is writing {self.out}",
                "wait for it to finish, or choose another --out",
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def atomic_write(path: Path, write) -> None:
    """write(tmp_path) to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda p: Path(p).write_text(text))


def write_manifest(out: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=False, default=_json_default)
    atomic_write_text(Path(out) / MANIFEST, text + "\n")


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_table(out: Path, name: str, table: pa.Table | dict[str, list]) -> None:
    """Write `name`.parquet; a dict of columns is typed by the table's schema."""
    if not isinstance(table, pa.Table):
        table = rows_table(name, table)
    atomic_write(Path(out) / f"{name}.parquet", lambda p: pq.write_table(table, p))


def rows_table(name: str, columns: dict[str, list]) -> pa.Table:
    """A table of fixed schema (hist, topk, quant ...) from a dict of columns (may be empty)."""
    sch = schema(name)
    if not columns:
        return sch.empty_table()
    return pa.Table.from_pydict({f.name: columns[f.name] for f in sch}, schema=sch)


def save_state(out: Path, state: dict[str, torch.Tensor], meta: dict, name: str = STATE) -> None:
    """Atomic checkpoint of the accumulator state; meta identifies what it belongs to."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(
        Path(out) / name,
        lambda p: save_file(tensors, p, metadata={"meta": json.dumps(meta, sort_keys=True)}),
    )
