"""Static input scales from the run's measurements, rounded UP in the dtype they are stored in.

    threshold = clip rule on the site's measured |a|   (absmax, p99.99 or mse: quant/scales.py)
    scale     = threshold / qmax                       (quant/primitives.amax_to_scale, float32)
    stored    = scale cast to the checkpoint's dtype, moved one ulp up while
                stored x qmax < threshold              (quant/primitives.stored_scale, also used
                                                        for KV-cache scales: the peak is never
                                                        clipped by rounding)

A bf16 cast rounds to nearest and can round the scale down by up to 2**-9
relative, which clips the measured peak (clients.md); float32's own division
can too. Both are checked in float64 and corrected with torch.nextafter.
"""

from __future__ import annotations

import numpy as np
import torch

from ..quant.formats import Format
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


def representable(scale: torch.Tensor, fmt: Format) -> float:
    """The largest |a| a per-tensor scale holds without clipping: scale x qmax (float64)."""
    return float(scale.double().reshape(-1).max()) * fmt.max_value
