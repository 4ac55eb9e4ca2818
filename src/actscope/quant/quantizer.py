"""A site's quantizer: a scheme with its calibrated scales, applied to (N, C) activations.

cal = SiteCalibration(...)                      # from calibrate.py
q = build_quantizer(parse_scheme("int8:tensor:mse"), cal)
xq, clipped = q(x)                              # x (N, C) -> xq (N, C), clipped ()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .formats import BlockFormat
from .granularity import PerChannel, PerTensor
from .primitives import (
    amax_to_scale,
    fake_quantize,
    fake_quantize_block,
    fake_quantize_dynamic,
    nv_global_scale,
)
from .scales import mse_threshold, percentile_threshold, smooth_factors
from .scheme import Scheme


@dataclass
class SiteCalibration:
    """What the calibration split says about one site (host and device values)."""

    name: str
    kind: str
    channels: int
    amax: float  # max|a| over finite values
    rms: float
    ch_amax: torch.Tensor  # (C,) per-channel max|a| over finite values (stats.extrema), on the model's device
    hist: np.ndarray  # (H.N_BINS,) signed log histogram counts
    weight_amax: torch.Tensor | None = None  # (C,) max|W| per input channel (linear inputs)


@dataclass(frozen=True, eq=False)
class Quantizer:
    scheme: Scheme
    scale: torch.Tensor | None = None  # static: () per tensor, (C,) per channel; None: dynamic
    smooth: torch.Tensor | None = None  # (C,) SmoothQuant divisor
    global_scale: torch.Tensor | None = None  # NVFP4 per-tensor scale
    threshold: float | None = None  # static per-tensor clip threshold (in smoothed units)
    threshold_rel_error: float = 0.0  # bound on the threshold's relative error (percentiles)
    clip_ratio: float | None = None  # threshold / absmax for the MSE search

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C) float32 -> (dequantized (N, C), number of saturated elements ())."""
        if self.smooth is not None:
            x = x / self.smooth
        fmt = self.scheme.fmt
        if isinstance(fmt, BlockFormat):
            xq, clipped = fake_quantize_block(x, fmt, self.global_scale)
        elif self.scale is not None:
            xq, clipped = fake_quantize(x, fmt, self.scale)
        else:
            xq, clipped = fake_quantize_dynamic(x, fmt, self.scheme.gran)
        if self.smooth is not None:
            xq = xq * self.smooth
        return xq, clipped


def site_quantizer(scheme: Scheme, cal: SiteCalibration) -> Quantizer | None:
    """The scheme's quantizer for one hooked site, or None where the scheme does not apply.

    SmoothQuant divides the activation by s and folds s into the weights of the linear
    layers that read it, so it applies wherever the site's tensor is a linear input
    (cal.weight_amax is set for every hooked site that carries one), whatever kind of
    site carries it: Olmo2 has no input norms, so its q/k/v projections read the
    residual stream, hooked as the previous layer's resid.out (or embed.out). Keying
    this on the site's kind left those layers unquantized end to end.
    """
    if scheme.smooth_alpha is not None and cal.weight_amax is None:
        return None
    return build_quantizer(scheme, cal)


def build_quantizer(scheme: Scheme, cal: SiteCalibration) -> Quantizer:
    """Fix the static parts of `scheme` for one site from its calibration statistics."""
    smooth = None
    ch_amax = cal.ch_amax.float()
    if scheme.smooth_alpha is not None:
        assert cal.weight_amax is not None, f"{cal.name}: SmoothQuant needs the weights of a linear input"
        smooth = smooth_factors(ch_amax, cal.weight_amax.to(ch_amax.device), scheme.smooth_alpha)
        ch_amax = ch_amax / smooth
    amax = float(ch_amax.max()) if ch_amax.numel() else 0.0
    fmt = scheme.fmt
    if isinstance(fmt, BlockFormat):
        gs = (
            nv_global_scale(torch.tensor(amax, device=ch_amax.device), fmt.element)
            if fmt.scale_format == "e4m3"
            else None
        )
        return Quantizer(scheme, smooth=smooth, global_scale=gs)
    if isinstance(scheme.gran, PerChannel):
        return Quantizer(scheme, scale=amax_to_scale(ch_amax, fmt), smooth=smooth)
    if not isinstance(scheme.gran, PerTensor):
        return Quantizer(scheme, smooth=smooth)
    threshold, rel, ratio = _tensor_threshold(scheme, cal, amax, smooth is not None)
    scale = amax_to_scale(torch.tensor(threshold, device=ch_amax.device), fmt)
    return Quantizer(
        scheme, scale=scale, smooth=smooth, threshold=threshold, threshold_rel_error=rel, clip_ratio=ratio
    )


def _tensor_threshold(
    scheme: Scheme, cal: SiteCalibration, amax: float, smoothed: bool
) -> tuple[float, float, float | None]:
    """(threshold, relative error bound, clip ratio) of a per-tensor static scale."""
    if scheme.method == "absmax":
        return amax, 0.0, 1.0
    # The histogram is of the unsmoothed activations; percentile and MSE scales of
    # smoothed inputs would need a histogram of x / s (a second calibration pass).
    assert not smoothed, "percentile and MSE scales are not combined with SmoothQuant"
    if scheme.method == "mse":
        threshold, ratio = mse_threshold(cal.hist, scheme.fmt, amax)
        return threshold, 0.0, ratio
    q = scheme.quantile
    assert q is not None, scheme.method
    threshold, rel = percentile_threshold(cal.hist, q)
    return threshold, rel, (threshold / amax if amax > 0 else None)
