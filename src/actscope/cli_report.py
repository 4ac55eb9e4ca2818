"""`actscope report`, `compare`, `card` and `export`: views of run directories (no model needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import outputs


def register(sub) -> None:
    from .quant.kvcache import GRANULARITIES as KV_GRANULARITIES
    from .quant.kvcache import KV_FORMATS
    from .report.export import FORMATS as EXPORT_FORMATS

    r = sub.add_parser("report", help="write a self-contained HTML report of one or more runs")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    r.add_argument("-o", "--out", default="report.html", help="HTML file to write (default report.html)")
    r.add_argument("--title", help="page title")
    r.set_defaults(handler=cmd_report)

    c = sub.add_parser(
        "compare", help="a paper-style table of several runs, with ratios and published values"
    )
    c.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    c.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown", help="output format")
    c.add_argument(
        "--pair",
        action="append",
        metavar="A:B",
        help="ratio M_A / M_B (model names or row numbers); repeatable",
    )
    c.add_argument(
        "--published", action="store_true", help="add the paper's published maxima (arXiv 2605.15572)"
    )
    c.add_argument("--chart", metavar="FILE.svg", help="also write a bar chart of log10 M")
    c.add_argument(
        "--trend",
        action="store_true",
        help="M per site kind against training step or checkpoint (runs or Monitor series directories); "
        "the chart goes to --chart (default trend.svg)",
    )
    c.add_argument("-o", "--out", help="write the table to a file instead of stdout")
    c.set_defaults(handler=cmd_compare)

    d = sub.add_parser("card", help="a model-card block: Markdown plus machine-readable fields")
    d.add_argument("run", help="run directory")
    d.add_argument("--format", choices=("markdown", "json"), default="markdown")
    d.add_argument("-o", "--out", help="write to a file instead of stdout")
    d.set_defaults(handler=cmd_card)

    e = sub.add_parser(
        "export",
        help="activation scales for other tools (SmoothQuant, llama.cpp imatrix GGUF or .dat, JSON)",
    )
    e.add_argument("run", help="run directory")
    e.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    e.add_argument(
        "-o",
        "--out",
        help="file to write (default RUN/act_scales.pt, imatrix.gguf, imatrix.dat, export.json, "
        "kv_scales.safetensors + .json)",
    )
    e.add_argument("--kv-format", choices=KV_FORMATS, default="fp8-e4m3", help="kv-scales: cache format")
    e.add_argument(
        "--kv-granularity", choices=KV_GRANULARITIES, default="tensor", help="kv-scales: per layer or head"
    )
    e.set_defaults(handler=cmd_export)


def _emit(text: str, out: str | None) -> None:
    if out:
        outputs.write_text(out, "-o", text if text.endswith("\n") else text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)


def cmd_report(a) -> int:
    from .report.html import render_report

    outputs.check(a.out, "-o")  # before the runs are read and the charts drawn
    out = render_report(a.runs, a.out, title=a.title)
    print(f"wrote {out}")
    return 0


def cmd_compare(a) -> int:
    from .report import compare, plots
    from .report.rundata import RunView

    for path, flag in ((a.out, "-o"), (a.chart, "--chart")):
        if path:
            outputs.check(path, flag)
    if a.trend:
        return _trend(a)
    result = compare.build([RunView.measured(r) for r in a.runs], pairs=a.pair, with_published=a.published)
    _emit(compare.FORMATS[a.format](result), a.out)
    if a.chart:
        outputs.write_text(a.chart, "--chart", plots.compare_bars(result["rows"]))
        print(f"wrote {a.chart}", file=sys.stderr)
    return 0


def _trend(a) -> int:
    from .report import compare, plots
    from .report.rundata import RunView

    result = compare.trend([RunView(r) for r in compare.expand_series(a.runs)])
    _emit(compare.TREND_FORMATS[a.format](result), a.out)
    chart = a.chart or "trend.svg"
    Path(chart).write_text(plots.trend_lines(result), encoding="utf-8")
    print(f"wrote {chart}", file=sys.stderr)
    return 0


def cmd_card(a) -> int:
    from .report.card import card_fields, card_markdown
    from .report.rundata import RunView

    if a.out:
        outputs.check(a.out, "-o")
    view = RunView.measured(a.run)
    _emit(card_markdown(view) if a.format == "markdown" else json.dumps(card_fields(view), indent=2), a.out)
    return 0


def cmd_export(a) -> int:
    from .report.export import DEFAULT_NAME, export
    from .report.rundata import RunView

    out = a.out or str(Path(a.run) / DEFAULT_NAME[a.format])
    outputs.check(out, "-o")
    view = RunView.measured(a.run)
    opts = {"kv_format": a.kv_format, "kv_granularity": a.kv_granularity} if a.format == "kv-scales" else {}
    info = outputs.write(out, "-o", lambda tmp: export(view, a.format, tmp, **opts))
    print(f"wrote {out} ({info['entries']} entries, {info['format']})")
    if "document" in info:  # kv-scales: the kv_cache_scheme and peaks beside the tensors
        side = str(Path(out).with_suffix(".json"))
        outputs.write_text(side, "-o", json.dumps(info["document"], indent=2) + "\n")
        print(f"wrote {side}")
    for name, experts in (info.get("idle_experts") or {}).items():
        print(f"  {name}: no token reached expert(s) {', '.join(map(str, experts))} (count 0: no data)")
    return 0
