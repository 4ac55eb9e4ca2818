"""What measuring costs on top of the forward pass.

On the same pre-tokenized batches, in one process, bare forward passes (the
runner's forward_fn, no hooks) alternate with measured ones (hooks feeding the
accumulator exactly as runner.measure does), round after round in ABBA order so
that drift in the machine's load cancels. Printed: the median over rounds of
measured / bare time and tokens per second, for the paper's site set and for
every site a plain measure hooks (all but attn_logits), and the paper's set plus the
attention-internal sites (query/key/value, key/value, attn_logits) with their cost over it, each
batch run bare and with every set back to back; the time each site kind's own work (taps and
statistics) takes, as a share of a bare forward; the padding fraction of the batching; and peak
resident memory of a whole `measure()` for a small and a large corpus, each in
a subprocess of its own.

    python benchmarks/overhead.py                 # Gemma 3 270M float32 on the CPU
    python benchmarks/overhead.py --rounds 3 --no-memory

The first printed line is `overhead ratio (paper sites): X.XX`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from actscope.corpus import Corpus, Sample, TokenizeConfig, make_batches, tokenize_corpus
from actscope.corpus.batching import padding_fraction
from actscope.corpus.tokenize import Sequence
from actscope.engine import batch_context, forward_fn, probe_inputs
from actscope.hooks import HookSet
from actscope.probe import probe_sites
from actscope.sites import select_sites
from actscope.stats import DEFAULT_STATISTICS
from actscope.stats.accumulator import Accumulator

# (label, --sets key, site spec): the paper's sites, every default site, and the paper's sites
# with the attention-internal ones added (query/key/value, key/value; attn_logits is off by default)
SITE_SETS = (
    ("paper sites", "paper", "paper"),
    ("all sites", "all", None),
    ("paper + query/key/value sites", "qkv", "paper,query,key,value"),
    ("paper + key/value sites", "kv", "paper,kv"),
    ("paper + attn_logits", "logits", "paper,attn_logits"),
)


def real_corpus() -> Corpus:
    """The built-in quick corpus, or (where it is missing) real English prose from
    the standard library's docstrings."""
    try:
        from actscope.corpus import load_corpus

        return load_corpus("quick")
    except Exception as e:  # noqa: BLE001 - any failure: fall back, say so
        print(f"(quick corpus unavailable: {e}; using standard-library docstrings)", file=sys.stderr)
    import importlib
    import inspect

    texts = []
    for name in ("argparse", "collections", "functools", "itertools", "json", "logging", "pathlib", "typing"):
        mod = importlib.import_module(name)
        texts += [d for _, o in inspect.getmembers(mod) if (d := inspect.getdoc(o)) and len(d) > 200]
    samples = tuple(Sample(f"doc-{i}", "docs", "stdlib", t) for i, t in enumerate(texts))
    return Corpus("stdlib-docstrings", samples)


def windows(corpus: Corpus, tok, n: int, length: int) -> list[Sequence]:
    """`n` sequences of exactly `length` real tokens: BOS + consecutive windows of the
    corpus's token stream (repeated if the corpus is short). No padding."""
    stream: list[int] = []
    for s in corpus.samples:
        stream += tok(s.text, add_special_tokens=False)["input_ids"]
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    body = length - len(bos)
    while len(stream) < n * body:
        stream += stream
    return [Sequence(i, 0, tuple(bos + stream[i * body : (i + 1) * body])) for i in range(n)]


class Bench:
    """Bare and measured passes over fixed batches for one site set."""

    def __init__(self, loaded, seqs, batches, spec: str, stat_names):
        from actscope.adapters import discover_sites

        model, tok = loaded.model, loaded.tokenizer
        self.device = next(model.parameters()).device
        self.model, self.batches = model, batches
        self.run = forward_fn(model)
        chosen = select_sites(discover_sites(model).bindings, spec)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.probe = probe_sites(model, chosen, *probe_inputs(seqs, self.device, pad_id))
        self.n_sites = len(self.probe.usable)
        self.acc = Accumulator(self.probe.channels, len(seqs), self.device, stat_names)
        self.inputs = [(b.input_ids.to(self.device), b.attention_mask.to(self.device)) for b in batches]

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _clock(self) -> tuple[float, float]:
        self._sync()
        return time.perf_counter(), time.process_time()

    def bare(self, i: int) -> tuple[float, float]:
        """(wall, cpu) seconds of batch i's forward without hooks."""
        ids, mask = self.inputs[i]
        with torch.inference_mode():
            w, c = self._clock()
            self.run(ids, mask)
            w2, c2 = self._clock()
        return w2 - w, c2 - c

    def measured(self, i: int, bindings=None, sink=None) -> tuple[float, float]:
        """The runner's loop body for batch i: provenance, forward with hooks, once-check
        (hooking `bindings` into `sink`, by default the probed sites into the accumulator)."""
        acc, batch = self.acc, self.batches[i]
        ids, mask = self.inputs[i]
        bindings, sink = bindings or self.probe.bindings, sink or acc.update
        with HookSet(self.model, bindings, sink) as hooks, torch.inference_mode():
            w, c = self._clock()
            acc.begin_batch(batch_context(batch, self.device))
            self.run(ids, mask)
            hooks.check_once()
            acc.end_batch()
            w2, c2 = self._clock()
        return w2 - w, c2 - c


def time_ratios(benches: dict[str, Bench], rounds: int) -> tuple[dict, dict]:
    """Every round runs each batch bare and then measured with every site set, back to back,
    in an order reversed from batch to batch (ABBA), so that a change in the machine's load
    hits all sides of a batch alike. A set's ratio is the median over (batch, round) of
    measured / bare; its cost over the paper's set, the median of measured / paper-measured
    over the same passes (a difference of two medians would carry both their noise)."""
    names = list(benches)
    first = benches[names[0]]
    n = len(first.batches)
    for i in range(n):  # warm-up: allocator, caches, any one-time build
        first.bare(i)
        for b in benches.values():
            b.measured(i)
    base = "paper sites" if "paper sites" in benches else None
    pairs = {k: [] for k in names}
    cpu_pairs = {k: [] for k in names}
    over_paper = {k: [] for k in names if base is not None and k != base}
    rounds_wall = {k: [] for k in names}
    bare_t, meas_t = [], {k: [] for k in names}
    best_b, best_m = [float("inf")] * n, {k: [float("inf")] * n for k in names}
    flip = False
    for _ in range(rounds):
        gc.collect()
        rb, rm = 0.0, dict.fromkeys(names, 0.0)
        for i in range(n):
            order = [None, *names]
            times = {}
            for k in order[::-1] if flip else order:
                times[k] = first.bare(i) if k is None else benches[k].measured(i)
            flip = not flip
            b = times[None]
            rb += b[0]
            best_b[i] = min(best_b[i], b[0])
            for k in names:
                m = times[k]
                pairs[k].append(m[0] / b[0])
                cpu_pairs[k].append(m[1] / b[1])
                if k in over_paper:
                    over_paper[k].append(m[0] / times[base][0])
                rm[k] += m[0]
                best_m[k][i] = min(best_m[k][i], m[0])
        bare_t.append(rb)
        for k in names:
            rounds_wall[k].append(rm[k] / rb)
            meas_t[k].append(rm[k])
    tokens = sum(b.n_tokens for b in first.batches)
    results, increments = {}, {}
    for k in names:
        results[k] = {
            "ratio": statistics.median(pairs[k]),
            "cpu_ratio": statistics.median(cpu_pairs[k]),
            # Load on a shared machine only ever slows a pass down: the fastest of the rounds
            # is each side's least disturbed time, a cross-check of the median.
            "min_ratio": sum(best_m[k]) / sum(best_b),
            "rounds": rounds_wall[k],
            "pairs": len(pairs[k]),
            "bare_tok_s": tokens / statistics.median(bare_t),
            "measured_tok_s": tokens / statistics.median(meas_t[k]),
            "sites": benches[k].n_sites,
            "hooked": len(benches[k].probe.bindings),
        }
        if k in over_paper:
            x = over_paper[k]
            q1, _, q3 = statistics.quantiles(x, n=4) if len(x) > 1 else x * 3
            increments[k] = {"median": statistics.median(x), "q1": q1, "q3": q3}
    return results, increments


def kind_costs(bench: Bench, rounds: int) -> tuple[dict[str, float], float]:
    """Seconds per batch spent in each site kind's own work (its attention taps, e.g. the
    logit ranges, and the statistics of its tensors), and the bare forward's, over `rounds`
    passes of every batch (each batch bare, then measured with clocks around that work).

    A decomposition of the measured cost that drift in the machine's load hardly moves: it
    times only the work a kind adds, not the forward around it. What it leaves out is the
    hooks' dispatch and a kind's effect on the forward's caches; the ratios above include both.
    """
    spent: dict[str, float] = collections.defaultdict(float)
    kinds = [b.site.kind for b in bench.probe.bindings]

    def timed(tap, kind):
        def run(*a):
            t = time.perf_counter()
            y = tap(*a)
            spent[kind] += time.perf_counter() - t
            return y

        return run

    bindings = [
        dataclasses.replace(b, attention_tap=timed(b.attention_tap, b.site.kind)) if b.attention_tap else b
        for b in bench.probe.bindings
    ]

    def sink(i: int, x) -> None:
        t = time.perf_counter()
        bench.acc.update(i, x)
        spent[kinds[i]] += time.perf_counter() - t

    bare = []
    for _ in range(rounds):
        for i in range(len(bench.batches)):
            bare.append(bench.bare(i)[0])
            bench.measured(i, bindings, sink)
    passes = rounds * len(bench.batches)
    return {k: v / passes for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}, statistics.median(bare)


def _rss_kib(field: str) -> int:
    """VmHWM (peak) or VmRSS (current) of this process in KiB, from /proc/self/status."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux >= 4.0), so that the peak of
    measuring is not hidden by the transient peak of loading the model."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def kernel_name(device: str) -> str:
    """Which statistics kernel ran (stats/kernels.py), for the record."""
    try:
        from actscope.stats import kernels, native
    except ImportError:  # a version without fused kernels
        return "per-statistic torch ops"
    k = kernels.choice()
    if k in ("auto", "native") and device == "cpu" and native.library() is not None:
        return "native (C, CPU)"
    return "eager torch" if k == "eager" else "torch.compile"


def memory_child(args) -> None:
    """One whole measure() over `--mem-child` samples; prints peak RSS (KiB) as JSON."""
    from actscope.config import MeasureConfig
    from actscope.models import load_model
    from actscope.runner import measure

    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    gc.collect()
    base = _rss_kib("VmRSS")
    reset = _reset_peak()
    corpus = real_corpus()
    seqs = windows(corpus, loaded.tokenizer, args.mem_child, args.mem_seq)
    # One sample per window, as text: measure() tokenizes it again (same tokens up to the
    # tokenizer's round trip), truncated to --mem-seq tokens.
    texts = [loaded.tokenizer.decode(s.ids, skip_special_tokens=True) for s in seqs]
    corpus = Corpus(
        f"bench-{len(texts)}", tuple(Sample(f"w{i}", "bench", "bench", t) for i, t in enumerate(texts))
    )
    with tempfile.TemporaryDirectory() as d:
        cfg = MeasureConfig(
            model=args.model,
            out=os.path.join(d, "run"),
            max_length=args.mem_seq,
            token_budget=args.mem_seq * args.batch,
            max_batch=args.batch,
            sites=args.mem_sites,
            progress=False,
            checkpoint_every=10_000,
        )
        t = time.perf_counter()
        out = measure(cfg, loaded=loaded, corpus=corpus)
        elapsed = time.perf_counter() - t
        tokens = json.loads((out / "run.json").read_text())["tokens"]["measured"]
    peak = _rss_kib("VmHWM")  # since the reset: the model, the corpus and measuring; else since start
    out = {"samples": len(texts), "tokens": tokens, "peak_kib": peak, "after_load_kib": base, "reset": reset}
    print(json.dumps({**out, "s": elapsed}))


def memory(args, n: int) -> dict:
    cmd = [sys.executable, __file__, "--mem-child", str(n), "--mem-seq", str(args.mem_seq)]
    cmd += ["--model", args.model, "--dtype", args.dtype, "--device", args.device, "--batch", str(args.batch)]
    cmd += ["--mem-sites", args.mem_sites]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seq", type=int, default=256, help="tokens per sample")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5, help="bare/measured pairs per site set")
    p.add_argument(
        "--sets", default="paper,all,qkv,kv,logits", help="site sets to time: paper, all, qkv, kv, logits"
    )
    p.add_argument(
        "--cost-rounds", type=int, default=2, help="rounds of the per-kind time decomposition (0: skip it)"
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--mem-samples", default="64,512")
    p.add_argument("--mem-seq", type=int, default=64, help="tokens per sample in the memory runs")
    p.add_argument("--mem-sites", default="all")
    p.add_argument("--mem-child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mem_child:
        return memory_child(args)

    from actscope.models import load_model

    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    corpus = real_corpus()
    seqs = windows(corpus, loaded.tokenizer, args.samples, args.seq)
    batches = make_batches(seqs, token_budget=args.batch * args.seq, max_batch=args.batch)
    wanted = args.sets.split(",")
    benches = {
        label: Bench(loaded, seqs, batches, spec, DEFAULT_STATISTICS)
        for label, key, spec in SITE_SETS
        if key in wanted
    }
    results, increments = time_ratios(benches, args.rounds)
    for label, r in results.items():
        print(f"overhead ratio ({label}): {r['ratio']:.2f}", flush=True)

    threads = torch.get_num_threads()
    print(
        f"model {args.model} {args.dtype} on {args.device} ({threads} threads), "
        f"{args.samples} samples x {args.seq} tokens in batches of {args.batch}, {args.rounds} rounds, "
        f"statistics: {', '.join(DEFAULT_STATISTICS)}, kernel: {kernel_name(args.device)}; "
        f"each batch bare and with every site set back to back"
    )
    for label, r in results.items():
        rounds = " ".join(f"{x:.3f}" for x in r["rounds"])
        print(
            f"  {label}: {r['sites']} sites ({r['hooked']} hooked, rest aliases), "
            f"bare {r['bare_tok_s']:,.0f} tok/s, measured {r['measured_tok_s']:,.0f} tok/s, "
            f"median ratio of {r['pairs']} batch pairs {r['ratio']:.3f} (CPU time {r['cpu_ratio']:.3f}; "
            f"fastest of the rounds per batch {r['min_ratio']:.3f}; per round: {rounds})"
        )
    for label, inc in increments.items():
        if label.startswith("paper +"):
            print(
                f"  {label} vs paper sites: {100 * (inc['median'] - 1):+.1f}% (median of measured / "
                f"paper-measured over the same {results[label]['pairs']} batch passes; quartiles "
                f"{100 * (inc['q1'] - 1):+.1f}% .. {100 * (inc['q3'] - 1):+.1f}%)"
            )
    if args.cost_rounds:
        every = Bench(loaded, seqs, batches, "all", DEFAULT_STATISTICS)
        costs, bare = kind_costs(every, args.cost_rounds)
        parts = ", ".join(f"{k} {1e3 * v:.1f} ms ({100 * v / bare:.2f}%)" for k, v in costs.items())
        print(
            f"time in each kind's taps and statistics per batch, of a bare forward of {1e3 * bare:.0f} ms "
            f"(every site, {args.cost_rounds} rounds): {parts}; total {100 * sum(costs.values()) / bare:.1f}%"
        )
    real = make_batches(tokenize_corpus(corpus, loaded.tokenizer, TokenizeConfig()))
    print(
        f"padding fraction: benchmark batches {padding_fraction(batches):.3f}; "
        f"corpus '{corpus.name}' ({len(corpus.samples)} samples) at the default batching "
        f"(max length 2048, budget 8192 tokens, max batch 32): {padding_fraction(real):.3f} in {len(real)} batches"
    )
    if args.no_memory:
        return
    mem = [memory(args, int(n)) for n in args.mem_samples.split(",")]
    base = mem[0]["peak_kib"]
    for m in mem:
        print(
            f"peak RSS, whole measure() of {m['samples']} samples x {args.mem_seq} tokens ({m['tokens']} tokens, "
            f"sites={args.mem_sites}): {m['peak_kib'] / 1024:,.0f} MiB "
            f"({(m['peak_kib'] / base - 1) * 100:+.1f}% vs first; {m['after_load_kib'] / 1024:,.0f} MiB after "
            f"model load; peak {'since the load' if m['reset'] else 'of the whole process'}; {m['s']:.0f} s)"
        )


if __name__ == "__main__":
    main()
