"""The compressed-tensors checkpoint (read by vLLM and transformers): config and tensors.

config.json["quantization_config"] is built from the library's own pydantic models
(QuantizationConfig / QuantizationScheme / QuantizationArgs), so the library
validates it; the weights are compressed by its FloatQuantizationCompressor /
IntQuantizationCompressor from the scales computed here. Per quantized module:

    <module>.weight        float8_e4m3fn or int8, (out, in)
    <module>.weight_scale  (out, 1) per output channel, the checkpoint's dtype
    <module>.input_scale   (1,), the checkpoint's dtype (static schemes only)

KV-cache scales (issue #18) plug in here: `kv_cache_scheme` (QuantizationArgs
fields) and `extra` tensors such as `model.layers.0.self_attn.k_scale`.
"""

from __future__ import annotations

import torch

from .plan import Plan
from .weights import cast_floating, channel_scale

FORMATS = {"float": "float-quantized", "int": "int-quantized"}


def scheme_of(plan: Plan):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    kind = plan.scheme.kind
    weights = QuantizationArgs(num_bits=8, type=kind, strategy="channel", symmetric=True, dynamic=False)
    inputs = QuantizationArgs(
        num_bits=8,
        type=kind,
        strategy="tensor" if plan.scheme.static else "token",
        symmetric=True,
        dynamic=not plan.scheme.static,
    )
    return QuantizationScheme(targets=["Linear"], weights=weights, input_activations=inputs)


def quantization_config(plan: Plan, kv_cache_scheme: dict | None = None) -> dict:
    """config.json's quantization_config, validated by compressed-tensors' QuantizationConfig."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig

    cfg = QuantizationConfig(
        config_groups={"group_0": scheme_of(plan)},
        quant_method="compressed-tensors",
        format=FORMATS[plan.scheme.kind],
        quantization_status="compressed",
        ignore=sorted(plan.ignore),
        kv_cache_scheme=QuantizationArgs(**kv_cache_scheme) if kv_cache_scheme else None,
    )
    return cfg.model_dump(mode="json")


def transform(plan: Plan, dtype: torch.dtype):
    """name, tensor -> output tensors: quantized modules gain weight_scale (and input_scale)."""
    from compressed_tensors.compressors import FloatQuantizationCompressor, IntQuantizationCompressor

    compressor = FloatQuantizationCompressor if plan.scheme.kind == "float" else IntQuantizationCompressor
    scheme = scheme_of(plan)
    fmt = plan.scheme.fmt

    def run(name: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
        module = name.removesuffix(".weight")
        p = plan.modules.get(module) if name.endswith(".weight") else None
        if p is None:
            return {name: cast_floating(t, dtype)}
        w = t.to(dtype)
        scale = channel_scale(w, fmt, dtype)  # (out, 1)
        packed = compressor.compress({"weight": w, "weight_scale": scale}, scheme)
        out = {name: packed["weight"], f"{module}.weight_scale": scale}
        if p.scale is not None:
            out[f"{module}.input_scale"] = p.scale.to(dtype)
        return out

    return run
