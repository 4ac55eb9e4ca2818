"""A paper-style table of several runs, ratios between chosen pairs, and the paper's
published maxima beside the measured ones (package data: actscope/data/published.json)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from functools import cache
from importlib import resources

from ..errors import UserError
from ..textsafe import md_cell
from .rundata import RunView

COLUMNS = ("model", "family", "parameters", "arch", "dtype", "M", "location", "kind", "log10_M")
HEADERS = {
    "model": "model",
    "family": "family",
    "parameters": "parameters",
    "arch": "dense/MoE",
    "dtype": "dtype",
    "M": "M = max|a|",
    "location": "location",
    "kind": "site kind carrying M",
    "log10_M": "log10 M",
    "published_M": "published M",
    "measured_over_published": "measured / published",
    "source": "source",
}


@cache
def published() -> dict:
    """The MA paper's table: {"citation", "short", "setup", "rows": [...]}."""
    return json.loads(resources.files("actscope").joinpath("data/published.json").read_text())


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


def match_published(label: str) -> dict | None:
    """The published row for a model label (case and punctuation ignored), or None."""
    key = _norm(label)
    return next((r for r in published()["rows"] if _norm(r["checkpoint"]) == key), None)


def human_params(n) -> str:
    if not n:
        return "?"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def location(kind: str | None, layer: int | None) -> str:
    return f"layer {layer} {kind}" if layer is not None else str(kind)


def run_row(view: RunView) -> dict:
    s = view.summary
    loc = s.get("location") or {}
    m = s.get("M")
    return {
        "model": view.label,
        "family": view.family,
        "parameters": human_params(view.n_params),
        "n_params": view.n_params,
        "arch": "MoE" if view.is_moe else "dense",
        "dtype": view.dtype,
        "M": m,
        "M_lower_bound": bool(s.get("M_lower_bound")),
        "partial": view.partial,
        "M_signed": s.get("M_signed"),
        "location": location(loc.get("kind"), loc.get("layer")) if m is not None else "-",
        "site": loc.get("site"),
        "kind": ", ".join(s.get("carrier_kinds") or [loc.get("kind") or "-"]),
        "log10_M": round(math.log10(m), 3) if m else None,
        "fp16_safe": (s.get("safety") or {}).get("fp16_safe"),
        "corpus": (view.manifest.get("corpus") or {}).get("name"),
        "tokens": (view.manifest.get("tokens") or {}).get("measured"),
        "source": "measured",
        "run": str(view.path),
    }


def published_rows() -> list[dict]:
    return [
        {
            "model": r["checkpoint"],
            "family": r["family"],
            "parameters": "-",
            "arch": "MoE" if r["moe"] else "dense",
            "dtype": r["dtype"],
            "M": r["M"],
            "M_signed": r["M_signed"],
            "location": r["location"],
            "kind": r["kind"],
            "log10_M": round(math.log10(r["M"]), 3),
            "source": published()["short"],
        }
        for r in published()["rows"]
    ]


def build(views: list[RunView], pairs: list[str] | None = None, with_published: bool = False) -> dict:
    """{"rows", "ratios", "published"}: measured rows first, then (with_published) the paper's."""
    rows = [run_row(v) for v in views]
    _dedupe_labels(rows)
    if with_published:
        for r in rows:
            p = match_published(r["model"])
            r["published_M"] = p["M"] if p else None
            r["published_location"] = p["location"] if p else None
            r["measured_over_published"] = r["M"] / p["M"] if (p and r["M"]) else None
        rows += published_rows()
    ratios = [_ratio(a, b) for a, b in _pairs(rows, pairs, len(views))]
    pub = published()
    return {
        "rows": rows,
        "ratios": ratios,
        "published": {"citation": pub["citation"], "setup": pub["setup"]} if with_published else None,
    }


def _dedupe_labels(rows: list[dict]) -> None:
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["model"]] = seen.get(r["model"], 0) + 1
        if seen[r["model"]] > 1:
            r["model"] = f"{r['model']} ({seen[r['model']]})"


def _pairs(rows: list[dict], pairs: list[str] | None, n_measured: int) -> list[tuple[dict, dict]]:
    """--pair A:B (model names or 1-based row numbers); default: every measured run over the first."""
    if not pairs:
        return [(rows[i], rows[0]) for i in range(1, n_measured)]
    out = []
    for spec in pairs:
        if ":" not in spec:
            raise UserError(
                f"--pair {spec!r} is not A:B", "give two model names or row numbers, e.g. --pair 2:1"
            )
        a, b = spec.split(":", 1)
        out.append((_find(rows, a), _find(rows, b)))
    return out


def _find(rows: list[dict], key: str) -> dict:
    if key.isdigit() and 1 <= int(key) <= len(rows):
        return rows[int(key) - 1]
    for r in rows:
        if _norm(r["model"]) == _norm(key):
            return r
    names = ", ".join(r["model"] for r in rows)
    raise UserError(
        f"--pair names {key!r}, which is not in the table", f"use a row number or one of: {names}"
    )


def _ratio(a: dict, b: dict) -> dict:
    r = a["M"] / b["M"] if (a["M"] and b["M"]) else None
    return {
        "a": a["model"],
        "b": b["model"],
        "ratio": r,
        "log10_ratio": round(math.log10(r), 3) if r else None,
    }


# ---- output formats ---------------------------------------------------------------


def fmt_m(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def fmt_pct(v) -> str:
    """A fraction as a percentage that never rounds a near-total up to 100% (or a trace down to 0%)."""
    if v is None:
        return "-"
    if 0.999 < v < 1:
        return ">99.9%"
    if 0 < v < 1e-5:
        return "<0.001%"
    return f"{100 * v:.3g}%"


def _columns(result: dict) -> list[str]:
    cols = list(COLUMNS)
    if result["published"]:
        cols += ["published_M", "measured_over_published", "source"]
    return cols


def _cell(col: str, v) -> str:
    if v is None:
        return "-"
    if col in ("M", "published_M"):
        return fmt_m(v)
    if col == "log10_M":
        return f"{v:.2f}"
    if col == "measured_over_published":
        return f"{v:.3g}"
    return str(v)


def to_markdown(result: dict) -> str:
    cols = _columns(result)
    lines = [
        "| " + " | ".join(md_cell(HEADERS[c]) for c in cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    for r in result["rows"]:
        cells = [_cell(c, r.get(c)) for c in cols]
        if r.get("M_lower_bound") and "M" in cols:  # an overflowed run: M is a lower bound
            cells[cols.index("M")] = "≥ " + cells[cols.index("M")] + " (lower bound)"
        if r.get("partial") and "model" in cols:
            cells[cols.index("model")] += " (partial merge)"
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    if result["ratios"]:
        lines += ["", "| ratio | M_a / M_b | log10 |", "|---|---|---|"]
        for q in result["ratios"]:
            ratio = f"{q['ratio']:.3g}" if q["ratio"] else "-"
            log10 = q["log10_ratio"] if q["ratio"] else "-"
            lines.append(f"| {md_cell(q['a'])} / {md_cell(q['b'])} | {ratio} | {log10} |")
    if result["published"]:
        lines += [
            "",
            f"Published values: {result['published']['citation']}. Setup: {result['published']['setup']}.",
        ]
    return "\n".join(lines)


def to_csv(result: dict) -> str:
    cols = _columns(result) + ["M_signed", "site", "n_params", "corpus", "tokens", "run"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in result["rows"]:
        w.writerow({c: r.get(c) for c in cols})
    return buf.getvalue()


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2)


FORMATS = {"markdown": to_markdown, "csv": to_csv, "json": to_json}


# ---- trend: M per kind across training steps or checkpoints ---------------------------

SERIES = "series.jsonl"  # written by actscope.Monitor next to its step-NNNNNNNN run directories


def kind_maxima(view: RunView) -> dict[str, float]:
    """max|a| per site kind, in first-firing order (aliases add nothing new)."""
    out: dict[str, float] = {}
    for r in view.hooked_sites():
        out[r["kind"]] = max(out.get(r["kind"], 0.0), r["absmax"])
    return out


def trend_point(view: RunView) -> dict:
    """One point of a trend: M, M per kind and the fp16 / FP8 E4M3 headroom (limit / M)."""
    from ..limits import FP8_E4M3_MAX, FP16_MAX

    m = view.summary.get("M")
    return {
        "M": m,
        "kinds": kind_maxima(view),
        "fp16_headroom": FP16_MAX / m if m else None,
        "fp8_e4m3_headroom": FP8_E4M3_MAX / m if m else None,
    }


def expand_series(paths: list) -> list:
    """Run directories, with a Monitor's series directory replaced by its step runs in order."""
    from pathlib import Path

    out = []
    for p in map(Path, paths):
        if (p / SERIES).is_file():
            steps = sorted(d for d in p.glob("step-*") if (d / "run.json").is_file())
            if not steps:
                raise UserError(f"series {p} holds no step runs", "write them with Monitor(..., out=DIR)")
            out += steps
        else:
            out.append(p)
    return out


def trend(views: list[RunView]) -> dict:
    """{"x_label", "points"}: one point per run, x = training step when every run has one
    (Monitor runs; sorted by it), else the run's label in the order given (checkpoints)."""
    steps = [(v.manifest.get("training") or {}).get("step") for v in views]
    by_step = all(isinstance(s, int) for s in steps)
    pairs = sorted(zip(steps, views), key=lambda p: p[0]) if by_step else list(zip(steps, views))
    points = [
        {"x": s if by_step else v.label, "model": v.label, "run": str(v.path), **trend_point(v)}
        for s, v in pairs
    ]
    return {"x_label": "training step" if by_step else "checkpoint", "points": points}


def trend_markdown(result: dict) -> str:
    kinds = list(dict.fromkeys(k for p in result["points"] for k in p["kinds"]))
    head = [result["x_label"], "M", *(f"M {k}" for k in kinds), "fp16 headroom", "FP8 E4M3 headroom"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for p in result["points"]:
        cells = [str(p["x"]), fmt_m(p["M"]), *(fmt_m(p["kinds"].get(k)) for k in kinds)]
        cells += [_headroom(p["fp16_headroom"]), _headroom(p["fp8_e4m3_headroom"])]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _headroom(v) -> str:
    return "-" if v is None else f"x{v:.3g}"


def trend_csv(result: dict) -> str:
    kinds = list(dict.fromkeys(k for p in result["points"] for k in p["kinds"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x", "model", "M", *(f"M_{k}" for k in kinds), "fp16_headroom", "fp8_e4m3_headroom", "run"])
    for p in result["points"]:
        w.writerow(
            [p["x"], p["model"], p["M"], *(p["kinds"].get(k) for k in kinds)]
            + [p["fp16_headroom"], p["fp8_e4m3_headroom"], p["run"]]
        )
    return buf.getvalue()


TREND_FORMATS = {"markdown": trend_markdown, "csv": trend_csv, "json": to_json}
