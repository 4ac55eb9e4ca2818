"""`actscope merge`: combine shard runs (--shard i/N) into the run of the whole corpus.

Shard runs share one fingerprint (model hash, corpus hash, settings, hooked
sites); their accumulator states merge by each field's rule, so the merged run
equals the unsharded one (exactly for extrema, histograms, top-k and per-sample
maxima; to float64 rounding for sums).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import RunDirError
from .results import load_state, prepare_run_dir, read_manifest
from .stats.accumulator import Accumulator

_CHECKS = (
    ("model", lambda m: m["model"].get("sha256"), "different models"),
    ("dtype", lambda m: m["settings"]["dtype"], "different dtypes"),
    ("corpus", lambda m: m["corpus"]["hash"], "different corpora"),
    ("sites", lambda m: [s["name"] for s in m["sites"]], "different site sets"),
    ("settings", lambda m: m["fingerprint"], "different settings"),
)


def check_compatible(runs: list[Path], manifests: list[dict]) -> None:
    for what, key, label in _CHECKS:
        first = key(manifests[0])
        for run, m in zip(runs[1:], manifests[1:]):
            if key(m) != first:
                raise RunDirError(
                    f"cannot merge {runs[0]} and {run}: they measure {label}",
                    f"merge only shards of one measurement (same model, dtype, corpus, sites and settings; {what} differs)",
                )
    for run, m in zip(runs, manifests):
        if m.get("status") != "complete":
            raise RunDirError(
                f"run {run} is not complete (status {m.get('status')})", "finish it with --resume first"
            )
    shards = [tuple(m["shard"]) if m.get("shard") else None for m in manifests]
    if None in shards:
        raise RunDirError("only shard runs (measured with --shard I/N) can be merged", "measure with --shard")
    if len(set(shards)) != len(shards):
        raise RunDirError(f"shard {sorted(shards)} given twice", "give each shard once")


def merge_runs(runs: list[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    from .corpus import load_corpus
    from .models import load_tokenizer
    from .summary import write_results

    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise RunDirError("merge needs at least two shard runs", "give every shard's run directory")
    manifests = [read_manifest(r) for r in runs]
    check_compatible(runs, manifests)
    prepare_run_dir(out, overwrite=overwrite, resume=False, dry=True)
    base = manifests[0]
    hooked = {s["name"]: s["channels"] for s in base["sites"] if not s["alias_of"]}
    total = Accumulator(hooked, base["corpus"]["samples"], "cpu", base["settings"]["statistics"])
    for run in runs:
        part = Accumulator(hooked, base["corpus"]["samples"], "cpu", base["settings"]["statistics"])
        part.load_state_dict(load_state(run)[0])
        total.merge(part)

    corpus = load_corpus(base["corpus"]["name"])
    if base["settings"].get("limit"):
        corpus = replace(corpus, samples=corpus.samples[: base["settings"]["limit"]])
    if corpus.hash != base["corpus"]["hash"]:
        raise RunDirError(
            f"corpus {base['corpus']['name']} changed since the shards were measured",
            "merge where the corpus is unchanged",
        )
    tok = load_tokenizer(base["model"]["source"])
    n = base["shard"][1]
    manifest = {
        **base,
        "shard": None,
        "merged_from": [str(r) for r in runs],
        "shards_merged": f"{len(runs)} of {n}",
        "tokens": {
            **base.get("tokens", {}),
            "measured": int(total.sample_tokens.sum()),
            "samples": int((total.sample_tokens > 0).sum()),
            "batches": sum(m["tokens"]["batches"] for m in manifests),
        },
    }
    out = prepare_run_dir(out, overwrite=overwrite, resume=False)
    from .results import save_state

    save_state(
        out, total.state_dict(), {"fingerprint": base["fingerprint"], "part": 0, "parts": 1, "final": True}
    )
    write_results(out, manifest, total, corpus, tok)
    return out
