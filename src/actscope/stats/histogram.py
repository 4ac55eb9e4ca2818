"""Log-spaced histogram bins read straight from the float's bits.

The bin of a value is the top 1 + 8 + MANT_BITS bits of its float32 encoding:
sign, exponent and the MANT_BITS leading mantissa bits. Bins are therefore
log-spaced (2**MANT_BITS per octave), cover every float32 including zero,
subnormals, inf and nan, and are the same for float32, bfloat16 and float16
input (bfloat16 is the top half of float32). No log, no frexp, no search.

For a normal number the bin [lo, hi) has hi / lo <= 1 + 2**-MANT_BITS, so a
quantile read as the bin midpoint is within REL_ERROR of the true value. That holds
for every |a| from the smallest normal float, 2**-126, up to and including the top
finite bin (its upper edge is 2**128, where its bit patterns end: UPPER). Below
2**-126 the bins are subnormal and linear, ABS_ERROR = 2**-131 wide: a quantile
there is within ABS_ERROR of the truth (absolute); bin 0, [0, 2**-131), reads as 0.

Quantiles are of the inverted CDF: the q-quantile of n values is the k-th smallest,
k = ceil(q n) (numpy's method="inverted_cdf"); the median of an even count is the
lower one.
"""

from __future__ import annotations

import numpy as np
import torch

MANT_BITS = 5
N_BINS = 1 << (9 + MANT_BITS)  # 16384: sign x 256 exponents x 32 mantissa steps
HALF = N_BINS // 2  # bins [0, HALF) hold +values, [HALF, N_BINS) hold -values
SHIFT32 = 23 - MANT_BITS
_SHIFT16 = 7 - MANT_BITS
# Relative error, against the true value, of a quantile read as the bin midpoint, for
# |a| >= 2**-126 (normal floats): |mid - x| <= (hi - lo) / 2 = lo * 2**-(MANT_BITS+1) <= x * 2**-6.
REL_ERROR = 2.0 ** -(MANT_BITS + 1)
# Below 2**-126 (subnormals) a bin holds 2**SHIFT32 consecutive multiples of 2**-149: the
# error bound there is absolute, one bin width (bin 0 reads as 0, the others as midpoints).
ABS_ERROR = 2.0 ** (SHIFT32 - 149)
INF_BIN = 0x7F800000 >> SHIFT32  # |a| bin index of +-inf; larger indices are nan


def bin_index(x: torch.Tensor) -> torch.Tensor:
    """Bin index in [0, N_BINS) of every element (same shape, int32/int64)."""
    if x.dtype == torch.bfloat16:
        return (x.view(torch.int16) >> _SHIFT16).to(torch.int32) & (N_BINS - 1)
    if x.dtype != torch.float32:
        x = x.float()
    return (x.view(torch.int32) >> SHIFT32) & (N_BINS - 1)


def histogram(x: torch.Tensor) -> torch.Tensor:
    """(N_BINS,) int64 counts of the elements of x."""
    return torch.bincount(bin_index(x).reshape(-1), minlength=N_BINS)


def _edges() -> np.ndarray:
    """Lower edge of each |a| bin (HALF + 1 values; the last is the inf bin's end)."""
    bits = (np.arange(HALF + 1, dtype=np.uint64) << SHIFT32).astype(np.uint32)
    bits = np.minimum(bits, 0x7F800000)  # the inf bin, the nan bins and the end get +inf as edge
    return bits.view(np.float32).astype(np.float64)


EDGES = _edges()
# Upper edge of each finite |a| bin (INF_BIN values). The top finite bin ends at 2**128, the
# value its next bit pattern would have if that pattern were not inf (EDGES says inf there:
# the inf bin's lower edge, as hist.parquet shows it), so its midpoint and width are finite.
UPPER = np.append(EDGES[1:INF_BIN], 2.0**128)


def abs_counts(hist: np.ndarray) -> np.ndarray:
    """Fold the signed histogram into |a| counts, (HALF,)."""
    hist = np.asarray(hist, dtype=np.int64)
    return hist[:HALF] + hist[HALF:]


def nonfinite_counts(hist: np.ndarray) -> dict[str, int]:
    hist = np.asarray(hist, dtype=np.int64)
    return {
        "posinf": int(hist[INF_BIN]),
        "neginf": int(hist[HALF + INF_BIN]),
        "nan": int(hist[INF_BIN + 1 : HALF].sum() + hist[HALF + INF_BIN + 1 :].sum()),
    }


def quantiles(hist: np.ndarray, qs) -> list[float | None]:
    """Inverted-CDF quantiles of |a| over finite values, as bin midpoints: within
    REL_ERROR (relative) from 2**-126 up, within ABS_ERROR (absolute) below (module doc)."""
    c = abs_counts(hist)[:INF_BIN]
    total = c.sum()
    if total == 0:
        return [None for _ in qs]
    cum = np.cumsum(c)
    out = []
    for q in qs:
        k = min(int(np.searchsorted(cum, q * total, side="left")), INF_BIN - 1)
        if k == 0:  # [0, ABS_ERROR): zeros and the tiniest subnormals
            out.append(0.0)
        else:
            out.append(float((EDGES[k] + UPPER[k]) / 2))
    return out


def fraction_above(hist: np.ndarray, thresholds) -> dict[float, tuple[float, float]]:
    """Fraction of all elements with |a| >= t, as (lower, upper) bounds: the bin holding t
    may hold values on both sides of it (lower == upper when t is a bin edge, as 6, 100,
    448 and 57,344 are). As `(x.abs() >= t).mean()` counts: +-inf is above every t, nan
    is above none (it still counts in the total)."""
    c = abs_counts(hist)
    total = c.sum()
    out = {}
    for t in thresholds:
        k = int(np.searchsorted(EDGES, t, side="right")) - 1  # bin containing t
        above = c[k + 1 : INF_BIN + 1].sum()  # up to and including the inf bin, no nan
        exact = EDGES[k] == t
        lo = above + (c[k] if exact else 0)
        hi = above + c[k]
        out[t] = (lo / total if total else 0.0, hi / total if total else 0.0)
    return out


def ccdf(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, P(|a| >= threshold)) at every nonempty bin's lower edge, finite values."""
    c = abs_counts(hist)[:INF_BIN].astype(np.float64)
    total = c.sum()
    if total == 0:
        return np.zeros(0), np.zeros(0)
    tail = np.cumsum(c[::-1])[::-1] / total
    nz = np.nonzero(c)[0]
    return EDGES[nz], tail[nz]
