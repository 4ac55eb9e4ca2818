"""`actscope report`: one self-contained, printable HTML file from one or more run directories.

Jinja2 with autoescaping on renders templates/report.html; every chart is a
matplotlib SVG inlined in the page, the CSS is inline, and there is no script
and no external reference, so the file opens offline and prints as it shows.
Text from the corpus (tokens, contexts, domain names) only ever reaches the page
through autoescaped template variables or matplotlib's escaped SVG text.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from .. import __version__, outputs, textsafe
from ..stats import histogram as H
from . import compare, plots
from .compare import fmt_pct
from .kvview import kv_context
from .quantview import quant_context
from .rundata import RunView, massive_channels, split_context
from .stressview import stress_context
from .verdicts import FORMATS, hist_error, verdicts

TOP_ROWS = 25  # top activations listed per run


def render_report(runs: list[str | Path | RunView], out: str | Path, title: str | None = None) -> Path:
    views = [r if isinstance(r, RunView) else RunView.measured(r) for r in runs]  # in-memory runs (API) too
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("actscope", "report/templates"),
        autoescape=True,  # every variable is escaped unless marked safe (only our SVG is)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, db=fmt_db, visible=visible)
    page = {
        "title": title or "actscope report: " + ", ".join(v.label for v in views),
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "version": __version__,
        "runs": [run_context(v, i) for i, v in enumerate(views)],
        "comparison": comparison_context(views) if len(views) > 1 else None,
    }
    html = env.get_template("report.html").render(**page)
    return outputs.write_text(out, "-o", html)


# ---- per-run context -------------------------------------------------------------


def deploy_context(view: RunView) -> dict | None:
    """The deployed recipes (run.json deployments) and the latest audit, when the run has them."""
    if not view.deployments and not view.audits:
        return None
    rows = view.audit_table or []
    return {
        "deployments": view.deployments,
        "audit": view.audits[-1] if view.audits else None,
        "worst": rows[:10],
    }


def run_context(view: RunView, index: int) -> dict:
    s = view.summary
    ctx = {
        "id": f"run{index + 1}",
        "label": view.label,
        "path": str(view.path),
        "status": view.manifest.get("status"),
        "partial": view.manifest.get("shards_merged") if view.partial else None,
        "has_M": s.get("M") is not None,
        "meta": metadata(view),
        "quant": quant_context(view),
        "kv": kv_context(view),
        "stress": stress_context(view),
        "deploy": deploy_context(view),
    }
    if not ctx["has_M"]:
        return ctx
    loc = dict(s["location"])
    loc["before"], loc["token"], loc["after"] = split_context(loc.get("context"))
    ctx.update(
        s=s,
        loc=loc,
        verdicts=verdicts(view),
        massive=s.get("massive") or {},
        massive_channels=massive_channels(view)[:16],
        outliers=(s.get("outlier_features") or {}),
        kinds=kind_table(view),
        top=top_activations(view),
        domains=s.get("domains") or {},
        bootstrap=s.get("bootstrap") or [],
        charts=charts(view),
    )
    return ctx


def per_kind_layers(view: RunView) -> dict[str, dict[int, float]]:
    """{kind: {layer: max|a|}} over every site with a layer (aliases included: q_proj's input
    is a real linear input, even though its numbers are stored under the norm)."""
    out: dict[str, dict[int, float]] = {}
    for r in view.sites:
        if r["layer"] is None or r["absmax"] is None:
            continue
        d = out.setdefault(r["kind"], {})
        d[r["layer"]] = max(d.get(r["layer"], 0.0), float(r["absmax"]))
    return out


def charts(view: RunView) -> dict[str, str]:
    s = view.summary
    per = per_kind_layers(view)
    out = {}
    if per:
        out["layers"] = plots.layer_curves({k: sorted(v.items()) for k, v in per.items()})
        layers = sorted({layer for v in per.values() for layer in v})
        kinds = list(per)
        grid = np.full((len(kinds), len(layers)), np.nan)
        for i, k in enumerate(kinds):
            for j, layer in enumerate(layers):
                grid[i, j] = per[k].get(layer, np.nan)
        out["heatmap"] = plots.heatmap(layers, kinds, grid)
    peak = s["location"]["site"]
    ch = view.channels(peak)
    if ch is not None and len(ch["absmax"]):
        out["channels"] = plots.channel_profile(peak, np.asarray(ch["absmax"]), np.asarray(ch["massive"]))
    curves = {k: H.ccdf(view.kind_hist(k)) for k in view.kinds()}
    if any(len(x) for x, _ in curves.values()):
        out["ccdf"] = plots.ccdf(curves)
    if s.get("domains"):
        out["domains"] = plots.domain_bars(s["domains"])
    if s.get("bootstrap"):
        out["bootstrap"] = plots.bootstrap_intervals(s["bootstrap"], s["M"])
    return out


def kind_table(view: RunView) -> list[dict]:
    """One row per site kind: peak, quantiles and worst per-tensor SQNR at its sites."""
    rows = []
    for kind in view.kinds():
        rs = [r for r in view.sites if r["kind"] == kind]
        own = [r for r in rs if r["alias_of"] is None and r["absmax"] is not None]
        top = max((r for r in rs if r["absmax"] is not None), key=lambda r: r["absmax"], default=None)
        row = {
            "kind": kind,
            "sites": len(rs),
            "absmax": top["absmax"] if top else None,
            "at": top["site"] if top else "-",
            "q50": top["q0.5"] if top else None,
            "q999": top["q0.999"] if top else None,
            "kurtosis": max((r["kurtosis"] for r in own if r["kurtosis"] is not None), default=None),
            "ge6": max((r["frac_ge_6"] for r in own if r["frac_ge_6"] is not None), default=None),
            "nonfinite": sum(int(r["nan"] + r["posinf"] + r["neginf"]) for r in own),
        }
        for f in FORMATS:
            errs = [
                hist_error(view.hist(r["site"]), float(r["absmax"]), f)
                for r in own
                if view.hist(r["site"]) is not None
            ]
            row[f.name] = min((e[0] for e in errs), default=None)
        rows.append(row)
    return rows


def top_activations(view: RunView, n: int = TOP_ROWS) -> list[dict]:
    """The largest |a| over all sites, one row per distinct activation.

    A massive activation repeats through the residual stream (one element, many
    sites), and at a position whose prefix is the same in every sample (BOS) it
    repeats in every sample with the same value. Rows are grouped first by
    (sample, position, channel), then across samples by (position, token, channel,
    value), and shown where they are largest, with how many sites and samples hold them."""
    elems: dict[tuple, dict] = {}
    for r in view.topk:
        e = elems.setdefault((r["sample_id"], r["pos"], r["channel"]), {"best": r, "sites": set()})
        e["sites"].add(r["site"])
        if r["absval"] > e["best"]["absval"]:
            e["best"] = r
    groups: dict[tuple, dict] = {}
    for e in elems.values():
        b = e["best"]
        g = groups.setdefault(
            (b["pos"], b["token"], b["channel"], b["site"], float(f"{b['value']:.6g}")),
            {"best": b, "sites": e["sites"], "samples": 0},
        )
        g["samples"] += 1
    ranked = sorted(groups.values(), key=lambda g: -g["best"]["absval"])[:n]
    out = []
    for g in ranked:
        r = g["best"]
        before, tok, after = split_context(r["context"])
        out.append(
            {
                **r,
                "before": before,
                "tok": tok,
                "after": after,
                "sites": len(g["sites"]),
                "samples": g["samples"],
            }
        )
    return out


def metadata(view: RunView) -> list[tuple[str, str]]:
    m = view.manifest
    model = {k: v for k, v in view.model.items() if k not in ("device_map",)}
    tok = m.get("tokens") or {}
    rows = [
        ("model", _kv(model)),
        ("corpus", _kv(m.get("corpus") or {})),
        ("tokens", _kv(tok)),
        ("settings", _kv(m.get("settings") or {})),
        ("architecture", _kv(m.get("architecture") or {})),
        (
            "sites",
            f"{len(m.get('sites', []))} hooked, {len(m.get('aliases') or {})} aliases, "
            f"{len(m.get('dropped_sites') or {})} dropped",
        ),
        ("environment", _kv(m.get("environment") or {})),
        ("timings", _kv({k: f"{v:.1f} s" for k, v in (m.get("timings") or {}).items()})),
        (
            "run",
            f"{view.path} (schema {m.get('schema_version')}, actscope {m.get('actscope_version')}, "
            f"status {m.get('status')}, started {m.get('started')}, finished {m.get('finished', '-')})",
        ),
    ]
    return rows


def _kv(d: dict) -> str:
    return "; ".join(f"{k}: {_short(v)}" for k, v in d.items() if v not in (None, "", [], {}))


def _short(v, limit: int = 160) -> str:
    """A manifest value in one readable line: nested tables by their keys, long lists counted."""
    if isinstance(v, dict):
        keys = list(v)
        text = f"{len(keys)} entries ({', '.join(map(str, keys[:8]))}{', …' if len(keys) > 8 else ''})"
    elif isinstance(v, (list, tuple)):
        if all(not isinstance(x, (dict, list)) for x in v) and len(v) <= 12:
            text = ", ".join(map(str, v))
        else:
            text = f"{len(v)} items"
    else:
        text = str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def comparison_context(views: list[RunView]) -> dict:
    result = compare.build(views)
    return {
        "columns": [compare.HEADERS[c] for c in compare.COLUMNS],
        "rows": [[compare._cell(c, r.get(c)) for c in compare.COLUMNS] for r in result["rows"]],
        "ratios": result["ratios"],
        "chart": plots.compare_bars(result["rows"]),
        # Runs of one training series (actscope.Monitor): M per kind against step, too.
        "trend": plots.trend_lines(t) if (t := compare.trend(views))["x_label"] == "training step" else None,
    }


# ---- filters ---------------------------------------------------------------------


def fmt_num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if abs(v) >= 1e6 or (v != 0 and abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.{digits}g}"
    return str(v)


def fmt_db(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "∞ dB" if math.isinf(v) else f"{v:.1f} dB"


def _finalize(v):
    """Every value printed by the template: control and bidi characters of outside text become
    visible escapes before autoescaping (newlines and tabs stay for `visible`); our SVG
    (Markup) passes as it is."""
    if isinstance(v, str) and not isinstance(v, Markup):
        return textsafe.visible(v, keep="\n\t")
    return v


def visible(s) -> str:
    """Whitespace a reader can see: newlines and tabs as symbols (the text stays escaped)."""
    return "" if s is None else str(s).replace("\n", "⏎").replace("\t", "⇥")
