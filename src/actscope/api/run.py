"""Run: one measurement as Python objects, on disk (a run directory) or still in memory.

    run = actscope.open("runs/quick-gemma-3-270m")
    run.summary["M"]                      # the dict `actscope show --json` prints
    run.table("sites")                    # any run-directory table, as a pyarrow Table
    run.to_pandas("topk")                 # when pandas is installed (not a dependency)
    run.report("report.html"); print(run.card())

A Run wraps the one reader, rundir.RunView; in memory it is RunView.of over the
tables finish.build_run made, so both kinds read the same way.
"""

from __future__ import annotations

import html
import importlib
from pathlib import Path

import pyarrow as pa

from ..errors import RunDirError, UserError
from ..limits import FP8_E4M3_MAX
from ..rundir import RunView

MEMORY = Path("<memory>")  # the path of a run that was never written


class Run:
    """A measured run: its summary, its tables, and the views the CLI renders of it."""

    def __init__(self, view: RunView):
        self.view = view

    @classmethod
    def in_memory(cls, manifest: dict, tables: dict[str, pa.Table]) -> Run:
        return cls(RunView.of(MEMORY, manifest, tables))

    # ---- what the run holds ---------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The run directory, or None for a run kept in memory."""
        return None if self.view.path == MEMORY else self.view.path

    @property
    def manifest(self) -> dict:
        """run.json as a dict."""
        return self.view.manifest

    @property
    def summary(self) -> dict:
        """The dict `actscope show --json` prints: the status and the headline numbers."""
        return {"status": self.manifest.get("status"), **self.view.summary}

    @property
    def M(self) -> float | None:  # noqa: N802  (the paper's name for max|a|)
        return self.view.summary.get("M")

    def table(self, name: str) -> pa.Table:
        """A run-directory table (sites, channels, hist, topk, samples, quant ...) as pyarrow."""
        return self.view.table(name)

    def to_pandas(self, name: str = "sites"):
        """A table as a pandas DataFrame (needs pandas)."""
        _require("pandas")
        return self.table(name).to_pandas()

    def to_polars(self, name: str = "sites"):
        """A table as a polars DataFrame (needs polars)."""
        return _require("polars").from_arrow(self.table(name))

    def kind_maxima(self) -> dict[str, float]:
        """max|a| per site kind, in first-firing order (aliases add nothing new)."""
        from ..report.compare import kind_maxima

        return kind_maxima(self.view)

    # ---- views ------------------------------------------------------------------------
    def report(self, path: str | Path, title: str | None = None) -> Path:
        """The self-contained HTML report (`actscope report`) of this run."""
        from ..report.html import render_report

        return render_report([self.view], path, title=title)

    def card(self, format: str = "markdown") -> str:
        """The model-card block (`actscope card`): Markdown, or the JSON fields as a dict's text."""
        import json

        from ..report.card import card_fields, card_markdown

        if format not in ("markdown", "json"):
            raise UserError(f"invalid card format {format!r}", "choose markdown or json")
        return card_markdown(self.view) if format == "markdown" else json.dumps(card_fields(self.view))

    def save(self, out: str | Path, *, overwrite: bool = False) -> Run:
        """Write a run kept in memory as a run directory (run.json + tables); the Run on disk."""
        from ..finish import write_run
        from ..rundir import RunLock, prepare_run_dir

        if self.path is not None:
            raise RunDirError(f"this run is already written to {self.path}", "copy that directory instead")
        tables = {name: self.view.table(name) for name in self.view._mem}
        out = Path(out)
        prepare_run_dir(out, overwrite=overwrite, resume=False, dry=True)
        with RunLock(out):
            write_run(prepare_run_dir(out, overwrite=overwrite, resume=False), self.manifest, tables)
        return Run(RunView(out))

    def __repr__(self) -> str:
        where = self.path or "in memory"
        m = self.M
        return f"<actscope.Run {self.view.label} M={m if m is None else f'{m:.6g}'} ({where})>"

    def _repr_html_(self) -> str:
        """The summary as a small HTML table (what a notebook shows for a Run)."""
        return summary_html(self)


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise UserError(
            f"{module} is not installed", f"pip install {module}, or use run.table(name) (pyarrow)"
        ) from None


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}"
    return str(v)


def summary_html(run: Run) -> str:
    """M, where it sits, the fp16 / FP8 verdicts and M per kind; every text escaped."""
    s = run.view.summary
    loc = s.get("location") or {}
    safety = s.get("safety") or {}
    m = s.get("M")
    rows = [
        ("model", run.view.label),
        ("status", run.manifest.get("status")),
        ("tokens measured", (run.manifest.get("tokens") or {}).get("measured")),
        ("M = max|a|", _fmt(m)),
        ("where", f"{loc.get('site')}, channel {loc.get('channel')}" if loc else "-"),
        ("token", f"{loc.get('token_text')!r} at position {loc.get('position')}" if loc else "-"),
        ("fp16", _fp16(safety)),
        ("FP8 E4M3 headroom", f"x{FP8_E4M3_MAX / m:.3g}" if m else "-"),
    ]
    rows += [(f"M {kind}", _fmt(v)) for kind, v in run.kind_maxima().items()]
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td style='font-family:monospace'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    where = html.escape(str(run.path or "in memory"))
    return f"<div class='actscope-run'><b>actscope run</b> ({where})<table>{body}</table></div>"


def _fp16(safety: dict) -> str:
    if not safety:
        return "-"
    head = safety.get("fp16_headroom")
    verdict = "safe" if safety.get("fp16_safe") else "overflows"
    return f"{verdict} (headroom x{head:.3g})" if head else verdict
