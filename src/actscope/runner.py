"""measure(): load -> tokenize -> resolve sites -> probe -> stream (engine.py) -> write (rundir/).

Under torchrun each rank measures batches[rank::world] and rank 0 writes (distributed.py);
with --shard i/N the process measures batches[i::N] and `actscope merge` joins shards.

Per batch the engine builds the token provenance, runs the forward pass (hooks
feed the accumulator) and checks every hook fired once; this module adds what a
measurement needs around that: checkpoints every few batches and on a signal,
so an interrupted run can be resumed, and the run directory at the end.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import distributed, engine
from .config import MeasureConfig
from .corpus import TokenizeConfig, load_corpus
from .corpus.batching import padding_fraction
from .errors import Interrupted, RunDirError, UserError
from .finish import build_run, complete_run
from .progress import TokenProgress
from .rundir import (
    STATE,
    MeasuredProvenance,
    RunLock,
    load_state,
    measure_manifest,
    prepare_run_dir,
    save_state,
    write_manifest,
)
from .rundir.tables import collect
from .stats import DEFAULT_STATISTICS
from .stats.accumulator import Accumulator

log = logging.getLogger(__name__)


def measure(cfg: MeasureConfig, *, loaded=None, corpus=None) -> Path:
    """Measure and write the run directory; returns its path (on every rank)."""
    t0 = time.time()
    rank = distributed.current()
    out_path = Path(cfg.out or default_out(cfg))
    if rank.main:
        prepare_run_dir(out_path, overwrite=cfg.overwrite, resume=cfg.resume, dry=True)
    corpus = _limited(cfg, corpus if corpus is not None else load_corpus(cfg.corpus))
    loaded = loaded if loaded is not None else _load(cfg, rank)
    distributed.init(rank, engine.input_device(loaded.model))
    t_load = time.time()

    p = _setup(cfg, loaded, corpus, rank)
    acc, manifest = p.acc, p.manifest
    part, parts = _my_part(cfg, rank)
    ckpt = _Checkpoint(out_path, manifest["fingerprint"], part, parts)
    lock = RunLock(out_path) if rank.main else _NoLock()
    with lock:
        out = out_path
        if rank.main:
            out = prepare_run_dir(out_path, overwrite=cfg.overwrite, resume=cfg.resume)
        if cfg.resume:
            acc.load_state_dict(ckpt.load())
        if rank.main:
            write_manifest(out, manifest)

        with _StopOnSignal() as stop:
            _stream(loaded.model, p.batches, acc, p.probe, cfg, ckpt, stop, rank, manifest)
        t_measure = time.time()

        distributed.reduce_accumulator(acc)
        if rank.main:
            _record_totals(p, rank, (t0, t_load, t_measure))
            ckpt.save(acc, final=True)
            complete_run(out, manifest, acc, MeasuredProvenance(corpus, loaded.tokenizer, p.seqs))
    distributed.shutdown()
    return out


def measure_in_memory(cfg: MeasureConfig, loaded, corpus) -> tuple[dict, dict]:
    """(manifest, tables) of a run measured in this process and kept in memory: no run
    directory, no checkpoints, no signal handling (the Python API without `out=`)."""
    t0 = time.time()
    corpus = _limited(cfg, corpus)
    p = _setup(cfg, loaded, corpus, distributed.Rank())
    t_load = time.time()
    with TokenProgress(cfg.progress, sum(b.n_tokens for b in p.batches), 0) as advance:
        engine.stream(
            loaded.model, p.probe.bindings, p.batches, p.acc.update, p.acc.begin_batch, p.acc.end_batch,
            after=lambda bi: advance(p.batches[bi].n_tokens),
        )  # fmt: skip
    _record_totals(p, distributed.Rank(), (t0, t_load, time.time()))
    prov = MeasuredProvenance(corpus, loaded.tokenizer, p.seqs)
    tables = build_run(Path("<memory>"), p.manifest, collect(p.acc), prov)
    return p.manifest, tables


@dataclass
class _Setup:
    """What a measurement streams and where it folds it: batches, sites, accumulator, manifest."""

    seqs: list
    all_batches: list
    batches: list
    probe: object
    acc: Accumulator
    manifest: dict


def _setup(cfg: MeasureConfig, loaded, corpus, rank: distributed.Rank) -> _Setup:
    model, tok = loaded.model, loaded.tokenizer
    device = engine.input_device(model)
    tcfg = TokenizeConfig(
        bos=cfg.bos, max_length=cfg.max_length, overflow=cfg.overflow, chat_template=cfg.chat_template
    )
    seqs, all_batches = engine.tokenized_batches(
        corpus, tok, tcfg, token_budget=cfg.token_budget, max_batch=cfg.max_batch
    )
    part, parts = _my_part(cfg, rank)
    if not all_batches[part::parts]:
        where = f"shard {cfg.shard[0]}/{cfg.shard[1]}" if cfg.shard else f"rank {rank.rank}"
        raise UserError(
            f"{where} gets no batch: the corpus makes {len(all_batches)} batch(es) for {parts} part(s)",
            "use fewer shards or processes, or a larger corpus",
        )
    plan, probe = engine.resolve_sites(model, cfg.sites, seqs, engine.pad_id(tok))
    acc = Accumulator(probe.channels, len(corpus), device, DEFAULT_STATISTICS)
    manifest = measure_manifest(cfg, loaded, corpus, tcfg, plan, probe, seqs, device)
    manifest["shard"] = list(cfg.shard) if cfg.shard else None
    manifest["world_size"] = rank.world
    return _Setup(seqs, all_batches, all_batches[part::parts], probe, acc, manifest)


def _record_totals(p: _Setup, rank: distributed.Rank, times: tuple[float, float, float]) -> None:
    t0, t_load, t_measure = times
    acc = p.acc
    p.manifest["timings"] = {"load_s": t_load - t0, "measure_s": t_measure - t_load}
    p.manifest["tokens"] = {
        "measured": int(acc.sample_tokens.sum()),
        "samples": int((acc.sample_tokens > 0).sum()),
        "padding_fraction": padding_fraction(p.all_batches),
        "batches": len(p.batches) * rank.world if rank.world > 1 else len(p.batches),
    }


def _limited(cfg: MeasureConfig, corpus):
    return replace(corpus, samples=corpus.samples[: cfg.limit]) if cfg.limit is not None else corpus


def _stream(model, batches, acc, probe, cfg, ckpt, stop, rank, manifest) -> None:
    """The measuring loop (engine.stream), with progress, checkpoints and stopping on a signal."""
    total = sum(b.n_tokens for b in batches)
    done = sum(b.n_tokens for b in batches[: acc.batches_done])
    with TokenProgress(cfg.progress and rank.main, total, done) as advance:

        def after(bi: int) -> None:
            advance(batches[bi].n_tokens)
            last = acc.batches_done == len(batches)
            if stop.signum is not None and not last:
                ckpt.save(acc)
                if rank.main:
                    write_manifest(ckpt.out, {**manifest, "status": "interrupted"})
                raise Interrupted(
                    f"stopped by signal {stop.signum} after batch {acc.batches_done} of {len(batches)}; "
                    f"state saved in {ckpt.out}; continue with the same command and --resume"
                )
            if acc.batches_done % cfg.checkpoint_every == 0 and not last:
                ckpt.save(acc)

        engine.stream(
            model, probe.bindings, batches, acc.update, acc.begin_batch, acc.end_batch,
            start=acc.batches_done, after=after,
        )  # fmt: skip


def _load(cfg: MeasureConfig, rank: distributed.Rank):
    device = cfg.device
    if device is None and rank.world > 1 and torch.cuda.is_available():
        device = f"cuda:{rank.local_rank}"
    return engine.load(cfg.model, cfg, device=device)


def _my_part(cfg: MeasureConfig, rank: distributed.Rank) -> tuple[int, int]:
    """This process takes batches[part::parts]: its shard, and within it its rank's share."""
    i, n = cfg.shard or (0, 1)
    return i + n * rank.rank, n * rank.world


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class _Checkpoint:
    """Atomic accumulator checkpoints, one file per (shard, rank) part."""

    def __init__(self, out: Path, fingerprint: str, part: int, parts: int):
        self.out, self.fingerprint, self.part, self.parts = out, fingerprint, part, parts

    @property
    def name(self) -> str:
        return (
            STATE
            if self.parts == 1
            else STATE.replace(".safetensors", f".part{self.part}of{self.parts}.safetensors")
        )

    def meta(self) -> dict:
        return {"fingerprint": self.fingerprint, "part": self.part, "parts": self.parts}

    def save(self, acc, final: bool = False) -> None:
        save_state(
            self.out, acc.state_dict(), {**self.meta(), "final": final}, name=STATE if final else self.name
        )

    def load(self) -> dict:
        state, meta = load_state(self.out, name=self.name)
        if {k: meta.get(k) for k in ("fingerprint", "part", "parts")} != self.meta():
            raise RunDirError(
                f"checkpoint in {self.out} belongs to another model, corpus, settings or shard",
                "resume with the same arguments, or start over with --overwrite",
            )
        return state


class _StopOnSignal:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the end of the batch and stops."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def default_out(cfg) -> str:
    """runs/MODEL-CORPUS for a config with `model` and `corpus`."""
    name = Path(cfg.model).stem if ("/" in cfg.model or cfg.model.endswith(".gguf")) else cfg.model
    corpus = Path(cfg.corpus).stem
    return str(Path("runs") / f"{name}-{corpus}")
