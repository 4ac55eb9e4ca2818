"""measure(): load -> tokenize -> resolve sites -> probe -> attach hooks -> stream -> write.

The loop does per batch: build the token provenance on the host, move it to the
device, run the forward pass (hooks feed the accumulator), check every hook fired
once, and checkpoint every few batches so an interrupted run can be resumed.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path

import torch

from . import __version__
from .config import MeasureConfig
from .corpus import Batch, TokenizeConfig, load_corpus, make_batches, tokenize_corpus
from .corpus.batching import padding_fraction
from .errors import RunDirError
from .hooks import HookSet
from .probe import probe_sites
from .results import load_state, prepare_run_dir, save_state, write_manifest
from .sites import select_sites
from .stats.accumulator import Accumulator
from .stats.base import BatchContext

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
    from .models import load_model

    t0 = time.time()
    out_path = cfg.out or default_out(cfg)
    prepare_run_dir(out_path, overwrite=cfg.overwrite, resume=cfg.resume, dry=True)
    corpus = corpus if corpus is not None else load_corpus(cfg.corpus)
    if cfg.limit is not None:
        corpus = type(corpus)(corpus.name, corpus.samples[: cfg.limit], corpus.manifest)
    if loaded is None:
        loaded = load_model(
            cfg.model,
            dtype=cfg.dtype,
            device=cfg.device,
            cache_dir=cfg.cache_dir,
            trust_remote_code=cfg.trust_remote_code,
            allow_pickle=cfg.allow_pickle,
            device_map=cfg.device_map,
            max_memory=cfg.max_memory,
        )
    model, tok = loaded.model, loaded.tokenizer
    out = prepare_run_dir(out_path, overwrite=cfg.overwrite, resume=cfg.resume)
    device = next(model.parameters()).device
    t_load = time.time()

    tcfg = TokenizeConfig(bos=cfg.bos, max_length=cfg.max_length, overflow=cfg.overflow)
    seqs = tokenize_corpus(corpus, tok, tcfg)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    batches = make_batches(seqs, token_budget=cfg.token_budget, max_batch=cfg.max_batch, pad_id=pad_id)
    if cfg.shard is not None:
        i, n = cfg.shard
        batches = batches[i::n]

    from .adapters import discover_sites

    plan = discover_sites(model)
    chosen = select_sites(plan.bindings, cfg.sites)
    probe = probe_sites(model, chosen, *probe_inputs(seqs, device, pad_id))
    acc = Accumulator(probe.channels, len(corpus), device, cfg.statistics)

    manifest = _manifest(cfg, loaded, corpus, tcfg, plan, probe, batches, seqs)
    if cfg.resume:
        state, meta = load_state(out)
        if meta.get("fingerprint") != manifest["fingerprint"]:
            raise RunDirError(
                f"checkpoint in {out} belongs to another model, corpus or settings",
                "resume with the same arguments, or start over with --overwrite",
            )
        acc.load_state_dict(state)
    manifest["status"] = "running"
    write_manifest(out, manifest)

    run = forward_fn(model)
    total_tokens = sum(b.n_tokens for b in batches)
    done_tokens = sum(b.n_tokens for b in batches[: acc.batches_done])
    with HookSet(model, probe.bindings, acc.update) as hooks, torch.inference_mode(), _progress(
        cfg.progress, total_tokens, done_tokens
    ) as advance:
        for bi in range(acc.batches_done, len(batches)):
            batch = batches[bi]
            acc.begin_batch(batch_context(batch, device))
            run(batch.input_ids.to(device), batch.attention_mask.to(device))
            hooks.check_once()
            acc.end_batch()
            advance(batch.n_tokens)
            if acc.batches_done % cfg.checkpoint_every == 0 and acc.batches_done < len(batches):
                save_state(out, acc.state_dict(), {"fingerprint": manifest["fingerprint"]})
    t_measure = time.time()

    from .summary import write_results

    manifest["timings"] = {"load_s": t_load - t0, "measure_s": t_measure - t_load}
    manifest["tokens"] = {
        "measured": int(acc.sample_tokens.sum()),
        "samples": int((acc.sample_tokens > 0).sum()),
        "padding_fraction": padding_fraction(batches),
        "batches": len(batches),
    }
    save_state(out, acc.state_dict(), {"fingerprint": manifest["fingerprint"]})
    write_results(out, manifest, acc, probe, corpus, tok)
    return out


def default_out(cfg: MeasureConfig) -> str:
    name = Path(cfg.model).stem if ("/" in cfg.model or cfg.model.endswith(".gguf")) else cfg.model
    corpus = Path(cfg.corpus).stem
    return str(Path("runs") / f"{name}-{corpus}")


def _manifest(cfg, loaded, corpus, tcfg, plan, probe, batches, seqs) -> dict:
    import hashlib
    import json
    import platform

    import transformers

    sites = [
        {
            "name": b.site.name,
            "kind": b.site.kind,
            "layer": b.site.layer,
            "module": b.module_path,
            "point": b.site.point,
            "note": b.note,
            "alias_of": probe.aliases.get(name),
            "channels": probe.channels.get(probe.aliases.get(name, name)),
        }
        for name, b in probe.usable.items()
    ]
    settings = {
        "dtype": str(next(loaded.model.parameters()).dtype).replace("torch.", ""),
        "bos": tcfg.bos,
        "max_length": tcfg.max_length,
        "overflow": tcfg.overflow,
        "token_budget": cfg.token_budget,
        "max_batch": cfg.max_batch,
        "statistics": list(cfg.statistics),
        "sites": cfg.sites,
        "shard": list(cfg.shard) if cfg.shard else None,
        "limit": cfg.limit,
    }
    fingerprint = hashlib.sha256(
        json.dumps([loaded.info.get("sha256"), corpus.hash, settings, list(probe.channels)], sort_keys=True).encode()
    ).hexdigest()
    return {
        "schema_version": 1,
        "actscope_version": __version__,
        "status": "running",
        "fingerprint": fingerprint,
        "model": loaded.info,
        "corpus": {"name": corpus.name, "hash": corpus.hash, "samples": len(corpus), **corpus.manifest},
        "settings": settings,
        "architecture": {
            "model_type": plan.model_type,
            "adapter": plan.table_name,
            "layers": plan.n_layers,
            "kinds_found": plan.kinds(),
            "kinds_missing": plan.missing_kinds,
            "kinds_absent": plan.absent_kinds,
        },
        "sites": sites,
        "aliases": probe.aliases,
        "dropped_sites": probe.dropped,
        "sequences": len(seqs),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": str(next(loaded.model.parameters()).device),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


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
