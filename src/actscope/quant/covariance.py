"""Does the measured range predict the quantization error? Pearson and Spearman across sites.

Per scheme and site set (all sites, residual stream, linear inputs), between
per-site features of the evaluation split and that site's SQNR:

    log10_absmax            log10 max|a|
    log10_absmax_over_rms   log10 (max|a| / rms), the crest factor; scale-free

A negative correlation means larger ranges quantize worse (the paper's claim).
Sites whose SQNR is infinite (exact reconstruction) or undefined are left out;
n says how many remain. Spearman is Pearson on average ranks (ties share them).
"""

from __future__ import annotations

import math

import numpy as np

FEATURES = ("log10_absmax", "log10_absmax_over_rms")
SITE_SETS = {"all": None, "residual": ("residual",), "linear_input": ("linear_input",)}
MIN_N = 3  # below this a correlation is not reported


def rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks, 1-based (ties get the mean of the ranks they span)."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    sa = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < MIN_N:
        return None
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xc * xc).sum() * (yc * yc).sum()))
    return float((xc * yc).sum() / den) if den > 0 else None


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    return pearson(rankdata(x), rankdata(y)) if len(x) >= MIN_N else None


def features(row: dict) -> dict[str, float | None]:
    amax, rms = row.get("absmax"), row.get("rms")
    ok = amax is not None and amax > 0
    return {
        "log10_absmax": math.log10(amax) if ok else None,
        "log10_absmax_over_rms": math.log10(amax / rms) if ok and rms else None,
    }


def correlations(rows: list[dict], group: str = "scheme") -> list[dict]:
    """One row per (group value, site set, feature): n, pearson, spearman.

    rows: the quant table as dicts with scheme, kind, absmax, rms, sqnr_db (and
    model, when pooling runs of several models).
    """
    out = []
    for key in sorted({r[group] for r in rows}):
        mine = [r for r in rows if r[group] == key]
        for set_name, kinds in SITE_SETS.items():
            chosen = [r for r in mine if kinds is None or r["kind"] in kinds]
            for feat in FEATURES:
                pairs = [(features(r)[feat], r["sqnr_db"]) for r in chosen]
                pairs = [(f, s) for f, s in pairs if f is not None and s is not None and math.isfinite(s)]
                x = np.array([p[0] for p in pairs], dtype=np.float64)
                y = np.array([p[1] for p in pairs], dtype=np.float64)
                out.append(
                    {
                        group: key,
                        "sites": set_name,
                        "feature": feat,
                        "n": len(pairs),
                        "pearson": pearson(x, y),
                        "spearman": spearman(x, y),
                    }
                )
    return out
