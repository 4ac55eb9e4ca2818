"""Finishing a run: the accumulator's results become the tables and the summary, then files.

    complete_run(out, manifest, acc, provenance)        # build_run + write_run

measure() and merge both end here, so a run directory is always written the same
way: collect the statistics' results, build the typed tables, compute the summary
from those very tables (summary.summarize over an in-memory RunView), write the
tables, and write run.json last, marked complete. The Python API stops after
build_run when a run stays in memory.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from . import signals
from .rundir.manifest import now
from .rundir.reader import RunView
from .rundir.tables import Results, build_tables, collect
from .rundir.writer import write_manifest, write_table
from .summary import summarize


def build_run(path: Path, manifest: dict, results: Results, prov) -> dict[str, pa.Table]:
    """The run's tables; `manifest` gains its summary, status and end time (nothing is written)."""
    tables = build_tables(results, manifest, prov)
    manifest["summary"] = summarize(RunView.of(path, manifest, tables))
    manifest["status"] = "complete"
    # A run whose activations left the dtype's range is complete but not trustworthy as M.
    manifest["overflowed"] = bool((manifest["summary"].get("nonfinite") or {}).get("overflowed"))
    manifest["finished"] = now()
    return tables


def write_run(out: Path, manifest: dict, tables: dict[str, pa.Table]) -> None:
    """The tables, then run.json last (a reader never sees a complete manifest before its tables)."""
    for name, table in tables.items():
        write_table(out, name, table)
    signals.check()  # a signal whose exception was dropped on the way leaves the run resumable
    write_manifest(out, manifest)


def complete_run(out: Path, manifest: dict, acc, prov) -> dict:
    write_run(out, manifest, build_run(out, manifest, collect(acc), prov))
    return manifest
