"""Model sources -> a local Hugging Face-format directory: built-in names, GGUF files
(converted once into the cache, verified on every load), model directories and the local
Hugging Face cache. Nothing here downloads.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_root, cached_sha256
from ..errors import ModelError
from . import gguf_convert
from .zoo import ZOO, ZooEntry

log = logging.getLogger(__name__)

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class ResolvedSource:
    """A source turned into a local Hugging Face-format directory."""

    kind: str  # builtin | gguf | hf_dir | hf_cache | hf_hub (downloaded)
    directory: Path  # what from_pretrained reads
    info: dict = field(default_factory=dict)  # kind-specific manifest fields
    pickle_only: bool = False  # weights are *.bin/*.pt only (loaded only with allow_pickle)


# -- source resolution ------------------------------------------------------------------------------


def resolve_source(
    source: str, cache_dir: str | Path | None = None, *, download: bool = False, revision: str | None = None
) -> ResolvedSource:
    """Decide what `source` names and produce a loadable directory (converting GGUF once);
    a Hub id is read from the local cache, or fetched with `download` (models/hub.py)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _hf_dir(path, "hf_dir")
    if path.is_file():
        if gguf_convert.is_gguf(path) or path.suffix.lower() == ".gguf":
            return _gguf(path, cache_root(cache_dir), kind="gguf")
        raise ModelError(f"{path} is a file but not a GGUF file", "pass a model directory or a .gguf file")
    if os.path.lexists(path):  # there is such a name, but it is neither a file nor a directory
        raise ModelError(f"model {source!r} is {_special(path)}", "pass a model directory or a .gguf file")
    if source in ZOO:
        return _builtin(ZOO.get(source), cache_root(cache_dir))
    if _REPO_ID.fullmatch(source):
        if path.parent.is_dir():  # "models/smolm2" with a local models/: a typo, not a hub name
            raise _no_such_path(path)
        return _hf_hub(source, download, revision)
    close = difflib.get_close_matches(source, ZOO.names(), n=2, cutoff=0.6)
    if close:
        raise ModelError(
            f"unknown built-in model {source!r}",
            f"did you mean {' or '.join(close)}? built-in names: {', '.join(ZOO.names())}",
        )
    raise ModelError(
        f"model {source!r} is neither a built-in name nor an existing path",
        f"use {', '.join(ZOO.names())}, a model directory or a .gguf file",
    )


def _special(path: Path) -> str:
    from ..corpus.readers import file_kind

    try:
        return f"a {file_kind(path.stat().st_mode)}, not a model directory or file"
    except OSError as err:
        return "a symlink loop" if err.errno == errno.ELOOP else "a dangling symlink"


def _no_such_path(path: Path) -> ModelError:
    names = [p.name for p in path.parent.iterdir()]
    close = difflib.get_close_matches(path.name, names, n=2, cutoff=0.6)
    return ModelError(
        f"model path {str(path)!r} does not exist (and is not a hub name in the local Hugging Face cache)",
        f"did you mean {' or '.join(str(path.parent / c) for c in close)}?"
        if close
        else f"check the name; {path.parent} holds {len(names)} entries",
    )


def _builtin(entry: ZooEntry, root: Path) -> ResolvedSource:
    resolved = _gguf(entry.path(root), root, kind="builtin")
    resolved.info["builtin"] = {"name": entry.name, "package": entry.package, "license": entry.license}
    return resolved


def _gguf(path: Path, root: Path, kind: str) -> ResolvedSource:
    """Validate, hash and (once per content) convert a GGUF file."""
    if not gguf_convert.is_gguf(path):
        raise ModelError(f"{path} is truncated or not a GGUF file", "re-download it")
    sha = cached_sha256(path, root)
    target = root / sha
    if not (target.exists() or target.is_symlink()):
        gguf_convert.convert(path, target, gguf_convert.read_meta(path), root)
    elif (why := gguf_convert.damage(target, root)) is not None:
        _repair(path, target, root, why)
    meta = gguf_convert.converted_meta(target)
    info = {
        "path": str(path.resolve()),
        "sha256": sha,
        "hash_method": "sha256 of the GGUF file",
        "converted_path": str(target),
        "gguf_architecture": meta.architecture,
        "dequantized_from": meta.quant_type,
        "gguf_tensor_types": meta.tensor_types,
        "note": gguf_convert.NOTE,
    }
    return ResolvedSource(kind, target, info)


def _repair(path: Path, target: Path, root: Path, why: str) -> None:
    """A damaged cached conversion is converted again from the (hash-verified) GGUF file."""
    log.warning("the cached conversion %s is damaged (%s); converting %s again", target, why, path.name)
    try:
        gguf_convert.convert(path, target, gguf_convert.read_meta(path), root, replace=True)
    except OSError as err:
        raise ModelError(
            f"the model cache entry {target} is damaged ({why}) and cannot be replaced ({err.strerror or err})",
            f"delete it (rm -r {target}) or pass another --cache-dir",
        ) from err


def _hf_hub(repo_id: str, download: bool, revision: str | None) -> ResolvedSource:
    from . import hub

    directory, section = hub.snapshot(repo_id, download=download, revision=revision)
    src = _hf_dir(directory, "hf_hub" if section["downloaded"] else "hf_cache")
    src.info["hub"] = section
    return src


def _hf_dir(directory: Path, kind: str) -> ResolvedSource:
    if not (directory / "config.json").is_file():
        raise ModelError(
            f"{directory} has no config.json",
            "pass a Hugging Face model directory (config.json + *.safetensors) or a .gguf file",
        )
    safetensors = sorted(directory.glob("*.safetensors"))
    pickles = sorted(p for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    weights = safetensors or pickles
    info = {"path": str(directory.resolve())}
    if weights:
        info.update(sha256=_weights_digest(weights), hash_method=_WEIGHTS_HASH_METHOD)
    return ResolvedSource(kind, directory, info, pickle_only=not safetensors and bool(pickles))


_WEIGHTS_HASH_METHOD = "sha256 over the sorted weight-file names, sizes, first and last MiB"


def _weights_digest(files: list[Path]) -> str:
    """Identifies a checkpoint without reading tens of GB: names, sizes and both ends of each file."""
    digest = hashlib.sha256()
    mib = 1 << 20
    for path in sorted(files, key=lambda p: p.name):
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as f:
            digest.update(f.read(mib))
            f.seek(max(size - mib, 0))
            digest.update(f.read(mib))
    return digest.hexdigest()
