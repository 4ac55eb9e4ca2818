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

Exactness across implementations: extremes, counts, histogram and massive
activations are identical; sums are float64 from exact float64 products
(x^2 of a float fits a double), so they agree to ~1e-15 relative and do not
depend on batching. One difference: the native kernel checks every massive-
activation candidate, the torch one the first CANDIDATES per batch and counts the
rest as unchecked (results flag the counts as lower bounds then).
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

    tok_abs: torch.Tensor  # (R,) f32 max|a| of each row; -1 for padding and rows holding inf/nan
    ch_max: torch.Tensor  # (C,) f32 max|a| over real rows; nan where a nan was seen
    ch_s1: torch.Tensor  # (C,) f64 sum of a
    ch_s2: torch.Tensor  # (C,) f64 sum of a^2
    ch_ge6: torch.Tensor  # (C,) i64 elements with |a| >= 6
    ch_massive: torch.Tensor  # (C,) i64 massive elements
    hist: torch.Tensor  # (N_BINS,) i64 histogram of the float bits (histogram.py)
    sd: torch.Tensor  # (6,) f64 min and max over rows with finite min / max; sums of a, a^2, a^3, a^4
    si: torch.Tensor  # (5,) i64 rows with max|a| > 100, candidates, massive elements, massive rows, unchecked


FIELDS = tuple(f.name for f in fields(Partials))


def torch_partials(x: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The Partials fields of (R, C) rows in torch ops; keep: (R,) uint8/bool or None."""
    xf = x.float()
    R, C = xf.shape
    k = keep.bool() if keep is not None else None
    mn, mx = xf.amin(1), xf.amax(1)  # (R,), nan where the row holds a nan
    ta = torch.maximum(mx, -mn)
    ok = torch.isfinite(ta) if k is None else torch.isfinite(ta) & k
    tok_abs = torch.where(ok, ta, -1.0)
    fmn, fmx = torch.isfinite(mn), torch.isfinite(mx)
    if k is not None:
        fmn, fmx = fmn & k, fmx & k
    gmin = torch.where(fmn, mn, torch.inf).amin().double()
    gmax = torch.where(fmx, mx, -torch.inf).amax().double()

    xd = xf.double()  # float64 products are exact for x^2 (fused: no copy when compiled)
    d2 = xd * xd
    rs = torch.stack([xd.sum(1), d2.sum(1), (d2 * xd).sum(1), (d2 * d2).sum(1)])  # (4, R) per token
    if k is not None:
        rs = torch.where(k, rs, 0.0)
    sd = torch.cat([gmin[None], gmax[None], rs.sum(1)])

    xk = xf if k is None else torch.where(k[:, None], xf, 0.0)
    a = xk.abs()
    xkd = xk.double()
    ch_max, ch_s1, ch_s2 = a.amax(0), xkd.sum(0), (xkd * xkd).sum(0)
    ch_ge6 = (a >= OUTLIER_ABS).sum(0)

    bins = (xf.view(torch.int32) >> H.SHIFT32) & (H.N_BINS - 1)
    if k is not None:
        bins = torch.where(k[:, None], bins, H.N_BINS)  # padding into an extra bin, dropped
    flat = bins.reshape(-1).long()
    hist = torch.zeros(H.N_BINS + 1, dtype=torch.int64, device=x.device)
    hist = hist.scatter_add(0, flat, torch.ones_like(flat))[: H.N_BINS]

    # Massive activations: the exact pre-filter (tokens.py), then medians of the candidates.
    big = tok_abs > MASSIVE_ABS
    small = (xf.abs() <= (tok_abs / MASSIVE_RATIO)[:, None]).sum(1)
    possible = big & (small >= (C - 1) // 2 + 1)
    mkey = torch.where(possible, tok_abs, -1.0)
    cv, ci = mkey.topk(min(CANDIDATES, R))
    live = cv >= 0
    c = xf.index_select(0, ci).abs()
    med = c.median(1).values  # lower median for even C
    hit = (c > MASSIVE_ABS) & (c >= MASSIVE_RATIO * med[:, None]) & live[:, None]
    n_possible = possible.sum()
    si = torch.stack([big.sum(), n_possible, hit.sum(), hit.any(1).sum(), n_possible - live.sum()])
    return tok_abs, ch_max, ch_s1, ch_s2, ch_ge6, hit.sum(0), hist, sd, si


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
