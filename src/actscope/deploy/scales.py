"""Static input scales from the run's measurements, rounded UP in the dtype they are stored in.

    threshold = clip rule on the site's measured |a|   (absmax, p99.99 or mse: quant/scales.py)
    scale     = threshold / qmax                       (quant/primitives.amax_to_scale, float32)
    stored    = scale cast to the checkpoint's dtype, moved one ulp up while
                stored x qmax < threshold              (so the peak is never clipped by rounding)

A bf16 cast rounds to nearest and can round the scale down by up to 2**-9
relative, which clips the measured peak (clients.md); float32's own division
can too. Both are checked in float64 and corrected with torch.nextafter.
"""

from __future__ import annotations

import numpy as np
import torch

from ..quant.formats import Format
from ..quant.primitives import amax_to_scale
from ..quant.scales import mse_threshold, percentile_threshold

P_QUANTILE = 0.9999  # --clip p99.99


def clip_threshold(clip: str, fmt: Format, amax: float, hist: np.ndarray | None) -> float:
    """The clip threshold of one site: its max|a|, its 99.99th percentile or the MSE-optimal clip."""
    if clip == "absmax" or amax <= 0:
        return amax
    if hist is None:
        raise AssertionError("percentile and MSE clips need the site's histogram")
    if clip == "mse":
        return mse_threshold(hist, fmt, amax)[0]
    return min(percentile_threshold(hist, P_QUANTILE)[0], amax)


def round_up(scale: torch.Tensor, dtype: torch.dtype, target: torch.Tensor, qmax: float) -> torch.Tensor:
    """`scale` in `dtype`, raised by ulps where stored x qmax falls below target (elementwise)."""
    s = scale.to(dtype)
    inf = torch.tensor(float("inf"), dtype=dtype)
    for _ in range(4):  # one ulp always suffices after a round-to-nearest cast; the loop is a guard
        short = (s.double() * qmax < target.double()) | (s <= 0)  # a zero scale would divide by 0
        if not bool(short.any()):
            return s
        s = torch.where(short, torch.nextafter(s, inf.expand_as(s)), s)
    raise AssertionError("scale could not be rounded up")


def stored_scale(threshold: float | torch.Tensor, fmt: Format, dtype: torch.dtype) -> torch.Tensor:
    """threshold / qmax as `dtype`, never below: stored x qmax >= threshold (shape of threshold)."""
    t = torch.as_tensor(threshold, dtype=torch.float32)
    s32 = round_up(amax_to_scale(t, fmt), torch.float32, t, fmt.max_value)
    return round_up(s32, dtype, t, fmt.max_value)


def representable(scale: torch.Tensor, fmt: Format) -> float:
    """The largest |a| a per-tensor scale holds without clipping: scale x qmax (float64)."""
    return float(scale.double().reshape(-1).max()) * fmt.max_value
