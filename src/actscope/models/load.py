"""Load a causal LM and its tokenizer from a built-in name, a GGUF file, a model
directory or the local Hugging Face cache.

Every source is first resolved to a local Hugging Face-format directory (GGUF
files through a cached safetensors conversion), then loaded the same way:
local files only, safetensors unless pickles are explicitly allowed, remote code
only when asked. Nothing here touches the network, except models/hub.py when a Hub id is
given with download=True (--download).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..corpus.tokenize import CONTEXT_ATTR
from ..errors import ModelError, UserError
from . import weights
from .resolve import ResolvedSource, resolve_source

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")


@dataclass
class LoadedModel:
    model: torch.nn.Module  # eval(), requires_grad off, on the device (or spread by device_map)
    tokenizer: Any  # the family's own transformers tokenizer
    info: dict  # JSON-serialisable manifest section: source, hash, dtype, quantization, BOS ...


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
    weights.check_files(sorted(d.glob("*.safetensors")))


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
    except (ValueError, KeyError, OSError, TypeError) as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(directory) from err
        # transformers explains an unknown model_type in several paragraphs: keep the first line
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(
            f"cannot read the config in {directory}: {reason}",
            "check config.json (this transformers may not know the model_type; try a newer one)",
        ) from err
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
    weights.check_max_memory(max_memory)
    src = resolve_source(source, cache_dir, download=download, revision=revision)
    config = _load_config(src.directory, trust_remote_code)
    _check_weights(src, allow_pickle)
    tokenizer = _load_tokenizer(src.directory, trust_remote_code)
    context = getattr(config, "max_position_embeddings", None)
    if isinstance(context, int) and context > 0:
        setattr(tokenizer, CONTEXT_ATTR, context)  # corpus.tokenize warns past it
    model = weights.load(
        src, config, torch_dtype, device, trust_remote_code, device_map, max_memory, cache_dir
    )
    info = {"source": source, "kind": src.kind, **src.info}
    info.update(_model_info(model, config, torch_dtype, device, device_map))
    info.update(tokenizer_info(tokenizer))
    return LoadedModel(model, tokenizer, info)


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
