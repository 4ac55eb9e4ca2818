"""`actscope merge`: combine shard runs (--shard i/N) into the run of the whole corpus.

Shard runs share one fingerprint (model hash, corpus hash, settings, hooked
sites); their accumulator states merge by each field's rule, so the merged run
equals the unsharded one (exactly for extrema, histograms, top-k and per-sample
maxima; to float64 rounding for sums). Sample metadata and the text of top-k
tokens come from the shards' own tables: no tokenizer, corpus or model is loaded.

All N shards give a complete run; fewer give a run whose status is "partial",
which every view says.
"""

from __future__ import annotations

from pathlib import Path

from .errors import RunDirError
from .finish import complete_run
from .rundir import (
    RunLock,
    RunView,
    TableProvenance,
    load_state,
    prepare_run_dir,
    read_manifest,
    save_state,
)
from .stats.accumulator import Accumulator

_CHECKS = (
    ("model", lambda m: m["model"].get("sha256"), "different models"),
    ("dtype", lambda m: m["settings"].get("dtype"), "different dtypes"),
    ("corpus", lambda m: m["corpus"]["hash"], "different corpora"),
    ("sites", lambda m: [s["name"] for s in m.get("sites", [])], "different site sets"),
    ("settings", lambda m: m.get("fingerprint"), "different settings"),
)


def check_compatible(runs: list[Path], manifests: list[dict]) -> None:
    for run, m in zip(runs, manifests):
        if m.get("status") != "complete":
            raise RunDirError(
                f"run {run} is not a complete shard (status {m.get('status')})",
                "finish that shard with `actscope measure ... --shard I/N --resume` first",
            )
        shard = m.get("shard")
        if not (isinstance(shard, list) and len(shard) == 2 and all(isinstance(x, int) for x in shard)):
            raise RunDirError(f"{run} is not a shard run", "merge only runs measured with --shard I/N")
    for what, key, label in _CHECKS:
        first = key(manifests[0])
        for run, m in zip(runs[1:], manifests[1:]):
            if key(m) != first:
                raise RunDirError(
                    f"cannot merge {runs[0]} and {run}: they measure {label}",
                    f"merge only shards of one measurement (same model, dtype, corpus, sites and settings; {what} differs)",
                )
    counts = sorted({m["shard"][1] for m in manifests})
    if len(counts) > 1:
        raise RunDirError(
            f"the shards split the corpus in different ways (N = {', '.join(map(str, counts))})",
            "merge shards measured with the same --shard I/N count",
        )
    shards = [tuple(m["shard"]) for m in manifests]
    if len(set(shards)) != len(shards):
        dup = sorted({f"{i}/{n}" for i, n in shards if shards.count((i, n)) > 1})
        raise RunDirError(f"shard {', '.join(dup)} given twice", "give each shard once")


def merge_runs(runs: list[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise RunDirError("merge needs at least two shard runs", "give every shard's run directory")
    manifests = [read_manifest(r) for r in runs]
    check_compatible(runs, manifests)
    prepare_run_dir(out, overwrite=overwrite, resume=False, dry=True)
    base = manifests[0]
    hooked = {s["name"]: s["channels"] for s in base["sites"] if not s["alias_of"]}
    stat_names = base["settings"]["statistics"]
    total = Accumulator(hooked, base["corpus"]["samples"], "cpu", stat_names)
    for run in runs:
        part = Accumulator(hooked, base["corpus"]["samples"], "cpu", stat_names)
        part.load_state_dict(load_state(run)[0])
        total.merge(part)

    n = base["shard"][1]
    missing = sorted(set(range(n)) - {m["shard"][0] for m in manifests})
    manifest = {
        **base,
        "shard": None,
        "merged_from": [str(r) for r in runs],
        "shards_merged": f"{len(runs)} of {n}",
        "shards_missing": [f"{i}/{n}" for i in missing],
        "tokens": {
            **base.get("tokens", {}),
            "measured": int(total.sample_tokens.sum()),
            "samples": int((total.sample_tokens > 0).sum()),
            "batches": sum(m["tokens"]["batches"] for m in manifests),
        },
    }
    prov = TableProvenance([RunView(r) for r in runs])
    with RunLock(out):
        out = prepare_run_dir(out, overwrite=overwrite, resume=False)
        meta = {"fingerprint": base["fingerprint"], "part": 0, "parts": 1, "final": True}
        save_state(out, total.state_dict(), meta)
        complete_run(out, manifest, total, prov)
        if missing:  # a merge of some shards only: every view must say so
            from .rundir.writer import write_manifest

            write_manifest(out, {**manifest, "status": "partial"})
    return Path(out)
