"""Weights, shard by shard from the source safetensors files: quantized where the plan says, else copied.

Each source shard is opened memory-mapped and read one tensor at a time; the
output shard is written (atomically) before the next is opened, so peak memory
is one output shard plus one tensor, near one copy of the model and never two.

Per-channel symmetric weight scales follow the activation rule (scales.py):
max|W| of each output row / qmax, rounded up in the stored dtype, so no weight clips.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import ModelError
from ..quant.formats import Format
from ..quant.primitives import stored_scale

INDEX = "model.safetensors.index.json"

# name, tensor -> the tensors written in its place (a quantized weight becomes weight + weight_scale ...)
Transform = Callable[[str, torch.Tensor], dict[str, torch.Tensor]]


def source_shards(directory: Path) -> list[Path]:
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{directory} holds no safetensors weights", "deploy needs a safetensors model")
    return files


def channel_scale(w: torch.Tensor, fmt: Format, dtype: torch.dtype) -> torch.Tensor:
    """(out, 1) scale of an (out, in) weight: max|W| per output channel / qmax, rounded up."""
    amax = w.detach().abs().amax(dim=1, keepdim=True).float()  # (out, 1)
    return stored_scale(amax, fmt, dtype)


def tensor_scale(w: torch.Tensor, fmt: Format) -> torch.Tensor:
    """() float32 per-tensor scale: max|W| / qmax, rounded up (ModelOpt FP8 weights)."""
    return stored_scale(w.detach().abs().amax().float(), fmt, torch.float32)


def write_shards(
    src: Path, out: Path, transform: Transform, extra: dict[str, torch.Tensor] | None = None
) -> dict[str, str]:
    """Transform every tensor of every source shard into `out` (same shard names); the weight map.

    `extra` tensors (per-layer KV-cache scales ...) go into the last shard.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    from ..rundir import atomic_write

    shards = source_shards(src)
    weight_map: dict[str, str] = {}
    for k, path in enumerate(shards):
        tensors: dict[str, torch.Tensor] = {}
        try:
            with safe_open(str(path), "pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    tensors.update(transform(name, f.get_tensor(name)))
        except (SafetensorError, OSError) as err:
            raise ModelError(
                f"{path} is truncated or corrupt ({str(err).splitlines()[0][:80]})",
                "re-download or re-convert the model",
            ) from None
        if extra and k == len(shards) - 1:
            tensors.update(extra)
        tensors = {n: t.contiguous() for n, t in tensors.items()}
        atomic_write(out / path.name, lambda p, t=tensors: save_file(t, p, metadata={"format": "pt"}))
        weight_map.update(dict.fromkeys(tensors, path.name))
        del tensors
    if len(shards) > 1:
        index = {"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return weight_map


def cast_floating(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t
