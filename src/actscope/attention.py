"""Sites inside attention: queries, keys and values as attention receives them, and the
range of the pre-softmax scores.

In transformers 5 every attention module calls the function registered for its
config's implementation in ALL_ATTENTION_FUNCTIONS ("sdpa", "flash_attention_2" ...),
or its modeling file's `eager_attention_forward` for "eager", as

    fn(module, query, key, value, attention_mask, scaling=..., softcap=..., sliding_window=...)

with query (batch, heads, seq, head_dim) after RoPE and q-norm, and key / value
(batch, kv_heads, kv_seq, head_dim) exactly as cached (after RoPE and k-norm, with
the KV cache concatenated, before repeat_kv). `intercept(handlers)` wraps that one
function for every family at once: a handler sees each call of its module and may
replace query, key and value (KV-cache fake quantization); modules without a
handler pass through untouched. The registry is restored on exit.

The taps below turn a call into a token-aligned site tensor (batch, seq, heads, dim):
the new tokens only (the last `seq` keys when a cache is concatenated).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import torch
from torch import nn

# kind -> site component; the point is "out" for all four (layers.i.attn.key.out ...),
# except the logits, named layers.i.attn.logits (component "attn", point "logits")
COMPONENTS = {"query": "attn.query", "key": "attn.key", "value": "attn.value", "attn_logits": "attn"}
KINDS = tuple(COMPONENTS)

# handler(module, query, key, value, attention_mask, kwargs) -> None or (query, key, value)
Handler = Callable[..., tuple | None]

# scores evaluated at once by logit_range: (batch, heads, query chunk, keys) float32 elements
SCORE_BUDGET = 1 << 22


def implementation(module: nn.Module) -> str | None:
    """The attention implementation a module's config selects ("sdpa", "eager" ...)."""
    cfg = getattr(module, "config", None)
    return getattr(cfg, "_attn_implementation", None) if cfg is not None else None


def _eager_of(module: nn.Module) -> Callable:
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        raise RuntimeError(f"{type(module).__name__} runs eager attention without an eager_attention_forward")
    return fn


def _wrapper(inner: Callable | None, by_id: dict[int, list[Handler]]) -> Callable:
    def attention(module, query, key, value, attention_mask, *args, **kwargs):
        for h in by_id.get(id(module), ()):
            out = h(module, query, key, value, attention_mask, kwargs)
            if out is not None:
                query, key, value = out
        fn = inner if inner is not None else _eager_of(module)
        return fn(module, query, key, value, attention_mask, *args, **kwargs)

    return attention


@contextlib.contextmanager
def intercept(handlers: dict[nn.Module, list[Handler]]) -> Iterator[None]:
    """Route every attention call of the given modules through their handlers, in order."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as registry

    by_id = {id(m): list(hs) for m, hs in handlers.items() if hs}
    impls = sorted({i for m in handlers if (i := implementation(m)) is not None})
    local = registry._local_mapping  # what `registry[k] = f` sets (GeneralInterface)
    saved = {k: local.get(k) for k in impls}
    try:
        for k in impls:
            inner = local.get(k) or registry._global_mapping.get(k)  # None: each module's eager
            registry[k] = _wrapper(inner, by_id)
        yield
    finally:
        for k, prev in saved.items():
            if prev is None:
                local.pop(k, None)
            else:
                local[k] = prev


# The families build query/key/value as transposes of (batch, seq, heads, head_dim) memory, so
# these views are contiguous and the statistics read them in place (Gemma 3 and SmolLM2: no copy);
# under a KV cache the keys and values are the cache's (B, H, S, D) and cost one copy.
def query_tap(module, query, key, value, mask, kwargs) -> torch.Tensor:
    return query.transpose(1, 2)  # (batch, seq, heads, head_dim)


def key_tap(module, query, key, value, mask, kwargs) -> torch.Tensor:
    return key[:, :, key.shape[2] - query.shape[2] :].transpose(1, 2)  # the new tokens' keys


def value_tap(module, query, key, value, mask, kwargs) -> torch.Tensor:
    return value[:, :, value.shape[2] - query.shape[2] :].transpose(1, 2)


def logits_tap(module, query, key, value, mask, kwargs) -> torch.Tensor:
    return logit_range(module, query, key, mask, kwargs)


TAPS = {"query": query_tap, "key": key_tap, "value": value_tap, "attn_logits": logits_tap}


def _allowed(mask, kwargs, module, rows: slice, Sq: int, Sk: int, device):
    """(allowed (b|1, h|1, c, Sk) bool, additive bias or None) for query rows `rows`.

    The mask the model passed is the one attention applies (causal, sliding window and
    padding in it); None means the implementation relies on causality alone (sdpa
    is_causal), or on nothing for a single query."""
    if mask is None:
        causal = kwargs.get("is_causal", getattr(module, "is_causal", True))
        if not causal or Sq == 1:
            return None, None
        q_pos = torch.arange(rows.start, rows.stop, device=device)[:, None] + (Sk - Sq)
        return (torch.arange(Sk, device=device)[None, :] <= q_pos)[None, None], None
    m = mask[..., rows, :Sk]
    if m.dtype == torch.bool:
        return m, None
    return m > torch.finfo(m.dtype).min, m.float()  # eager masks: finfo.min where masked


def logit_range(module, query, key, mask, kwargs, budget: int = SCORE_BUDGET) -> torch.Tensor:
    """(batch, seq, heads, 2): max and min over the attended keys of each query's
    pre-softmax scores, q.k * scaling, soft-capped where the family caps, mask applied.

    Computed in float32 over chunks of queries, so no (seq x seq) block of the whole
    batch is held at once. Attention sinks (gpt-oss) are not scores of a key: excluded.
    """
    B, H, Sq, D = query.shape
    Hk, Sk = key.shape[1], key.shape[2]
    scaling = kwargs.get("scaling")
    scaling = D**-0.5 if scaling is None else scaling
    softcap = kwargs.get("softcap")
    k = key.float().transpose(-1, -2)[:, :, None]  # (B, Hk, 1, D, Sk)
    chunk = max(1, budget // max(1, B * H * Sk))
    out = torch.empty(B, H, Sq, 2, dtype=torch.float32, device=query.device)
    for s0 in range(0, Sq, chunk):
        rows = slice(s0, min(Sq, s0 + chunk))
        q = query[:, :, rows].float().reshape(B, Hk, H // Hk, -1, D)  # query head h uses kv head h // G
        s = (q @ k).reshape(B, H, -1, Sk) * scaling  # (B, H, c, Sk)
        if softcap is not None:
            s = torch.tanh(s / softcap) * softcap
        allowed, bias = _allowed(mask, kwargs, module, rows, Sq, Sk, query.device)
        if bias is not None:
            s = s + bias
        if allowed is None:
            out[:, :, rows, 0], out[:, :, rows, 1] = s.amax(-1), s.amin(-1)
        else:
            out[:, :, rows, 0] = s.masked_fill(~allowed, -torch.inf).amax(-1)
            out[:, :, rows, 1] = s.masked_fill(~allowed, torch.inf).amin(-1)
    return out.transpose(1, 2)  # (B, Sq, H, 2)
