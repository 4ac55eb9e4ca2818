"""The measuring engine: what every pass that streams a corpus through a model shares.

    loaded = load(cfg)                                   # any config with the MODEL_FIELDS
    seqs, batches = tokenized_batches(corpus, tok, tcfg, token_budget=..., max_batch=...)
    plan, probe = resolve_sites(model, "paper", seqs)    # discover, select, probe forward
    stream(model, probe.bindings, batches, sink, begin, end)
    with observe(model, probe.bindings, sink, begin_forward, end): ...   # forwards someone else runs

`measure` (runner.py), the quantization passes (quant/passes.py) and every later
pass use these, so the input device (device_map aware), the probe, the forward
call and the hook loop exist once.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from .corpus import Batch, TokenizeConfig, make_batches, tokenize_corpus
from .hooks import HookSet, Sink
from .probe import ProbeResult, probe_sites
from .sites import select_sites
from .stats.base import BatchContext

# The loading options every config that loads a model carries (MeasureConfig, QuantConfig),
# named as load_model's keyword arguments and as the CLI's flags (dashes for underscores).
MODEL_FIELDS = (
    "dtype",
    "device",
    "cache_dir",
    "trust_remote_code",
    "allow_pickle",
    "device_map",
    "max_memory",
)


def model_kwargs(cfg, **override) -> dict:
    """load_model's keyword arguments from a config (or argparse namespace) holding MODEL_FIELDS."""
    return {f: getattr(cfg, f, None) for f in MODEL_FIELDS} | override


def load(source: str, cfg, **override):
    """Load `source` with the model options of `cfg` (a LoadedModel)."""
    from .models import load_model

    kw = model_kwargs(cfg, **override)
    kw["trust_remote_code"] = bool(kw["trust_remote_code"])
    kw["allow_pickle"] = bool(kw["allow_pickle"])
    # Hub download options: only `measure` has them (MeasureConfig, --download / --revision).
    kw["download"] = bool(override.get("download", getattr(cfg, "download", False)))
    kw["revision"] = override.get("revision", getattr(cfg, "revision", None))
    return load_model(source, **kw)


def input_device(model: nn.Module) -> torch.device:
    """Where input ids go: the embedding's execution device (device_map aware)."""
    dmap = getattr(model, "hf_device_map", None)
    if dmap:
        for d in dmap.values():
            if d not in ("disk", "meta"):
                return torch.device(f"cuda:{d}" if isinstance(d, int) else d)
        # all on disk: accelerate runs it here
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return next(model.parameters()).device


def model_dtype(model: nn.Module) -> str:
    """The dtype the model computes in, as a name ("float32", "bfloat16" ...)."""
    dtype = getattr(model, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        dtype = next(model.parameters()).dtype
    return str(dtype).replace("torch.", "")


def pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def tokenized_batches(
    corpus, tok, tcfg: TokenizeConfig, *, token_budget: int, max_batch: int | None = None
) -> tuple[list, list[Batch]]:
    """(sequences, length-sorted padded batches) of a corpus under the family's tokenization rules."""
    seqs = tokenize_corpus(corpus, tok, tcfg)
    extra = {} if max_batch is None else {"max_batch": max_batch}
    return seqs, make_batches(seqs, token_budget=token_budget, pad_id=pad_id(tok), **extra)


def probe_inputs(seqs, device, pad: int, width: int = 7):
    """Two short rows of real tokens with an odd length, so that no other layout
    can be mistaken for (batch, seq); a short sample is padded."""
    rows = [list(s.ids[:width]) for s in seqs[:2]]
    rows += rows[:1] * (2 - len(rows))
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    return ids, mask


def resolve_sites(model: nn.Module, selector: str | None, seqs, pad: int = 0):
    """(site plan, probe result): every site the adapters find, the selected ones probed once."""
    from .adapters import discover_sites

    plan = discover_sites(model)
    chosen = select_sites(plan.bindings, selector)
    probe: ProbeResult = probe_sites(model, chosen, *probe_inputs(seqs, input_device(model), pad))
    return plan, probe


def probe_shapes(loaded, chosen) -> dict:
    """Site -> shape from a two-row probe forward, (batch, seq, ...) = (2, 7, ...); why skipped."""
    tok = loaded.tokenizer
    ids = tok(["The quick brown fox jumps over the lazy dog"] * 2, add_special_tokens=True)["input_ids"]
    x = torch.tensor([i[:7] for i in ids], device=input_device(loaded.model))
    res = probe_sites(loaded.model, chosen, x, torch.ones_like(x))
    return {**res.shapes, **{k: f"skipped: {v}" for k, v in res.dropped.items()}}


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


def forward_fn(model: nn.Module):
    """The forward call used for measuring; skips the LM head's logits where the
    model allows it (logits_to_keep=1), since no site needs them."""
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def run(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)

    return run


def stream(
    model: nn.Module,
    bindings,
    batches: Sequence[Batch],
    sink: Sink,
    begin: Callable[[BatchContext], None],
    end: Callable[[], None],
    *,
    start: int = 0,
    after: Callable[[int], None] | None = None,
) -> None:
    """Forward batches[start:] with hooks feeding sink(i, x); begin(ctx) / end() around each
    batch, then after(batch index) (progress, checkpoints, stopping on a signal).

    Every hook must fire once per forward (HookSet.check_once); no gradients are kept.
    """
    device = input_device(model)
    run = forward_fn(model)
    with HookSet(model, bindings, sink) as hooks, torch.inference_mode():
        for bi in range(start, len(batches)):
            batch = batches[bi]
            begin(batch_context(batch, device))
            run(batch.input_ids.to(device), batch.attention_mask.to(device))
            hooks.check_once()
            end()
            if after is not None:
                after(bi)


@contextlib.contextmanager
def observe(
    model: nn.Module,
    bindings,
    sink: Sink,
    begin: Callable[[tuple, dict], None],
    end: Callable[[], None],
) -> Iterator[HookSet]:
    """Hooks feeding sink(i, x) on every forward of `model` run inside the block, by whoever
    runs it (a user's call, generate's prefill and decode steps, a training step):
    begin(args, kwargs) sees the forward's inputs before any site fires, end() runs after
    it, once every site fired once. All hooks are removed on exit, exceptions included.
    """
    with HookSet(model, bindings, sink) as hooks:
        fires = hooks.fires

        def pre(module, args, kwargs):
            fires[:] = [0] * len(fires)  # a forward that raised earlier left counts behind
            begin(args, kwargs)

        def post(module, args, kwargs, output):
            hooks.check_once()
            end()

        handles = [
            model.register_forward_pre_hook(pre, with_kwargs=True),
            model.register_forward_hook(post, with_kwargs=True),
        ]
        try:
            yield hooks
        finally:
            for h in handles:
                h.remove()
