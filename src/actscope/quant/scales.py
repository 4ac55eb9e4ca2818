"""Static scale choice from calibration statistics: absmax, percentile, MSE-optimal clip, SmoothQuant.

Everything here reads what the calibration pass kept per site: max|a| (per
tensor and per channel) and the log-binned |a| histogram (stats/histogram.py).
No activation is stored. The histogram has 2**MANT_BITS bins per octave, so
a percentile read from it is within REL_ERROR (relative) of the exact one;
that bound travels with the threshold into the results table.

MSE-optimal clipping searches clip ratios r (threshold = r x absmax) on a
geometric grid and scores each by the squared error the format would make on
the calibration histogram: every non-empty bin is represented by POINTS values
spread log-uniformly across it, each carrying count / POINTS of the bin's
mass. The bins are ~3% wide, so this estimate of the error is close to the
exact one (tests/quant check it against quantizing the tensor itself).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..stats import histogram as H
from .formats import Format
from .primitives import amax_to_scale, fake_quantize, sqnr_db

POINTS = 8  # representative values per histogram bin
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Clip ratios 1, 2**-1/16, ..., 2**-10: fine steps near 1, reaching 1/1024 of absmax
# (Gemma's massive activations sit ~1e4-1e5 x above the bulk of the distribution).
CLIP_RATIOS = 2.0 ** (-np.arange(0, 161) / 16.0)


def percentile_threshold(hist: np.ndarray, q: float) -> tuple[float, float]:
    """(threshold T, bound e) of the q-quantile of |a| from the log histogram.

    The exact quantile (the order statistic the histogram counts to) lies in
    [T (1 - e), T (1 + e)]: e = REL_ERROR is relative to the bin midpoint T.
    """
    value = H.quantiles(hist, [q])[0]
    return (0.0 if value is None else float(value)), H.REL_ERROR


def histogram_points(hist: np.ndarray, amax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values, weights): POINTS log-spaced values inside every non-empty finite |a| bin.

    The zero bin (|a| below the smallest subnormal) quantizes to 0 exactly and is skipped.
    The top bin straddles the exact max|a| (known from the extrema) and holds
    either a few tail values or one massive value repeated (the BOS token's
    activation is the same in every sample): its mass is put at amax itself,
    so a threshold at amax is not charged for clipping values that do not exist.
    """
    counts = H.abs_counts(hist)[: H.INF_BIN].astype(np.float64)
    nz = np.nonzero(counts)[0]
    nz = nz[nz > 0]
    lo, hi = H.EDGES[nz], np.minimum(H.UPPER[nz], FLOAT32_MAX)  # points become float32 below
    if amax is not None and amax > 0 and len(nz):
        lo[-1] = hi[-1] = amax  # all POINTS of the top bin at amax
    frac = (np.arange(POINTS) + 0.5) / POINTS  # (P,)
    values = lo[:, None] * (hi / lo)[:, None] ** frac[None, :]  # (bins, P)
    weights = np.repeat(counts[nz, None] / POINTS, POINTS, axis=1)
    return values.reshape(-1), weights.reshape(-1)


def histogram_mse(
    hist: np.ndarray, fmt: Format, thresholds: np.ndarray, amax: float | None = None
) -> np.ndarray:
    """Estimated mean squared error of per-tensor quantization at each clip threshold, (K,)."""
    values, weights = histogram_points(hist, amax)
    if values.size == 0:
        return np.zeros(len(thresholds))
    v = torch.from_numpy(values).float()  # (M,)
    w = torch.from_numpy(weights)
    t = torch.from_numpy(np.asarray(thresholds, dtype=np.float64)).float()  # (K,)
    scale = amax_to_scale(t, fmt)[:, None]  # (K, 1)
    vq, _ = fake_quantize(v[None, :].expand(len(t), -1), fmt, scale)  # (K, M)
    err = (v[None, :] - vq).double().square()
    return (err * w[None, :]).sum(1).numpy() / w.sum().item()


def mse_threshold(
    hist: np.ndarray, fmt: Format, amax: float, ratios: np.ndarray = CLIP_RATIOS
) -> tuple[float, float]:
    """(threshold, ratio) minimising the histogram's squared error; ties go to the larger ratio."""
    if amax <= 0:
        return 0.0, 1.0
    thresholds = amax * ratios
    mse = histogram_mse(hist, fmt, thresholds, amax)
    best = int(np.argmin(mse))  # first minimum = largest ratio among equals
    return float(thresholds[best]), float(ratios[best])


def smooth_factors(act_amax: torch.Tensor, weight_amax: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant per-input-channel divisor s_j = max|X_j|**alpha / max|W_j|**(1 - alpha), (C,).

    x / s is quantized and W * s multiplies it, so the product is unchanged in
    exact arithmetic. Both maxima are floored at 1e-5, as the SmoothQuant code
    does, so a channel that never fired does not divide by zero.
    """
    a = act_amax.float().clamp(min=1e-5)
    w = weight_amax.float().clamp(min=1e-5)
    return (a.pow(alpha) / w.pow(1 - alpha)).clamp(min=1e-5)


def weight_input_amax(modules) -> torch.Tensor:
    """max|W| per input channel over linear modules that read the same input, (C_in,).

    nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out).
    """
    out = None
    for m in modules:
        w = m.weight.detach()
        per_in = w.abs().amax(0) if isinstance(m, torch.nn.Linear) else w.abs().amax(1)
        out = per_in.float() if out is None else torch.maximum(out, per_in.float())
    assert out is not None, "no module"
    return out


def histogram_sqnr(hist: np.ndarray, fmt: Format, threshold: float, amax: float) -> float:
    """SQNR (dB) of quantizing the histogram's |a| at `threshold`, from the same points as histogram_mse."""
    values, weights = histogram_points(hist, amax)
    if values.size == 0:
        return math.nan
    signal = float((values.astype(np.float64) ** 2 * weights).sum() / weights.sum())
    noise = float(histogram_mse(hist, fmt, np.array([threshold]), amax)[0])
    return sqnr_db(signal, noise)
