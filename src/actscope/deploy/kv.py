"""KV-cache scales for a deployed checkpoint: `actscope deploy --kv-cache fp8-e4m3[:tensor|:head]`.

    scheme, tensors, record = kv_cache(view, "fp8-e4m3:tensor", torch.float32)

The scales are quant/kvcache.kv_scales (measured max|a| of the cached keys and values per
layer, or per KV head, / 448, rounded up in float32), then rounded up again in the dtype
the checkpoint stores them in, so k_scale x 448 >= the measured peak of every layer (and
head). They are written as `<attention module>.k_scale` / `.v_scale` with compressed-tensors'
`kv_cache_scheme` in the quantization config (the layout vLLM reads for kv_cache_dtype=fp8).
Only FP8 E4M3 is written: vLLM's FP8 KV cache uses E4M3 scales and ignores E5M2 ones.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..quant.kvcache import kv_cache_scheme, kv_format, kv_peaks, kv_scales, parse_kv_scheme, stored_layout
from ..quant.primitives import round_up

DEPLOYABLE = ("fp8-e4m3",)


def parse(spec: str) -> tuple[str, str]:
    fmt, gran = parse_kv_scheme(spec)
    if fmt not in DEPLOYABLE:
        raise UserError(
            f"--kv-cache {spec!r}: only FP8 E4M3 KV-cache scales are deployed",
            "use --kv-cache fp8-e4m3 or fp8-e4m3:head (vLLM's FP8 KV cache reads E4M3 scales)",
        )
    return fmt, gran


def kv_cache(view, spec: str, dtype: torch.dtype) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(kv_cache_scheme, {tensor name: scale}, record of scales and peaks per layer)."""
    fmt, gran = parse(spec)
    qmax = kv_format(fmt).max_value
    peaks, scales = kv_peaks(view), kv_scales(view, fmt, gran)
    tensors, layers = {}, []
    for i, s in scales.items():
        row = {"layer": i, "module": s["module"]}
        for which in ("k", "v"):
            peak = peaks[i][which] if gran == "head" else np.asarray([peaks[i][which].max()])
            stored = round_up(s[f"{which}_scale"], dtype, torch.as_tensor(peak, dtype=torch.float32), qmax)
            tensors[f"{s['module']}.{which}_scale"] = stored_layout(stored)
            row[f"{which}_scale"] = stored.double().reshape(-1).tolist()
            row[f"{which}_peak"] = [float(x) for x in peak]
        layers.append(row)
    record = {"scheme": f"{fmt}:{gran}", "qmax": qmax, "layers": layers,
              "rule": f"scale = measured max|a| / {qmax:g}, rounded up in float32 and in the stored dtype"}  # fmt: skip
    return kv_cache_scheme(fmt, gran), tensors, record
