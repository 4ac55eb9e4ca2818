"""actscope.trace(): record every forward a block runs, generate's decode steps included.

    with actscope.trace(model, tokenizer=tok, sites="paper") as t:
        model.generate(**tok(prompts, return_tensors="pt", padding=True), max_new_tokens=20)
    run = t.run()

Provenance: a forward without a KV cache starts new samples, one per batch row; a
forward that continues a cache (generate's decode steps) adds its new tokens to the
rows it continues. A token's position is the number of real tokens before it in its
row, so that with left padding too each prompt token and each new token is counted
exactly once (the last generated token is never fed to the model, so it is not
measured). Padding (attention_mask == 0) never enters the statistics.

Each forward costs one copy of its input ids and mask to the host (provenance);
the statistics themselves stay on the model's device.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .. import engine
from ..config import MeasureConfig
from ..corpus import Corpus, Sample, TokenizeConfig
from ..corpus.tokenize import Sequence
from ..errors import UserError
from ..rundir import MeasuredProvenance, measure_manifest
from ..rundir.tables import Results, collect
from ..stats import DEFAULT_STATISTICS
from ..stats.accumulator import Accumulator
from ..stats.base import BatchContext
from .measure import model_info, preserved
from .run import MEMORY, Run

PROBE_TEXT = "The quick brown fox jumps over the lazy dog"


class Trace:
    """Hooks on `model` while the `with` block runs; `run()` returns what they recorded."""

    def __init__(self, model: nn.Module, tokenizer=None, sites: str | None = None, max_samples: int = 4096):
        if not isinstance(model, nn.Module):
            raise UserError(
                f"trace needs an nn.Module, not a {type(model).__name__}", "pass the model itself"
            )
        if max_samples < 1:
            raise UserError(f"max_samples={max_samples} must be at least 1", "give a positive number")
        self.model, self.tokenizer, self.sites, self.max_samples = model, tokenizer, sites, max_samples
        self._stack: contextlib.ExitStack | None = None
        self._ids: list[list[int]] = []  # sample -> its measured token ids, in position order
        self._group: tuple[int, int] | None = None  # (first sample, rows) of the forward being continued
        self.forwards = 0

    def __enter__(self) -> Trace:
        with preserved(self.model):  # the probe forward must not touch dropout RNG or modes
            self.plan, self.probe = engine.resolve_sites(self.model, self.sites, [self._probe_seq()])
        self.acc = Accumulator(
            self.probe.channels, self.max_samples, engine.input_device(self.model), DEFAULT_STATISTICS
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                engine.observe(self.model, self.probe.bindings, self.acc.update, self._begin, self._end)
            )
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def _probe_seq(self) -> Sequence:
        if self.tokenizer is not None:
            ids = self.tokenizer(PROBE_TEXT)["input_ids"]
        else:  # any in-vocabulary ids will do for finding sites and shapes
            ids = list(range(1, 8))
        return Sequence(0, 0, tuple(ids[:7]))

    # ---- per forward --------------------------------------------------------------
    def _begin(self, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if not isinstance(ids, torch.Tensor):
            raise UserError(
                "actscope.trace records forwards given input_ids",
                "call the model with input_ids= (inputs_embeds alone carry no token ids)",
            )
        B, S = ids.shape
        past = _past_length(kwargs.get("past_key_values"))
        keep, pos = _real_tokens(ids, kwargs.get("attention_mask"), past)
        first = self._rows(B, continues=past > 0)
        sample = (first + torch.arange(B))[:, None].expand(B, S)
        flat = keep.reshape(-1)
        rows = flat.nonzero().squeeze(1)
        token = ids.detach().cpu().reshape(-1)[rows]
        sample, pos = sample.reshape(-1)[rows], pos.reshape(-1)[rows]
        for s, t in zip(sample.tolist(), token.tolist(), strict=True):  # host lists: provenance only
            self._ids[s].append(t)
        device = engine.input_device(self.model)
        self.acc.begin_batch(
            BatchContext(
                batch=B,
                seq=S,
                rows=None if bool(flat.all()) else rows.to(device),
                sample=sample.to(device),
                pos=pos.to(device),
                token=token.to(device),
            )
        )

    def _rows(self, B: int, continues: bool) -> int:
        """The first sample of this forward's rows: the continued rows', or B new samples."""
        if continues and self._group is not None and self._group[1] == B:
            return self._group[0]
        first = len(self._ids)
        if first + B > self.max_samples:
            raise UserError(
                f"actscope.trace recorded more than max_samples={self.max_samples} sequences",
                "pass a larger max_samples= to actscope.trace",
            )
        self._ids += [[] for _ in range(B)]
        self._group = (first, B)
        return first

    def _end(self) -> None:
        self.acc.end_batch()
        self.forwards += 1

    # ---- the result ------------------------------------------------------------------
    def run(self) -> Run:
        """The Run of everything recorded so far (kept in memory; `.save(out)` writes it)."""
        from ..finish import build_run

        if not self._ids:
            raise UserError("actscope.trace recorded no forward", "call the model inside the `with` block")
        from ..models import LoadedModel, tokenizer_info

        n = len(self._ids)
        tok = self.tokenizer if self.tokenizer is not None else _IdTokenizer()
        texts = [tok.decode(ids) for ids in self._ids]
        corpus = Corpus(
            "trace", tuple(Sample(f"trace-{i}", "trace", "trace", t) for i, t in enumerate(texts))
        )
        seqs = [Sequence(i, 0, tuple(ids)) for i, ids in enumerate(self._ids)]
        info = model_info(self.model) | (tokenizer_info(tok) if self.tokenizer is not None else {})
        loaded = LoadedModel(self.model, tok, info)
        cfg = MeasureConfig(model="<in-memory>", corpus="trace", sites=self.sites, progress=False)
        device = engine.input_device(self.model)
        manifest = measure_manifest(
            cfg, loaded, corpus, TokenizeConfig(), self.plan, self.probe, seqs, device
        )
        results = _first_samples(collect(self.acc), n)
        manifest["trace"] = {"forwards": self.forwards, "samples": n}
        manifest["tokens"] = {
            "measured": int(results.sample_tokens.sum()),
            "samples": int((results.sample_tokens > 0).sum()),
            "batches": self.forwards,
        }
        tables = build_run(MEMORY, manifest, results, MeasuredProvenance(corpus, tok, seqs))
        return Run.in_memory(manifest, tables)


def trace(model: nn.Module, tokenizer=None, sites: str | None = None, *, max_samples: int = 4096) -> Trace:
    """Record every forward of `model` inside a `with` block (see the module docstring).

    >>> with actscope.trace(model, tokenizer=tok, sites="residual") as t:
    ...     model.generate(**inputs, max_new_tokens=8)
    >>> t.run().summary["M"]
    """
    return Trace(model, tokenizer, sites, max_samples)


def _past_length(past) -> int:
    """Tokens already in the KV cache before this forward."""
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    return int(past[0][0].shape[-2])  # legacy tuple of (key, value) per layer


def _real_tokens(ids: torch.Tensor, mask, past: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) bool real-token mask and (B, S) int64 positions of this forward's tokens.

    The attention mask of a decode step covers the cache and the new tokens; its last S
    columns are this forward's tokens, and the count of real tokens before one is its position.
    """
    B, S = ids.shape
    if mask is None:
        return torch.ones(B, S, dtype=torch.bool), (past + torch.arange(S)).expand(B, S).clone()
    full = mask.detach().cpu().to(torch.int64)
    if full.dim() != 2 or full.shape[0] != B or full.shape[1] < S:
        raise UserError(
            f"attention_mask of shape {tuple(full.shape)} does not cover input_ids {tuple(ids.shape)}",
            "pass a (batch, past + new tokens) 0/1 attention mask",
        )
    return full[:, -S:] > 0, (full.cumsum(1) - 1)[:, -S:]


def _first_samples(results: Results, n: int) -> Results:
    """Results of the first n samples of an accumulator sized for max_samples."""
    for r in results.sites.values():
        if "samples" in r.tables:
            r.tables["samples"] = np.asarray(r.tables["samples"])[:n]
    results.sample_tokens = results.sample_tokens[:n]
    return results


class _IdTokenizer:
    """Token text without a tokenizer: the ids themselves."""

    def decode(self, ids) -> str:
        return " ".join(f"<{i}>" for i in ids)
