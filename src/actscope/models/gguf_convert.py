"""GGUF files: validate, read the quantization metadata, convert once to safetensors.

transformers dequantizes every GGUF tensor and rebuilds the tokenizer on each
`from_pretrained(..., gguf_file=...)` (~25 s for SmolLM2 135M, ~65 s for Gemma 3
270M on two CPU cores). We do that once per file content and keep a float32
safetensors copy under `<cache root>/<sha256 of the GGUF>/`, which reloads in
about a second. Every load, the first included, then reads that copy, so the
first and later loads give bit-identical models. The copy records each file's
sha256; a damaged copy is found on load and converted again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..cache import LOCK_FILE, atomic_dir, cached_sha256, remember_sha256, sha256_file
from ..errors import ModelError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
META_FILE = "actscope-gguf.json"  # written into each converted directory
NOTE = "activations are those of the dequantized GGUF weights, not of the original bf16 release"


@dataclass(frozen=True)
class GgufMeta:
    architecture: str  # GGUF's general.architecture, e.g. "gemma3"
    quant_type: str  # from general.file_type, e.g. "Q4_K_M"; else the commonest non-float tensor type
    tensor_types: dict[str, int]  # tensor type -> count, e.g. {"Q4_K": 27, "Q5_0": 81, "F32": 109}


def is_gguf(path: Path) -> bool:
    """Magic-byte check, cheap enough to decide how to load any file."""
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_meta(path: Path) -> GgufMeta:
    """Parse the header and tensor table; a truncated or corrupt file fails here, not mid-conversion."""
    import gguf  # heavy-ish (numpy memmap machinery): only when a GGUF is actually loaded

    if not is_gguf(path):
        raise _corrupt(path)
    try:
        reader = gguf.GGUFReader(path)
        arch = _field(reader, "general.architecture")
        file_type = _field(reader, "general.file_type")
        types = Counter(t.tensor_type.name for t in reader.tensors)
    except Exception as err:  # the reader raises IndexError/ValueError/struct errors on short files
        raise _corrupt(path) from err
    if not types:
        raise _corrupt(path)
    return GgufMeta(str(arch or "unknown"), _quant_name(gguf, file_type, types), dict(types))


def _corrupt(path: Path) -> ModelError:
    return ModelError(f"{path} is truncated or not a GGUF file", "re-download it")


def _field(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _quant_name(gguf, file_type, types: Counter) -> str:
    """Name like "Q4_K_M" from general.file_type; the tensor types alone do not name the mix."""
    if file_type is not None:
        try:
            return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    quantized = [(n, name) for name, n in types.items() if name not in {"F32", "F16", "BF16"}]
    return max(quantized)[1] if quantized else max((n, name) for name, n in types.items())[1]


def convert(gguf_path: Path, target: Path, meta: GgufMeta, root: Path, replace: bool = False) -> Path:
    """Dequantize `gguf_path` into `target` (safetensors, config, tokenizer), recording the
    size and sha256 of every file so that later loads can verify the entry (`damage`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors once (about a minute per 100M parameters)", gguf_path)
    kwargs = dict(gguf_file=gguf_path.name, local_files_only=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    except ValueError as err:  # e.g. "GGUF model with architecture X is not supported yet"
        raise ModelError(
            f"transformers cannot load {gguf_path} (architecture {meta.architecture!r}): {err}",
            "convert it to a Hugging Face directory elsewhere and pass that directory",
        ) from err
    _drop_gguf_marker(model)
    with atomic_dir(target, replace=replace) as tmp:
        # save_pretrained writes tied weights (lm_head = embed_tokens) once and the config
        # records tie_word_embeddings, so the reload ties them again.
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {
            p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.iterdir())
            if p.is_file() and p.name != LOCK_FILE
        }
        record = {"source": str(gguf_path), **asdict(meta), "files": files}
        (tmp / META_FILE).write_text(json.dumps(record, indent=1))
    for name, f in files.items():  # the first load after this one need not hash them again
        if (target / name).stat().st_size == f["size"]:
            remember_sha256(target / name, root, f["sha256"])
    return target


def damage(target: Path, root: Path) -> str | None:
    """Why the cached conversion in `target` cannot be trusted, or None when it is intact.

    Every file recorded at conversion time must be there with its size and sha256; the
    hash is memoised by (path, size, mtime), so an untouched entry costs a few stat calls.
    """
    if not target.is_dir():
        return "it is not a directory"
    try:
        files = json.loads((target / META_FILE).read_text()).get("files")
    except FileNotFoundError:
        return f"it has no {META_FILE}"
    except (OSError, ValueError, AttributeError):
        files = None
    if not isinstance(files, dict) or not files:
        return f"its {META_FILE} is unreadable or from an older actscope (no file hashes)"
    for name, f in files.items():
        path = target / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != f["size"]:
            return f"{name} has {path.stat().st_size:,} bytes, {f['size']:,} when written"
        if cached_sha256(path, root) != f["sha256"]:
            return f"{name} does not match the sha256 recorded when it was written"
    return None


def _drop_gguf_marker(model: torch.nn.Module) -> None:
    """The weights are plain float32 after dequantization, but transformers still marks the
    model as GGUF-quantized and save_pretrained refuses it; remove the marker."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def converted_meta(target: Path) -> GgufMeta:
    data = json.loads((target / META_FILE).read_text())
    return GgufMeta(data["architecture"], data["quant_type"], data["tensor_types"])
