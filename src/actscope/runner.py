"""measure(): load -> tokenize -> resolve sites -> probe -> attach hooks -> stream -> write.

Under torchrun each rank measures batches[rank::world] and rank 0 writes (distributed.py);
with --shard i/N the process measures batches[i::N] and `actscope merge` joins shards.

The loop does per batch: build the token provenance on the host, move it to the
device, run the forward pass (hooks feed the accumulator), check every hook fired
once, and checkpoint every few batches so an interrupted run can be resumed.
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from . import distributed
from .adapters import discover_sites
from .config import MeasureConfig
from .corpus import Batch, TokenizeConfig, load_corpus, make_batches, tokenize_corpus
from .corpus.batching import padding_fraction
from .errors import Interrupted, RunDirError
from .hooks import HookSet
from .manifest import build_manifest
from .probe import probe_sites
from .results import STATE, load_state, prepare_run_dir, save_state, write_manifest
from .sites import select_sites
from .stats.accumulator import Accumulator
from .stats.base import BatchContext
from .summary import write_results

log = logging.getLogger(__name__)


def batch_context(batch: Batch, device) -> BatchContext:
    """Provenance of the real tokens of a batch, built on the host (no device sync)."""
    B, S = batch.input_ids.shape
    sample = batch.sample[:, None].expand(B, S).reshape(-1)
    pos = (batch.offset[:, None] + torch.arange(S)[None, :]).reshape(-1)
    token = batch.input_ids.reshape(-1)
    rows = None
    if batch.padded:
        rows = batch.attention_mask.reshape(-1).nonzero().squeeze(1)
        sample, pos, token = sample[rows], pos[rows], token[rows]
        rows = rows.to(device, non_blocking=True)
    return BatchContext(
        batch=B,
        seq=S,
        rows=rows,
        sample=sample.to(device, non_blocking=True),
        pos=pos.to(device, non_blocking=True),
        token=token.to(device, non_blocking=True),
    )


def forward_fn(model):
    """The forward call used for measuring; skips the LM head's logits where the
    model allows it (logits_to_keep=1), since no site needs them."""
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def run(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)

    return run


def probe_inputs(seqs, device, pad_id: int, width: int = 7):
    """Two short rows of real tokens with an odd length, so that no other layout
    can be mistaken for (batch, seq); a short sample is padded."""
    rows = [list(s.ids[:width]) for s in seqs[:2]]
    rows += rows[:1] * (2 - len(rows))
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)
    return ids, mask


def measure(cfg: MeasureConfig, *, loaded=None, corpus=None) -> Path:
    """Measure and write the run directory; returns its path (on every rank)."""
    t0 = time.time()
    rank = distributed.current()
    out_path = Path(cfg.out or default_out(cfg))
    if rank.main:
        prepare_run_dir(out_path, overwrite=cfg.overwrite, resume=cfg.resume, dry=True)
    corpus = corpus if corpus is not None else load_corpus(cfg.corpus)
    if cfg.limit is not None:
        corpus = replace(corpus, samples=corpus.samples[: cfg.limit])
    loaded = loaded if loaded is not None else _load(cfg, rank)
    model, tok = loaded.model, loaded.tokenizer
    device = input_device(model)
    distributed.init(rank, device)
    t_load = time.time()

    tcfg = TokenizeConfig(
        bos=cfg.bos, max_length=cfg.max_length, overflow=cfg.overflow, chat_template=cfg.chat_template
    )
    seqs = tokenize_corpus(corpus, tok, tcfg)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    all_batches = make_batches(seqs, token_budget=cfg.token_budget, max_batch=cfg.max_batch, pad_id=pad_id)
    part, parts = _my_part(cfg, rank)
    batches = all_batches[part::parts]

    plan = discover_sites(model)
    probe = probe_sites(model, select_sites(plan.bindings, cfg.sites), *probe_inputs(seqs, device, pad_id))
    acc = Accumulator(probe.channels, len(corpus), device, cfg.statistics)
    manifest = build_manifest(cfg, loaded, corpus, tcfg, plan, probe, seqs, device)
    manifest["shard"] = list(cfg.shard) if cfg.shard else None
    manifest["world_size"] = rank.world
    ckpt = _Checkpoint(out_path, manifest["fingerprint"], part, parts)
    out = out_path
    if rank.main:
        out = prepare_run_dir(out_path, overwrite=cfg.overwrite, resume=cfg.resume)
    if cfg.resume:
        acc.load_state_dict(ckpt.load())
    if rank.main:
        write_manifest(out, manifest)

    with _StopOnSignal() as stop:
        _stream(model, batches, acc, probe, device, cfg, ckpt, stop, rank, manifest)
    t_measure = time.time()

    distributed.reduce_accumulator(acc)
    if rank.main:
        manifest["timings"] = {"load_s": t_load - t0, "measure_s": t_measure - t_load}
        manifest["tokens"] = {
            "measured": int(acc.sample_tokens.sum()),
            "samples": int((acc.sample_tokens > 0).sum()),
            "padding_fraction": padding_fraction(all_batches),
            "batches": len(batches) * rank.world if rank.world > 1 else len(batches),
        }
        ckpt.save(acc, final=True)
        write_results(out, manifest, acc, corpus, tok)
    distributed.shutdown()
    return out


def _stream(model, batches, acc, probe, device, cfg, ckpt, stop, rank, manifest) -> None:
    """The measuring loop: one forward per batch, hooks feed the accumulator."""
    run = forward_fn(model)
    total = sum(b.n_tokens for b in batches)
    done = sum(b.n_tokens for b in batches[: acc.batches_done])
    show = cfg.progress and rank.main
    with (
        HookSet(model, probe.bindings, acc.update) as hooks,
        torch.inference_mode(),
        _progress(show, total, done) as advance,
    ):
        for bi in range(acc.batches_done, len(batches)):
            batch = batches[bi]
            acc.begin_batch(batch_context(batch, device))
            run(batch.input_ids.to(device), batch.attention_mask.to(device))
            hooks.check_once()
            acc.end_batch()
            advance(batch.n_tokens)
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


def _load(cfg: MeasureConfig, rank: distributed.Rank):
    from .models import load_model

    device = cfg.device
    if device is None and rank.world > 1 and torch.cuda.is_available():
        device = f"cuda:{rank.local_rank}"
    return load_model(
        cfg.model,
        dtype=cfg.dtype,
        device=device,
        cache_dir=cfg.cache_dir,
        trust_remote_code=cfg.trust_remote_code,
        allow_pickle=cfg.allow_pickle,
        device_map=cfg.device_map,
        max_memory=cfg.max_memory,
    )


def _my_part(cfg: MeasureConfig, rank: distributed.Rank) -> tuple[int, int]:
    """This process takes batches[part::parts]: its shard, and within it its rank's share."""
    i, n = cfg.shard or (0, 1)
    return i + n * rank.rank, n * rank.world


def input_device(model) -> torch.device:
    """Where input ids go: the embedding's execution device (device_map aware)."""
    dmap = getattr(model, "hf_device_map", None)
    if dmap:
        for d in dmap.values():
            if d not in ("disk", "meta"):
                return torch.device(f"cuda:{d}" if isinstance(d, int) else d)
        return torch.device(
            "cuda:0" if torch.cuda.is_available() else "cpu"
        )  # all on disk: accelerate runs it here
    return next(model.parameters()).device


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


def default_out(cfg: MeasureConfig) -> str:
    name = Path(cfg.model).stem if ("/" in cfg.model or cfg.model.endswith(".gguf")) else cfg.model
    corpus = Path(cfg.corpus).stem
    return str(Path("runs") / f"{name}-{corpus}")


class _progress:
    """Rich progress bar over tokens with tokens/s and ETA (stderr); no-op when disabled."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("measuring"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} tokens"),
            TextColumn("{task.fields[rate]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.p.__enter__()
        task = self.p.add_task("m", total=self.total, completed=self.done, rate="-")
        start, base = time.time(), self.done

        def advance(n: int) -> None:
            self.p.advance(task, n)
            done = self.p.tasks[0].completed - base
            self.p.update(task, rate=f"{done / max(time.time() - start, 1e-9):,.0f}")

        return advance

    def __exit__(self, *exc):
        if self.enabled:
            self.p.__exit__(*exc)
