"""Every per-batch partial of a site's statistics, from one fused pass over its rows.

A site's (R, C) rows (all B*S rows of the batch, padding included, with a keep
mask when there is padding: no copy drops it) go through one kernel that returns
a `Partials`; each statistic then folds the few tensors it needs into its state.
Three implementations of the same contract:

- native: native.c on the CPU (one pass, torch's threads), built once and cached;
  measuring calls its site_update, which also folds the partials into the
  statistics' state (accumulator.py); site_partials here returns them;
- compiled: torch.compile of `torch_partials` with dynamic shapes (GPUs, or a CPU
  whose native build failed), one compile per dtype and padding case;
- eager: `torch_partials` as plain torch ops, the reference the other two equal.

`ACTSCOPE_KERNEL=auto|native|compiled|eager` picks one (auto: native on the CPU,
compiled elsewhere); `ACTSCOPE_COMPILE=0` forces eager. A kernel that fails to
build or compile falls back to the next with a logged warning.

One rule for non-finite elements (nan, +-inf), in all three: they are counted (the
histogram, `ch_nonfinite`) and enter nothing else. Extremes, per-row and per-channel
max|a|, sums and moments are over the finite elements, including those of a row that
also holds an inf; a row holding a non-finite element is not tested for massive
activations. So a site's max|a|, its per-channel maxima, its top-k and its per-sample
maxima are maxima over the same set of values and always agree.

Exactness across implementations: extremes, counts, histogram and massive
activations are identical; per-channel sums are float64 sums of exact float64
terms (x^2 of a float fits a double); moments are per-row central moments from
powers of x - K (K: the row's first finite element) combined by the parallel
formulas (moments.py), so they agree to ~1e-15 relative, do not depend on batching,
and a constant tensor has M2 exactly 0. Sums of values that cancel (3e38, -3e38, 1)
agree to ~1e-15 of sum |x|, not of their result. One difference: the native kernel
checks every massive-activation candidate, the torch one the first CANDIDATES per
batch and counts the rest as unchecked (results flag the counts as lower bounds then).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields

import torch

from . import histogram as H
from . import native

log = logging.getLogger(__name__)

KERNELS = ("auto", "native", "compiled", "eager")
CANDIDATES = 64  # torch implementation: massive-activation candidates checked per site and batch
MASSIVE_ABS = 100.0
MASSIVE_RATIO = 1000.0
OUTLIER_ABS = 6.0  # LLM.int8() outlier-feature magnitude


@dataclass
class Partials:
    """One site, one batch. R rows (padding rows included), C channels, real = kept rows."""

    tok_abs: torch.Tensor  # (R,) f32 max finite |a| of each row; -1 for padding and rows with none
    ch_max: torch.Tensor  # (C,) f32 max finite |a| over real rows (0 where none)
    ch_nonfinite: torch.Tensor  # (C,) i64 nan and +-inf elements
    ch_s1: torch.Tensor  # (C,) f64 sum of the finite a
    ch_s2: torch.Tensor  # (C,) f64 sum of the finite a^2
    ch_ge6: torch.Tensor  # (C,) i64 elements with |a| >= 6 (inf included, nan not)
    ch_massive: torch.Tensor  # (C,) i64 massive elements
    hist: torch.Tensor  # (N_BINS,) i64 histogram of the float bits (histogram.py)
    sd: torch.Tensor  # (2,) f64 min and max of the finite elements
    mom: torch.Tensor  # (5,) f64 count, mean, M2, M3, M4 of the finite elements (moments.py)
    si: torch.Tensor  # (5,) i64 rows with max|a| > 100, candidates, massive elements, massive rows, unchecked

    # sd and si are packed (one tensor each, so the native kernel fills them in one call);
    # statistics read them by these names.
    @property
    def finite_min(self) -> torch.Tensor:
        return self.sd[0]

    @property
    def finite_max(self) -> torch.Tensor:
        return self.sd[1]

    @property
    def rows_over_100(self) -> torch.Tensor:
        return self.si[0]

    @property
    def massive_candidates(self) -> torch.Tensor:  # rows whose max|a| could reach 1000 x median
        return self.si[1]

    @property
    def massive_elements(self) -> torch.Tensor:
        return self.si[2]

    @property
    def massive_rows(self) -> torch.Tensor:
        return self.si[3]

    @property
    def unchecked_rows(self) -> torch.Tensor:  # candidates whose median was not computed
        return self.si[4]


FIELDS = tuple(f.name for f in fields(Partials))


def ratio_floor(a: torch.Tensor) -> torch.Tensor:
    """The largest float32 <= a / 1000, exactly (1000 x a float32 is exact in float64)."""
    t = a / MASSIVE_RATIO
    return torch.where(t.double() * MASSIVE_RATIO > a.double(), torch.nextafter(t, torch.zeros_like(t)), t)


def ratio_ceil(m: torch.Tensor) -> torch.Tensor:
    """The smallest float32 >= 1000 x m, exactly (inf past float32's range)."""
    b = m * MASSIVE_RATIO
    return torch.where(
        b.double() < m.double() * MASSIVE_RATIO, torch.nextafter(b, torch.full_like(b, torch.inf)), b
    )


def _first(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Index of the first True along the last dim (0 where none). Not argmax of the mask:
    compiled for the CPU (torch 2.13), that failed inductor's own index bounds check."""
    idx = torch.arange(n, device=mask.device)
    return torch.where(mask, idx, n).amin(-1).clamp(max=max(n - 1, 0))


def row_moments(xd: torch.Tensor, fin: torch.Tensor) -> torch.Tensor:
    """(5,) count, mean, M2, M3, M4 of the elements of (R, C) float64 rows where fin is True.

    Per row: powers of x - K, K the row's first counted element (a shift inside the data:
    no cancellation however far the values sit from 0, native.c row_sums says how far),
    turned into central moments; then all rows at once by the k-group form of the
    parallel formulas, around a mean that is itself shifted by the first row's.
    """
    R, C = xd.shape
    n = fin.sum(1).double()  # (R,)
    has = n > 0
    K = xd.gather(1, _first(fin, C)[:, None])  # first counted element, (R, 1)
    e = torch.where(fin, xd - K, 0.0)
    e2 = e * e
    t1, t2, t3, t4 = e.sum(1), e2.sum(1), (e2 * e).sum(1), (e2 * e2).sum(1)
    m = torch.where(has, t1 / n.clamp(min=1), 0.0)  # row mean - K
    m2 = m * m
    M2 = torch.where(has, t2 - m * t1, 0.0)
    M3 = torch.where(has, t3 - 3 * m * t2 + 2 * n * m2 * m, 0.0)
    M4 = torch.where(has, t4 - 4 * m * t3 + 6 * m2 * t2 - 3 * n * m2 * m2, 0.0)
    mean_r = K.squeeze(1) + m
    N = n.sum()
    base = mean_r[_first(has, R)]  # the first counted row's mean
    mu = base + torch.where(has, n * (mean_r - base), 0.0).sum() / N.clamp(min=1)
    d = torch.where(has, mean_r - mu, 0.0)  # (R,)
    d2 = d * d
    cm = torch.stack(
        [
            N,
            mu,
            M2.sum() + (n * d2).sum(),
            M3.sum() + 3 * (d * M2).sum() + (n * d2 * d).sum(),
            M4.sum() + 4 * (d * M3).sum() + 6 * (d2 * M2).sum() + (n * d2 * d2).sum(),
        ]
    )
    return torch.where(N > 0, cm, 0.0)


def torch_partials(x: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The Partials fields of (R, C) rows in torch ops; keep: (R,) uint8/bool or None."""
    xf = x.float()
    R, C = xf.shape
    k = keep.bool() if keep is not None else None
    fin = torch.isfinite(xf)  # (R, C)
    real = fin if k is None else fin & k[:, None]  # the elements every value statistic reads
    bad = ~fin.all(1)  # (R,) rows holding a non-finite element
    mn = torch.where(real, xf, torch.inf).amin(1)  # (R,) finite min, inf where none
    mx = torch.where(real, xf, -torch.inf).amax(1)
    tok_abs = torch.where(mn <= mx, torch.maximum(mx, -mn), -1.0)
    gmin, gmax = mn.amin().double(), mx.amax().double()

    xd = torch.where(real, xf, 0.0).double()  # float64 products are exact for x^2
    mom = row_moments(xd, real)
    sd = torch.stack([gmin, gmax])

    a = xf.abs()
    ch_max = torch.where(real, a, 0.0).amax(0)
    ch_s1, ch_s2 = xd.sum(0), (xd * xd).sum(0)
    nonfinite, ge6 = ~fin, a >= OUTLIER_ABS  # inf is >= 6, nan is not
    if k is not None:
        nonfinite, ge6 = nonfinite & k[:, None], ge6 & k[:, None]
    ch_nonfinite, ch_ge6 = nonfinite.sum(0), ge6.sum(0)

    bins = (xf.view(torch.int32) >> H.SHIFT32) & (H.N_BINS - 1)
    if k is not None:
        bins = torch.where(k[:, None], bins, H.N_BINS)  # padding into an extra bin, dropped
    flat = bins.reshape(-1).long()
    hist = torch.zeros(H.N_BINS + 1, dtype=torch.int64, device=x.device)
    hist = hist.scatter_add(0, flat, torch.ones_like(flat))[: H.N_BINS]

    # Massive activations, over rows without a non-finite element: the exact pre-filter
    # (tokens.py), then medians of the candidates.
    big = (tok_abs > MASSIVE_ABS) & ~bad
    small = (a <= ratio_floor(tok_abs)[:, None]).sum(1)
    possible = big & (small >= (C - 1) // 2 + 1)
    mkey = torch.where(possible, tok_abs, -1.0)
    cv, ci = mkey.topk(min(CANDIDATES, R))
    live = cv >= 0
    c = a.index_select(0, ci)
    med = c.median(1).values  # lower median for even C
    hit = (c > MASSIVE_ABS) & (c >= ratio_ceil(med)[:, None]) & live[:, None]
    n_possible = possible.sum()
    si = torch.stack([big.sum(), n_possible, hit.sum(), hit.any(1).sum(), n_possible - live.sum()])
    return tok_abs, ch_max, ch_nonfinite, ch_s1, ch_s2, ch_ge6, hit.sum(0), hist, sd, mom, si


def choice() -> str:
    if os.environ.get("ACTSCOPE_COMPILE") == "0":
        return "eager"
    k = os.environ.get("ACTSCOPE_KERNEL", "auto")
    if k not in KERNELS:
        raise ValueError(f"ACTSCOPE_KERNEL={k!r} is not one of {', '.join(KERNELS)}")
    return k


_compiled = None
_compile_failed = False
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def _run_compiled(x, keep):
    global _compiled, _compile_failed
    if not _compile_failed:
        try:
            if _compiled is None:
                _compiled = torch.compile(torch_partials, dynamic=True)
            return _compiled(x, keep)
        except Exception as e:  # noqa: BLE001 - any compile failure: same results, eager
            _compile_failed = True
            _warn_once("compile", "torch.compile of the statistics failed (%s); using eager torch", e)
    return torch_partials(x, keep)


def site_partials(x: torch.Tensor, keep: torch.Tensor | None, kernel: str | None = None) -> Partials:
    """Partials of (R, C) rows; keep: (R,) uint8 with 1 = real token, or None (no padding)."""
    kernel = kernel or choice()
    if kernel in ("auto", "native") and x.device.type == "cpu":
        xf = x if x.dtype == torch.float32 else x.float()  # bf16/fp16 on a CPU: one upcast copy
        if native.supports(xf):
            out = native.site_partials(xf, keep)
            if out is not None:
                return Partials(**out)
        _warn_once(
            "native", "native statistics kernel unavailable (%s); using torch", native.error() or "size"
        )
    if kernel == "eager":
        parts = torch_partials(x, keep)
    else:
        parts = _run_compiled(x, keep)
    return Partials(*parts)
