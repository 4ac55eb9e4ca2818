"""The report's quantization section, from what `actscope quant` wrote into the run directory:
run.json "quant" (settings, per-scheme summary, end-to-end results, correlations,
recommendation) and quant.parquet (per site and scheme). Absent: no section.

Only keys that are present are shown, so a partial or older quant section still renders.
"""

from __future__ import annotations

import math

from . import plots

CORR_FEATURE = "log10_absmax"


def quant_context(view) -> dict | None:
    q, table = view.quant or {}, view.quant_table
    if not q and not table:
        return None
    schemes = scheme_rows(q.get("schemes") or {})
    return {
        "settings": settings_items(q),
        "schemes": schemes,
        "budget_db": _budget(q),
        "chart": plots.quant_schemes(schemes, _budget(q))
        if any(r["linear_median"] is not None for r in schemes)
        else None,
        "recommendation": recommendation(q.get("recommendation")),
        "correlation": correlation_rows(q.get("correlation") or []),
        "worst": worst_sites(table or []),
        "table_rows": len(table or []),
    }


def _budget(q: dict) -> float | None:
    return ((q.get("settings") or {}).get("budget") or {}).get("min_sqnr_db")


def _num(v):
    """The quant section writes inf/nan as strings ("inf"); turn them back into floats."""
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    return v


def scheme_rows(schemes: dict) -> list[dict]:
    rows = []
    for name, s in schemes.items():
        e2e = s.get("e2e") or {}
        rows.append(
            {
                "scheme": name,
                "bits": _num(s.get("bits")),
                "peak_residual": _num(s.get("peak_residual_sqnr_db")),
                "peak_clip": _num(s.get("peak_residual_clip_rate")),
                "linear_min": _num(s.get("linear_min_sqnr_db")),
                "linear_median": _num(s.get("linear_median_sqnr_db")),
                "worst_site": s.get("linear_worst_site"),
                "below_budget": s.get("linear_below_budget"),
                "linear_sites": s.get("linear_sites"),
                "ppl_change_pct": _num(e2e.get("ppl_change_pct")),
                "kl": _num(e2e.get("kl")),
                "top1": _num(e2e.get("top1_agree")),
            }
        )
    return rows


def settings_items(q: dict) -> list[tuple[str, str]]:
    s = q.get("settings") or {}
    tokens = q.get("tokens") or {}
    split = q.get("split") or {}
    items = []
    if split:
        items.append(
            (
                "split",
                f"calibrate on {len(split.get('calibration', []))} samples ({tokens.get('calibration', '?')} tokens), "
                f"evaluate on {len(split.get('evaluation', []))} held-out samples ({tokens.get('evaluation', '?')} tokens)",
            )
        )
    if s.get("sites"):
        items.append(("sites", str(s["sites"])))
    if s.get("budget"):
        items.append(("budget", ", ".join(f"{k}: {v}" for k, v in s["budget"].items())))
    if s.get("e2e"):
        items.append(("end to end", ", ".join(s["e2e"])))
    if q.get("histogram_rel_error") is not None:
        items.append(
            (
                "percentile thresholds",
                f"from the log histogram, relative error ≤ {100 * q['histogram_rel_error']:.2f}%",
            )
        )
    return items


def recommendation(rec) -> dict | None:
    if not isinstance(rec, dict) or not rec:
        return None
    e2e = rec.get("e2e") or {}
    return {
        "scheme": rec.get("scheme"),
        "keep": rec.get("keep_high_precision") or [],
        "mean_bits": _num(rec.get("mean_bits")),
        "min_sqnr_db": _num(rec.get("min_sqnr_db")),
        "ppl_change_pct": _num(e2e.get("ppl_change_pct")),
        "kl": _num(e2e.get("kl")),
        "note": rec.get("note") or rec.get("reason"),
    }


def correlation_rows(corr: list[dict]) -> list[dict]:
    """Per scheme: Spearman / Pearson of log10 max|a| vs SQNR, over all, residual and linear-input sites."""
    by: dict[str, dict] = {}
    for c in corr:
        if c.get("feature") != CORR_FEATURE:
            continue
        row = by.setdefault(c["scheme"], {"scheme": c["scheme"]})
        row[c.get("sites", "all")] = (_num(c.get("spearman")), _num(c.get("pearson")), c.get("n"))
    return list(by.values())


def worst_sites(table: list[dict], n: int = 12) -> list[dict]:
    """The (site, scheme) pairs with the lowest SQNR."""
    rows = [r for r in table if isinstance(r.get("sqnr_db"), (int, float)) and not math.isnan(r["sqnr_db"])]
    keys = ("site", "kind", "scheme", "sqnr_db", "clip_rate", "underflow_rate", "absmax", "rms")
    return [{k: r.get(k) for k in keys} for r in sorted(rows, key=lambda r: r["sqnr_db"])[:n]]
