"""Finishing a run: the accumulator's results become the tables and the summary, then files.

    complete_run(out, manifest, acc, provenance)

measure() and merge both end here, so a run directory is always written the same
way: collect the statistics' results, build the typed tables, compute the summary
from those very tables (summary.summarize over an in-memory RunView), write the
tables, and write run.json last, marked complete.
"""

from __future__ import annotations

from pathlib import Path

from .rundir.manifest import now
from .rundir.reader import RunView
from .rundir.tables import build_tables, collect
from .rundir.writer import write_manifest, write_table
from .summary import summarize


def complete_run(out: Path, manifest: dict, acc, prov) -> dict:
    tables = build_tables(collect(acc), manifest, prov)
    manifest["summary"] = summarize(RunView.of(out, manifest, tables))
    for name, table in tables.items():
        write_table(out, name, table)
    manifest["status"] = "complete"
    # A run whose activations left the dtype's range is complete but not trustworthy as M.
    manifest["overflowed"] = bool((manifest["summary"].get("nonfinite") or {}).get("overflowed"))
    manifest["finished"] = now()
    write_manifest(out, manifest)
    return manifest
