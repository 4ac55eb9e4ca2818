"""The run directory: a versioned manifest, Parquet tables and resumable state.

    run.json          manifest: schema, versions, model, corpus, settings, status, summary
    sites.parquet     one row per site: scalar statistics
    channels.parquet  per (site, channel): max|a|, mean, rms, sum x^2, massive and >=6 counts
    hist.parquet      per (site, bin): nonzero |a|-histogram bins with their edges
    topk.parquet      per (site, rank): top activations with provenance and token text
    samples.parquet   per sample: id, domain, tokens, and max|a| at every site
    state/            accumulator state (safetensors) for resume and merge

docs/run-format.md documents every column. Reports read only this directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from .errors import RunDirError

SCHEMA_VERSION = 1
MANIFEST = "run.json"
STATE = "state/accumulators.safetensors"
TABLES = ("sites", "channels", "hist", "topk", "samples")


def prepare_run_dir(path: str | Path, *, overwrite: bool, resume: bool, dry: bool = False) -> Path:
    """Create (or reuse, with resume/overwrite) a run directory we can write to.

    dry=True only checks, changing nothing: measure() calls it before the slow
    model load, so that a bad --out fails fast and a failed load keeps the old run.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output {out} exists and is not a directory", "choose another --out")
    if out.exists() and any(out.iterdir()):
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
        shutil.rmtree(out)
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


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_manifest(out: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=False, default=_json_default)
    _atomic_write(out / MANIFEST, lambda p: Path(p).write_text(text + "\n"))


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_manifest(run: str | Path) -> dict:
    path = Path(run) / MANIFEST
    if not path.exists():
        raise RunDirError(
            f"{run} is not an actscope run directory (no {MANIFEST})",
            "give the --out directory of a measure run",
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(f"{path} is corrupt (not JSON)", "re-run the measurement") from None
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RunDirError(
            f"{run} has run schema {version!r}, newer than this actscope reads ({SCHEMA_VERSION})",
            "upgrade actscope",
        )
    return manifest


def write_table(out: Path, name: str, columns: dict[str, list]) -> None:
    table = pa.table(columns)
    _atomic_write(out / f"{name}.parquet", lambda p: pq.write_table(table, p))


def read_table(run: str | Path, name: str) -> pa.Table:
    path = Path(run) / f"{name}.parquet"
    if not path.exists():
        raise RunDirError(f"{run} has no {name} table", "the run may be incomplete; resume it with --resume")
    return pq.read_table(path)


def save_state(out: Path, state: dict[str, torch.Tensor], meta: dict, name: str = STATE) -> None:
    """Atomic checkpoint of the accumulator state; meta identifies what it belongs to."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    _atomic_write(
        out / name, lambda p: save_file(tensors, p, metadata={"meta": json.dumps(meta, sort_keys=True)})
    )


def load_state(out: Path, name: str = STATE) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(out) / name
    if not path.exists():
        raise RunDirError(f"{out} has no checkpoint to resume from", "start the run again without --resume")
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        return load_file(str(path)), meta
    except Exception:
        raise RunDirError(
            f"checkpoint {path} is corrupt", "delete it and start the run again without --resume"
        ) from None
