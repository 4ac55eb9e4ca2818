"""Quantization results in the run directory: quant.parquet, quant_corr.parquet and run.json["quant"].

quant.parquet        one row per (hooked site, scheme): SQNR, rel RMSE/MAE, clip and
                     underflow rates, the scale's threshold (with its error bound),
                     and the site's max|a| / rms on the evaluation split
quant_corr.parquet   Pearson / Spearman of log max|a| (and crest factor) vs SQNR
quant_kv.parquet     `--kv`: SQNR and clip rate per KV scheme, layer, tensor (k, v) and head
run.json "quant"     settings, split sample ids, per-scheme summary, end-to-end
                     results, correlations, recommendation
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..rundir import write_manifest, write_table
from .formats import BlockFormat
from .scheme import Scheme


def metric_rows(sink, schemes: list[Scheme], quantizers, cal, probe) -> list[dict]:
    """One dict per (hooked site, applicable scheme), in firing order then scheme order."""
    aliases_of: dict[str, list[str]] = {}
    for alias, hooked in probe.aliases.items():
        aliases_of.setdefault(hooked, []).append(alias)
    rows = []
    for i, name in enumerate(sink.names):
        ext = sink.stats.stat(name, "extrema").result()
        mom = sink.stats.stat(name, "moments").result()
        b = probe.usable[name]
        for j, s in enumerate(schemes):
            q = quantizers[name][j]
            if q is None:
                continue
            rows.append(
                {
                    "site": name,
                    "kind": b.site.kind,
                    "layer": b.site.layer,
                    "aliases": ",".join(aliases_of.get(name, [])),
                    "channels": probe.channels[name],
                    "scheme": s.name,
                    "format": s.fmt.name,
                    "granularity": s.gran.name,
                    "method": s.method if s.static and not isinstance(s.fmt, BlockFormat) else "dynamic",
                    "smooth_alpha": s.smooth_alpha,
                    "bits": s.bits,
                    **sink.errors[i].result(j),
                    "absmax": ext["absmax"],
                    "rms": mom["rms"],
                    "calib_absmax": cal[name].amax,
                    "threshold": q.threshold,
                    "threshold_rel_error": q.threshold_rel_error,
                    "clip_ratio": q.clip_ratio,
                }
            )
    return rows


def peak_residual_site(rows: list[dict]) -> str | None:
    resid = {r["site"]: r["absmax"] for r in rows if r["kind"] == "residual" and r["absmax"] is not None}
    return max(resid, key=lambda s: resid[s]) if resid else None


def scheme_summary(rows: list[dict], schemes: list[Scheme], e2e: dict, min_sqnr_db: float) -> dict[str, dict]:
    """Per scheme: SQNR at the peak residual site, min / median over linear inputs, worst site, e2e."""
    peak = peak_residual_site(rows)
    out = {}
    for s in schemes:
        mine = [r for r in rows if r["scheme"] == s.name]
        lin = [r for r in mine if r["kind"] == "linear_input"]
        at_peak = next((r for r in mine if r["site"] == peak), None)
        vals = [r["sqnr_db"] for r in lin]
        worst = min(lin, key=lambda r: r["sqnr_db"], default=None)
        out[s.name] = {
            "bits": s.bits,
            "peak_residual_site": peak,
            "peak_residual_sqnr_db": at_peak["sqnr_db"] if at_peak else None,
            "peak_residual_clip_rate": at_peak["clip_rate"] if at_peak else None,
            "linear_min_sqnr_db": worst["sqnr_db"] if worst else None,
            "linear_median_sqnr_db": statistics.median(vals) if vals else None,
            "linear_worst_site": worst["site"] if worst else None,
            "linear_sites": len(lin),
            "linear_below_budget": sum(1 for v in vals if not v >= min_sqnr_db),
            "e2e": e2e.get(s.name),
        }
    return out


def e2e_maps(probe, quantizers, j: int, keep=()) -> dict[str, object]:
    """{module path -> quantizer} for every linear input (aliases too) not kept in high precision."""
    out = {}
    for name, b in probe.usable.items():
        hooked = probe.aliases.get(name, name)
        if b.site.kind == "linear_input" and hooked not in keep and quantizers[hooked][j] is not None:
            out[b.module_path] = quantizers[hooked][j]
    return out


def _clean(v):
    """JSON and Parquet have no inf / nan in every reader: keep floats, map nonfinite to strings in JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else "-inf" if v < 0 else "nan"
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def write_quant(out: Path, manifest: dict, section: dict, rows: list[dict], kv_rows=()) -> None:
    cols = list(rows[0]) if rows else []
    write_table(out, "quant", {c: [r.get(c) for r in rows] for c in cols})
    corr = section["correlation"]
    write_table(out, "quant_corr", {c: [r[c] for r in corr] for c in (list(corr[0]) if corr else [])})
    if kv_rows:
        write_table(out, "quant_kv", {c: [r[c] for r in kv_rows] for c in kv_rows[0]})
    elif (out / "quant_kv.parquet").exists():
        (out / "quant_kv.parquet").unlink()  # a quant run without --kv: no stale KV rows beside it
    manifest["quant"] = _clean(section)
    write_manifest(out, manifest)
