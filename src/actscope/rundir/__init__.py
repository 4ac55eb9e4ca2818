"""The run directory: one schema, one writer, one reader.

    run.json          manifest: schema, versions, model, corpus, settings, status, summary
    sites.parquet     one row per site: scalar statistics
    channels.parquet  per (site, channel): max|a|, mean, rms, sum x^2, massive and >=6 counts
    hist.parquet      per (site, bin): nonzero |a|-histogram bins with their edges
    topk.parquet      per (site, rank): top activations with provenance and token text
    samples.parquet   per sample: id, domain, tokens, and max|a| at every site
    quant*.parquet    `actscope quant` results, when present
    state/            accumulator state (safetensors) for resume and merge

schema.py      Arrow schemas and column meanings (docs/run-format.md mirrors them; a test checks)
manifest.py    run.json: builders and the typed shape readers rely on
tables.py      accumulator results -> tables (pure)
writer.py      prepare, lock, atomic writes
reader.py      read_manifest, read_table, load_state, RunView

finish.py (beside this package) turns an accumulator into a complete run directory:
results -> tables -> summary (summary.py) -> files.
"""

from .manifest import measure_manifest, quant_only_manifest
from .reader import RunView, load_state, read_manifest, read_table
from .schema import MANIFEST, SCHEMA_VERSION, STATE, TABLES
from .tables import MeasuredProvenance, TableProvenance
from .writer import (
    RunLock,
    atomic_write,
    atomic_write_text,
    prepare_run_dir,
    save_state,
    write_manifest,
    write_table,
)

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "STATE",
    "TABLES",
    "MeasuredProvenance",
    "RunLock",
    "RunView",
    "TableProvenance",
    "atomic_write",
    "atomic_write_text",
    "load_state",
    "measure_manifest",
    "prepare_run_dir",
    "quant_only_manifest",
    "read_manifest",
    "read_table",
    "save_state",
    "write_manifest",
    "write_table",
]
