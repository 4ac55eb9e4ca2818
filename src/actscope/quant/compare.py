"""Correlations across runs of several models: pool the quant tables, correlate per scheme.

    rows = pooled_rows(["runs/gemma-3-270m-quick", "runs/smollm2-135m-quick"])
    corr = across_runs(rows)        # per scheme, sites of every model pooled
    peaks = per_model_peaks(rows)   # one point per model: peak residual max|a| vs its SQNR

Written to DIR/quant_compare.parquet and DIR/quant_compare.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RunDirError
from ..rundir import atomic_write_text, read_manifest, read_table, write_table
from .covariance import correlations
from .results import _clean, peak_residual_site


def pooled_rows(runs: list[str | Path]) -> list[dict]:
    rows = []
    for run in runs:
        manifest = read_manifest(run)
        if "quant" not in manifest:
            raise RunDirError(f"{run} has no quantization results", f"run `actscope quant {run}` first")
        model = manifest.get("model", {}).get("source", str(run))
        for r in read_table(run, "quant").to_pylist():
            rows.append({**r, "model": model, "run": str(run)})
    return rows


def per_model_peaks(rows: list[dict]) -> list[dict]:
    """Per (model, scheme): the peak residual site's max|a| and SQNR (the paper's one point per model)."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        peak = peak_residual_site(mine)
        for r in mine:
            if r["site"] == peak:
                out.append(
                    {
                        "model": model,
                        "scheme": r["scheme"],
                        "site": peak,
                        "absmax": r["absmax"],
                        "sqnr_db": r["sqnr_db"],
                    }
                )
    return out


def across_runs(rows: list[dict]) -> list[dict]:
    """Correlations per scheme over the pooled sites of every run (n = sites x models)."""
    return correlations(rows, group="scheme")


def write_compare(out: str | Path, runs: list[str], corr: list[dict], peaks: list[dict]) -> Path:
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    write_table(path, "quant_compare", {c: [r[c] for r in corr] for c in (list(corr[0]) if corr else [])})
    doc = {"runs": [str(r) for r in runs], "correlation": corr, "peaks": peaks}
    atomic_write_text(path / "quant_compare.json", json.dumps(_clean(doc), indent=2) + "\n")
    return path
