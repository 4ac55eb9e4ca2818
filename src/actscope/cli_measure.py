"""`actscope measure`, `actscope sites` and `actscope show`."""

from __future__ import annotations

import json
from pathlib import Path

from .config import MeasureConfig

DTYPES = ("float32", "bfloat16", "float16")


def register(sub) -> None:
    d = MeasureConfig()
    m = sub.add_parser("measure", help="stream a corpus through a model and record activation statistics")
    m.add_argument("model", nargs="?", default=d.model, help="built-in name, model directory or .gguf file")
    m.add_argument(
        "--corpus", default=d.corpus, help="built-in profile (quick, standard, full) or a JSONL file"
    )
    m.add_argument("--out", "-o", help="run directory (default runs/MODEL-CORPUS)")
    add_text_column_arg(m)
    add_model_args(m)
    m.add_argument(
        "--download", action="store_true", help="fetch a Hub id (ORG/NAME): safetensors and tokenizer only"
    )
    m.add_argument("--revision", help="Hub branch, tag or commit for --download (default main; pinned)")
    m.add_argument("--sites", help="site kinds, presets (all, paper) or globs, comma-separated")
    m.add_argument(
        "--max-length", type=int, default=d.max_length, help=f"tokens per sequence (default {d.max_length})"
    )
    m.add_argument(
        "--overflow", choices=("truncate", "window"), default=d.overflow, help="longer samples: cut or split"
    )
    m.add_argument("--bos", default=d.bos, help="auto (tokenizer default), always or never")
    m.add_argument("--limit", type=int, help="measure only the first N samples")
    m.add_argument("--token-budget", type=int, default=d.token_budget, help="padded tokens per batch")
    m.add_argument("--max-batch", type=int, default=d.max_batch, help="sequences per batch at most")
    m.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    m.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    m.add_argument("--shard", type=_shard, help="measure the I-th of N deterministic slices (I/N, 0-based)")
    m.add_argument(
        "--chat-template", action="store_true", help="wrap each sample as a user turn (instruct models)"
    )
    m.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help="batches between checkpoints"
    )
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.add_argument("--json", action="store_true", help="print the summary as JSON")
    m.set_defaults(handler=cmd_measure)

    s = sub.add_parser("sites", help="list the sites actscope would hook in a model")
    s.add_argument("model", nargs="?", default="gemma-3-270m")
    add_model_args(s)
    s.add_argument("--sites", help="select by kind, preset or glob")
    s.add_argument("--coverage", action="store_true", help="show which canonical kinds were found")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=cmd_sites)

    g = sub.add_parser("merge", help="combine shard runs (--shard I/N) into one run")
    g.add_argument("runs", nargs="+", help="the shard run directories")
    g.add_argument("--out", "-o", required=True, help="run directory to write")
    g.add_argument("--overwrite", action="store_true")
    g.set_defaults(handler=cmd_merge)

    w = sub.add_parser("show", help="print the summary of a run directory")
    w.add_argument("run", help="run directory")
    w.add_argument("--json", action="store_true", help="machine-readable summary")
    w.add_argument("--sites", action="store_true", help="also list every site")
    w.set_defaults(handler=cmd_show)


def _shard(text: str) -> tuple[int, int]:
    import argparse

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shard {text!r}; use I/N, e.g. 0/4") from None
    return i, n


def _max_memory(text: str) -> dict:
    import argparse

    out = {}
    for part in text.split(","):
        key, _, val = part.partition("=")
        if not val:
            raise argparse.ArgumentTypeError(
                f"invalid --max-memory part {part!r}; use DEVICE=SIZE, e.g. cpu=2GiB"
            )
        out[int(key) if key.isdigit() else key] = val
    return out


def add_text_column_arg(p) -> None:
    p.add_argument(
        "--text-column", help="column or JSON field holding the text of a file corpus (default text)"
    )


def load_corpus_arg(corpus: str, text_column: str | None):
    """The corpus, read here only when --text-column is given (else the runner reads it)."""
    if text_column is None:
        return None
    from .corpus import load_corpus

    return load_corpus(corpus, text_column=text_column)


def add_model_args(p) -> None:
    p.add_argument("--dtype", help="float32 (CPU default), bfloat16 (CUDA default) or float16")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--cache-dir", help="where converted GGUF models are cached (default ~/.cache/actscope)")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model repository's own code")
    p.add_argument(
        "--allow-pickle", action="store_true", help="load pickled .bin/.pt weights (trusted files only)"
    )
    p.add_argument("--device-map", help="accelerate device map, e.g. auto (offloads what does not fit)")
    p.add_argument(
        "--max-memory", type=_max_memory, help="per-device memory for --device-map, e.g. cpu=2GiB,0=20GiB"
    )


# MeasureConfig fields taken from flags of the same name (model options: engine.MODEL_FIELDS).
_MEASURE_FLAGS = (
    "model",
    "corpus",
    "out",
    "sites",
    "max_length",
    "overflow",
    "bos",
    "limit",
    "token_budget",
    "max_batch",
    "overwrite",
    "resume",
    "checkpoint_every",
    "shard",
    "chat_template",
    "download",
    "revision",
)


def cmd_measure(a) -> int:
    from .engine import model_kwargs
    from .report.terminal import print_summary
    from .rundir import read_manifest
    from .runner import measure

    kw = {f: getattr(a, f) for f in _MEASURE_FLAGS}
    cfg = MeasureConfig(**kw, **model_kwargs(a), progress=not a.no_progress)
    try:
        out = measure(cfg, corpus=load_corpus_arg(cfg.corpus, a.text_column))
        from . import distributed

        if not distributed.current().main:
            return 0
        manifest = read_manifest(out)
        if a.json:
            print(json.dumps(manifest["summary"], indent=2))
        else:
            print_summary(out, manifest)
    except KeyboardInterrupt as err:  # outside the measuring loop (which checkpoints and says so)
        raise _interrupted(cfg, err) from None
    return 0


def _interrupted(cfg: MeasureConfig, err: KeyboardInterrupt) -> Exception:
    """What an interrupt left behind in the run directory, and what to do next."""
    from .errors import Interrupted
    from .rundir import MANIFEST, STATE
    from .runner import default_out

    out = Path(cfg.out or default_out(cfg))
    try:
        status = json.loads((out / MANIFEST).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return err
    if status == "complete":
        return Interrupted(f"interrupted; the run in {out} is complete: `actscope show {out}` prints it")
    if (out / STATE).is_file():
        return Interrupted(f"interrupted; state saved in {out}; continue with the same command and --resume")
    return err


def cmd_merge(a) -> int:
    from .merge import merge_runs
    from .report.terminal import print_summary
    from .rundir import read_manifest

    out = merge_runs(a.runs, a.out, overwrite=a.overwrite)
    print_summary(out, read_manifest(out))
    return 0


def cmd_sites(a) -> int:
    from .adapters import discover_sites
    from .engine import load, probe_shapes
    from .report.terminal import print_sites
    from .sites import select_sites

    loaded = load(a.model, a)
    plan = discover_sites(loaded.model)
    chosen = select_sites(plan.bindings, a.sites)
    shapes = {} if a.json else probe_shapes(loaded, chosen)
    print_sites(plan, chosen, shapes, coverage=a.coverage, as_json=a.json)
    return 0


def cmd_show(a) -> int:
    from .report.terminal import print_summary
    from .rundir import read_manifest

    manifest = read_manifest(a.run)
    if "summary" not in manifest:
        from .errors import RunDirError

        status = manifest.get("status")
        hint = (
            "it holds quantization results only; run `actscope measure` into it for a summary"
            if status == "quant-only"
            else "finish it with `actscope measure --resume`"
        )
        if not a.json:
            raise RunDirError(f"{a.run} has no measurement summary (status {status})", hint)
    if a.json:
        print(json.dumps({"status": manifest.get("status"), **manifest.get("summary", {})}, indent=2))
        return 0
    print_summary(a.run, manifest, all_sites=a.sites)
    return 0
