"""The NVIDIA ModelOpt FP8 checkpoint (vLLM's `modelopt` loader): a file format, written directly.

hf_quant_config.json:
    {"producer": {"name": "modelopt", "version": ...},
     "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": null, "exclude_modules": [...]}}
Per quantized module (ModelOpt FP8 is per tensor, weights and inputs):
    <module>.weight        float8_e4m3fn (out, in)
    <module>.weight_scale  () float32 = max|W| / 448, rounded up
    <module>.input_scale   () float32 = amax / 448, rounded up
config.json carries the same as quantization_config (quant_method modelopt), as ModelOpt's
own export writes it.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..quant.formats import FP8_E4M3
from .plan import Plan
from .weights import cast_floating, tensor_scale

PRODUCER_VERSION = "0.29.0"  # the hf_quant_config layout vLLM's ModelOpt loader reads


def check(plan: Plan) -> None:
    if plan.scheme.fmt is not FP8_E4M3 or not plan.scheme.static:
        raise UserError(
            f"--format modelopt writes static FP8 only, not {plan.scheme.name}",
            "use --scheme fp8-static, or --format compressed-tensors",
        )


def hf_quant_config(plan: Plan, kv_cache_quant_algo: str | None = None) -> dict:
    return {
        "producer": {"name": "modelopt", "version": PRODUCER_VERSION},
        "quantization": {
            "quant_algo": "FP8",
            "kv_cache_quant_algo": kv_cache_quant_algo,
            "exclude_modules": sorted(plan.ignore),
        },
    }


def quantization_config(plan: Plan) -> dict:
    q = hf_quant_config(plan)["quantization"]
    return {"quant_method": "modelopt", **q}


def transform(plan: Plan, dtype: torch.dtype):
    def run(name: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
        module = name.removesuffix(".weight")
        p = plan.modules.get(module) if name.endswith(".weight") else None
        if p is None:
            return {name: cast_floating(t, dtype)}
        w = t.float()
        scale = tensor_scale(w, FP8_E4M3)  # () float32
        q = FP8_E4M3.round(w / scale).to(torch.float8_e4m3fn)
        assert p.scale is not None
        return {
            name: q,
            f"{module}.weight_scale": scale,
            f"{module}.input_scale": p.scale.float().reshape(()),
        }

    return run
