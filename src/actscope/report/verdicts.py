"""Quantization safety verdicts, estimated from a run's |a| histograms (no model, no re-run).

Per-tensor static quantization with scale = max|a| / max_value is applied to the
points that quant/scales.py spreads through every nonempty histogram bin (bins
are 1/32 octave wide, so a value is known to within 1.6%), with quant's own
formats and fake-quantizer; the error is weighted by the bin counts. So the
report and `actscope quant` estimate SQNR from a histogram the same way. Two
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
from functools import cache

import numpy as np
import torch

from ..limits import FP16_MAX
from ..quant.formats import FP8_E4M3, INT8, Format
from ..quant.primitives import amax_to_scale, fake_quantize
from ..quant.scales import histogram_points

SQNR_MIN_DB = 20.0
ZERO_MAX = 0.10
FORMATS = (FP8_E4M3, INT8)
LABELS = {FP8_E4M3.name: "FP8 E4M3 per-tensor", INT8.name: "INT8 per-tensor"}

__all__ = ["FORMATS", "FP8_E4M3", "FP16_MAX", "INT8", "format_verdict", "fp16_verdict", "hist_error"]


def hist_error(hist: np.ndarray, amax: float, fmt: Format) -> tuple[float, float]:
    """(SQNR dB, zero fraction) of per-tensor `fmt` with scale amax / max_value, from a signed histogram."""
    values, weights = histogram_points(hist, amax)
    if values.size == 0 or not amax > 0:
        return math.inf, 0.0
    x = torch.from_numpy(np.minimum(values, amax)).float()
    q, _ = fake_quantize(x, fmt, amax_to_scale(torch.tensor(amax), fmt))
    x, q = x.double().numpy(), q.double().numpy()
    err = float((weights * (x - q) ** 2).sum())
    sig = float((weights * x**2).sum())
    zero = float(weights[q == 0].sum() / weights.sum())
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
        "label": LABELS[fmt.name],
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
            f"scale = max|a| / {fmt.max_value:g} per tensor; safe if SQNR >= {SQNR_MIN_DB:g} dB and "
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
