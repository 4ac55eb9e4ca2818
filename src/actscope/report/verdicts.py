"""Quantization safety verdicts, estimated from a run's |a| histograms (no model, no re-run).

Per-tensor static quantization with scale = max|a| / qmax is applied to points
spread through every nonempty histogram bin (bins are 1/32 octave wide, so a
value is known to within 1.6%); the error is weighted by the bin counts. Two
numbers per site:

    SQNR (dB)   = 10 log10( sum x^2 / sum (x - q(x))^2 )   energy-weighted
    zero frac   = fraction of nonzero values that quantize to 0

SQNR alone hides the failure massive activations cause: a few huge values hold
almost all the energy and are represented well, while the bulk of the tensor
rounds to zero. The verdict therefore needs both: SQNR >= SQNR_MIN_DB and
zero fraction <= ZERO_MAX at every site in scope. The scope is the linear-layer
inputs (what W8A8 and FP8 kernels quantize), or every hooked site when a run has
none. These are estimates for a quick verdict; `actscope quant` measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from ..stats import histogram as H

FP16_MAX = 65504.0
SQNR_MIN_DB = 20.0
ZERO_MAX = 0.10
POINTS = 8  # evaluation points per histogram bin


@dataclass(frozen=True)
class Format:
    """A number format applied after scaling x by max|a| / qmax."""

    name: str
    label: str
    qmax: float

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """x already scaled into [-qmax, qmax]; returns the representable value (saturating)."""
        x = np.clip(x, -self.qmax, self.qmax)
        if self.name == "int8":
            return np.round(x)  # symmetric levels -127..127
        # fp8: round-to-nearest-even through torch's own cast, as the kernels do
        return torch.from_numpy(x.astype(np.float32)).to(torch.float8_e4m3fn).float().numpy()


INT8 = Format("int8", "INT8 per-tensor", 127.0)
FP8_E4M3 = Format("fp8_e4m3", "FP8 E4M3 per-tensor", 448.0)
FORMATS = (FP8_E4M3, INT8)


def hist_error(hist: np.ndarray, amax: float, fmt: Format) -> tuple[float, float]:
    """(SQNR dB, zero fraction) of per-tensor `fmt` with scale amax / qmax, from a signed histogram."""
    c = H.abs_counts(hist)[: H.INF_BIN]
    nz = np.flatnonzero(c)
    nz = nz[nz > 0]  # bin 0 holds exact zeros (and the tiniest subnormals): no error to speak of
    if nz.size == 0 or not amax > 0:
        return math.inf, 0.0
    lo, hi = H.EDGES[nz], H.EDGES[nz + 1]
    t = (np.arange(POINTS) + 0.5) / POINTS
    x = np.minimum(lo[:, None] + (hi - lo)[:, None] * t[None, :], amax)  # (bins, POINTS)
    scale = amax / fmt.qmax
    q = fmt.quantize(x / scale) * scale
    w = np.broadcast_to(c[nz][:, None] / POINTS, x.shape)
    err = float((w * (x - q) ** 2).sum())
    sig = float((w * x**2).sum())
    zero = float(w[q == 0].sum() / w.sum())
    return (math.inf if err == 0 else 10 * math.log10(sig / err)), zero


def scope_sites(view) -> tuple[str, list[dict]]:
    """(scope name, site rows): unique linear-input tensors, else every hooked site."""
    rows = [r for r in view.sites if r["kind"] == "linear_input" and r["absmax"] is not None]
    seen, unique = set(), []
    for r in rows:  # q/k/v_proj inputs are one tensor: count it once
        src = view.source(r["site"])
        if src not in seen:
            seen.add(src)
            unique.append(r)
    if unique:
        return "linear inputs", unique
    return "all sites", view.hooked_sites()


@cache
def _site_error(view, site: str, fmt: Format) -> tuple[float, float]:
    row = next(r for r in view.sites if r["site"] == site)
    h = view.hist(site)
    if h is None:
        return math.nan, math.nan
    return hist_error(h, float(row["absmax"]), fmt)


def site_errors(view, fmt: Format) -> dict[str, tuple[float, float]]:
    """{site: (SQNR dB, zero fraction)} over the verdict's scope."""
    return {r["site"]: _site_error(view, r["site"], fmt) for r in scope_sites(view)[1]}


def format_verdict(view, fmt: Format) -> dict:
    scope, rows = scope_sites(view)
    errs = site_errors(view, fmt)
    nonfinite = [r["site"] for r in rows if (r["nan"] or r["posinf"] or r["neginf"])]
    failing = sorted(
        {s for s, (db, z) in errs.items() if not (db >= SQNR_MIN_DB and z <= ZERO_MAX)} | set(nonfinite)
    )
    worst_db = min(errs.items(), key=lambda kv: kv[1][0], default=(None, (math.nan, 0.0)))
    worst_z = max(errs.items(), key=lambda kv: kv[1][1], default=(None, (math.nan, math.nan)))
    return {
        "format": fmt.name,
        "label": fmt.label,
        "safe": bool(errs) and not failing,
        "scope": f"{scope} ({len(errs)} tensors)",
        "sites_checked": len(errs),
        "sites_failing": len(failing),
        "failing": failing[:20],
        "worst_sqnr_db": _finite(worst_db[1][0]),
        "worst_sqnr_site": worst_db[0],
        "max_zero_fraction": _finite(worst_z[1][1]),
        "max_zero_site": worst_z[0],
        "criterion": (
            f"scale = max|a| / {fmt.qmax:g} per tensor; safe if SQNR >= {SQNR_MIN_DB:g} dB and "
            f"<= {100 * ZERO_MAX:g}% of nonzero values round to 0 at every tensor in scope (histogram estimate)"
        ),
    }


def fp16_verdict(view) -> dict:
    s = view.summary
    saf, nf = s.get("safety") or {}, s.get("nonfinite") or {}
    m = s.get("M")
    return {
        "format": "fp16",
        "label": "fp16 (no scaling)",
        "safe": bool(saf.get("fp16_safe")) if m is not None else False,
        "headroom": saf.get("fp16_headroom"),
        "sites_over": saf.get("sites_over_fp16", []),
        "nonfinite": bool(nf.get("overflowed")),
        "criterion": f"max|a| < {FP16_MAX:,.0f} (fp16's largest finite value) and no inf/nan measured",
    }


def verdicts(view) -> dict[str, dict]:
    """fp16, FP8-E4M3 per-tensor and INT8 per-tensor verdicts of a run."""
    return {"fp16": fp16_verdict(view), **{f.name: format_verdict(view, f) for f in FORMATS}}


def _finite(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
