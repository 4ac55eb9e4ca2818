"""Load a causal LM and its tokenizer from a built-in name, a GGUF file, a model
directory or the local Hugging Face cache.

Every source is first resolved to a local Hugging Face-format directory (GGUF
files through a cached safetensors conversion), then loaded the same way:
local files only, safetensors unless pickles are explicitly allowed, remote code
only when asked. Nothing here touches the network, except models/hub.py when a Hub id is
given with download=True (--download).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError, UserError
from . import gguf_convert
from .cache import cache_root, cached_sha256
from .zoo import ZOO, ZooEntry

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass
class LoadedModel:
    model: torch.nn.Module  # eval(), requires_grad off, on the device (or spread by device_map)
    tokenizer: Any  # the family's own transformers tokenizer
    info: dict  # JSON-serialisable manifest section: source, hash, dtype, quantization, BOS ...


@dataclass(frozen=True)
class ResolvedSource:
    """A source turned into a local Hugging Face-format directory."""

    kind: str  # builtin | gguf | hf_dir | hf_cache | hf_hub (downloaded)
    directory: Path  # what from_pretrained reads
    info: dict = field(default_factory=dict)  # kind-specific manifest fields
    pickle_only: bool = False  # weights are *.bin/*.pt only (loaded only with allow_pickle)


# -- dtype and device ---------------------------------------------------------------------------


def resolve_device(name: str | None) -> str:
    """Default "cuda" when a GPU is visible, else "cpu"; an explicit name is checked."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"invalid --device {name!r}", "use cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"invalid --device {name!r}: no CUDA device is visible", "use --device cpu")
    return name


def resolve_dtype(name: str | None, device: str) -> torch.dtype:
    """float32 on the CPU (bf16 matmuls there are slow and round the very maxima we measure),
    bfloat16 on CUDA (the dtype these models are served in; fp16 overflows past 65,504)."""
    if name is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise UserError(f"invalid --dtype {name!r}", "choose float32, bfloat16 or float16") from None


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
    if source in ZOO:
        return _builtin(ZOO.get(source), cache_root(cache_dir))
    if _REPO_ID.fullmatch(source):
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
    if (target / gguf_convert.META_FILE).is_file():
        meta = gguf_convert.converted_meta(target)
    else:
        meta = gguf_convert.read_meta(path)  # fails cleanly on a truncated file
        gguf_convert.convert(path, target, meta)
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


# -- checks on a resolved directory ----------------------------------------------------------------


def _check_weights(src: ResolvedSource, allow_pickle: bool) -> None:
    d = src.directory
    if "sha256" not in src.info:
        raise ModelError(
            f"no weights in {d}",
            "expected model.safetensors, or model-*.safetensors with model.safetensors.index.json",
        )
    if src.pickle_only and not allow_pickle:
        raise ModelError(
            f"{d} has only pickled weights (*.bin/*.pt), which can run code when loaded",
            "convert them to safetensors, or pass --allow-pickle only if the files are trusted",
        )


def _check_tokenizer_files(directory: Path) -> None:
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError(
            f"no tokenizer files in {directory}",
            f"copy the tokenizer ({', '.join(_TOKENIZER_FILES)} and tokenizer_config.json) next to the weights",
        )


def _load_config(directory: Path, trust_remote_code: bool):
    """The config, checked to be a causal LM that this transformers can build."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (ValueError, KeyError, OSError) as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(directory) from err
        raise ModelError(f"cannot read the config in {directory}: {err}", "check config.json") from err
    remote = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not (remote and trust_remote_code):
        if remote:
            raise _needs_remote_code(directory)
        raise _not_causal(directory, config)
    # BERT-like encoders are in the causal mapping too (as "LMHead" decoders), but only
    # when trained with is_decoder=True; their configs carry the flag, decoder LMs do not.
    if getattr(config, "is_decoder", None) is False:
        raise _not_causal(directory, config)
    return config


def _not_causal(directory: Path, config) -> ModelError:
    return ModelError(
        f"{directory} holds a {config.model_type!r} model, which is not a causal LM",
        "actscope measures models that AutoModelForCausalLM can load (decoder-only LMs)",
    )


def _needs_remote_code(directory: Path) -> ModelError:
    return ModelError(
        f"{directory} needs custom model code from its config (auto_map)",
        "pass --trust-remote-code only if you trust that code",
    )


# -- public API -----------------------------------------------------------------------------------


def load_tokenizer(source: str, *, cache_dir: str | Path | None = None, trust_remote_code: bool = False):
    """The tokenizer alone (a GGUF source is still converted once, then cached)."""
    return _load_tokenizer(resolve_source(source, cache_dir).directory, trust_remote_code)


def _load_tokenizer(directory: Path, trust_remote_code: bool):
    from transformers import AutoTokenizer

    _check_tokenizer_files(directory)
    try:
        return AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(directory) from err
        raise ModelError(
            f"cannot load the tokenizer in {directory}: {err}", "check the tokenizer files"
        ) from err


def load_model(
    source: str,
    *,
    dtype: str | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device_map: str | None = None,
    max_memory: dict | None = None,
    download: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """Load `source` for measurement: eval mode, no gradients, on `device` (or per `device_map`);
    a Hub id is downloaded only with `download` (safetensors, revision pinned)."""
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if max_memory is not None and device_map is None:
        raise UserError("--max-memory needs --device-map", "add --device-map auto")
    src = resolve_source(source, cache_dir, download=download, revision=revision)
    config = _load_config(src.directory, trust_remote_code)
    _check_weights(src, allow_pickle)
    tokenizer = _load_tokenizer(src.directory, trust_remote_code)
    model = _load_weights(src, config, torch_dtype, device, trust_remote_code, device_map, max_memory)
    info = {"source": source, "kind": src.kind, **src.info}
    info.update(_model_info(model, config, torch_dtype, device, device_map))
    info.update(tokenizer_info(tokenizer))
    return LoadedModel(model, tokenizer, info)


def _load_weights(src, config, dtype, device, trust_remote_code, device_map, max_memory) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        config=config,
        dtype=dtype,
        local_files_only=True,
        trust_remote_code=trust_remote_code,
        use_safetensors=not src.pickle_only,  # never fall back to pickles silently
    )
    if device_map is not None:
        # accelerate places the layers; what fits nowhere goes to disk in a scratch folder
        offload = tempfile.mkdtemp(prefix="actscope-offload-")
        kwargs.update(device_map=device_map, max_memory=max_memory, offload_folder=offload)
    try:
        model = AutoModelForCausalLM.from_pretrained(src.directory, **kwargs)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(src.directory) from err
        raise
    if device_map is None:
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def _model_info(model, config, dtype, device, device_map) -> dict:
    info = {
        "model_type": config.model_type,
        "architecture": (getattr(config, "architectures", None) or [type(model).__name__])[0],
        "n_params": sum(p.numel() for p in model.parameters()),  # tied weights counted once
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
    }
    if device_map is not None:
        info["device"] = "device_map"
        info["device_map"] = {k: str(v) for k, v in getattr(model, "hf_device_map", {}).items()}
    import transformers

    info["transformers"] = transformers.__version__
    return info


def tokenizer_info(tokenizer) -> dict:
    """Class, BOS token, and whether plain tokenization prepends BOS (Gemma yes, SmolLM2 no)."""
    ids = tokenizer("a")["input_ids"]
    bos_id = tokenizer.bos_token_id
    return {
        "tokenizer": type(tokenizer).__name__,
        "bos_token": tokenizer.bos_token,
        "add_bos": bos_id is not None and len(ids) > 0 and ids[0] == bos_id,
    }
