"""query / key / value / attn_logits sites: equal to an independent computation, and the
model's logits unchanged with them attached."""

from __future__ import annotations

import sys

import pytest
import torch

from actscope import attention
from actscope.adapters import discover_sites
from actscope.adapters.tiny import TINY, tiny_model
from actscope.hooks import HookSet
from actscope.probe import probe_sites
from actscope.sites import select_sites

# Families whose projections the reference below rebuilds: separate q/k/v_proj (+ q/k norms,
# per head or on the flat projection), fused qkv (phi3, gpt_neox, gpt2). Queries are not
# rebuilt for gated queries (qwen3_next / qwen3_5: q_proj also yields the output gate),
# nor q/k for multimodal RoPE (qwen2_5_vl) and MLA (deepseek_v3): their values are.
NO_ROPE_REF = {"qwen2_5_vl", "deepseek_v3"}
GATED_Q = {"qwen3_next", "qwen3_5", "qwen3_5_moe", "qwen3_5+vl", "qwen3_5_moe+vl"}
FAMILIES = [n for n in TINY if n != "falcon"]  # falcon computes attention inline: no sites


def _inputs(vocab=64, B=2, S=9, pad=3):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, S - pad :] = 0
    return ids, mask


def _capture(model, kinds, ids, mask):
    """site name -> tensor of one forward, plus each attention module's forward inputs."""
    plan = discover_sites(model)
    chosen = select_sites(plan.bindings, ",".join(kinds))
    got, inputs = {}, {}
    names = [b.site.name for b in chosen]
    mods = {b.module_path: model.get_submodule(b.module_path) for b in chosen}
    handles = [
        m.register_forward_pre_hook(
            lambda mod, a, kw, p=p: inputs.__setitem__(p, (a[0] if a else kw["hidden_states"], kw)),
            with_kwargs=True,
        )
        for p, m in mods.items()
    ]
    try:
        with HookSet(model, chosen, lambda i, x: got.__setitem__(names[i], x.clone())) as hs, torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False)
            hs.check_once()
    finally:
        for h in handles:
            h.remove()
    return chosen, got, inputs


def _split_qkv(attn, x):
    """(q, k, v) projections, flat (B, S, heads*dim), from separate or fused projections."""
    if hasattr(attn, "q_proj"):
        return attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    if hasattr(attn, "qkv_proj"):  # phi3
        qkv = attn.qkv_proj(x)
        nq, nk = attn.config.num_attention_heads * attn.head_dim, attn.num_key_value_heads * attn.head_dim
        return qkv[..., :nq], qkv[..., nq : nq + nk], qkv[..., nq + nk :]
    if hasattr(attn, "c_attn"):  # gpt2
        return attn.c_attn(x).split(attn.split_size, dim=2)
    qkv = attn.query_key_value(x).view(*x.shape[:2], -1, 3 * attn.head_size)  # gpt_neox
    return tuple(t.flatten(2) for t in qkv.chunk(3, dim=-1))


def _norm(attn, name, t, D):
    """q_norm / k_norm over the head dim or over the flat projection (olmo2, olmoe)."""
    norm = getattr(attn, name, None)
    if norm is None:
        return t
    B, S = t.shape[:2]
    if norm.weight.numel() == D:
        return norm(t.view(B, S, -1, D)).flatten(2)
    return norm(t)


def _mla_value(attn, x):
    """DeepSeek MLA: the value heads expanded from the latent (what attention receives;
    the cache holds the latent)."""
    latent = attn.kv_a_proj_with_mqa(x)[..., : attn.kv_lora_rank]
    kv = attn.kv_b_proj(attn.kv_a_layernorm(latent)).view(
        *x.shape[:2], -1, attn.qk_nope_head_dim + attn.v_head_dim
    )
    return kv[..., attn.qk_nope_head_dim :]


def reference(family, attn, x, kw):
    """(query, key, value) as (B, S, heads, dim), built from the module's weights."""
    if hasattr(attn, "kv_b_proj"):
        return None, None, _mla_value(attn, x)
    D = getattr(attn, "head_dim", None) or attn.head_size  # gpt_neox: head_size
    q, k, v = _split_qkv(attn, x)
    B, S = x.shape[:2]
    heads = lambda t: t.reshape(B, S, -1, D).transpose(1, 2)  # noqa: E731
    q, k = heads(_norm(attn, "q_norm", q, D)), heads(_norm(attn, "k_norm", k, D))
    if family in GATED_Q:
        q = None
    pos = kw.get("position_embeddings")
    if pos is not None and q is not None:
        q, k = sys.modules[type(attn).__module__].apply_rotary_pos_emb(q, k, *pos)
    elif pos is not None:  # the key alone through the family's rotary function
        _, k = sys.modules[type(attn).__module__].apply_rotary_pos_emb(k, k, *pos)
    t = lambda a: None if a is None else a.transpose(1, 2)  # noqa: E731
    return t(q), t(k), heads(v).transpose(1, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_query_key_value_equal_an_independent_computation(family):
    model = tiny_model(family)
    ids, mask = _inputs()
    chosen, got, inputs = _capture(model, ["query", "key", "value"], ids, mask)
    assert {b.site.kind for b in chosen} == {"query", "key", "value"}
    checked = 0
    for b in chosen:
        attn = model.get_submodule(b.module_path)
        x, kw = inputs[b.module_path]
        want = dict(zip(("query", "key", "value"), reference(family, attn, x, kw)))[b.site.kind]
        if b.site.kind != "value" and (family in NO_ROPE_REF or want is None):
            continue
        with torch.no_grad():
            assert torch.equal(got[b.site.name], want), b.site.name
        checked += 1
    per_layer = 1 if family in NO_ROPE_REF else 2 if family in GATED_Q else 3
    assert checked == len(chosen) // 3 * per_layer  # on every attention layer


def brute_force_range(q, k, allowed, scaling, softcap=None):
    """(B, S, H, 2) max and min of the full (S x S) score matrix, repeat_kv style."""
    G = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(G, dim=1)
    s = (q.float() @ k.float().transpose(-1, -2)) * scaling
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    mx = s.masked_fill(~allowed, -torch.inf).amax(-1)
    mn = s.masked_fill(~allowed, torch.inf).amin(-1)
    return torch.stack([mx, mn], -1).transpose(1, 2)


def _own_mask(mask, S, window=None):
    """causal (+ sliding window) and key padding, built here, not by the model."""
    i, j = torch.arange(S)[:, None], torch.arange(S)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= i - j < window
    return (allowed[None] & mask.bool()[:, None, :])[:, None]  # (B, 1, S, S)


@pytest.mark.parametrize("family", ["gemma3_text", "gemma2", "llama"])
def test_attn_logits_equal_a_brute_force_computation(family):
    """Sliding windows (Gemma 3: window 4 < 9 tokens), soft-capping (Gemma 2: eager, float mask)."""
    model = tiny_model(family)
    ids, mask = _inputs()
    chosen, got, _ = _capture(model, ["query", "key", "attn_logits"], ids, mask)
    cfg = model.config
    real = mask.bool()
    for b in (b for b in chosen if b.site.kind == "attn_logits"):
        attn = model.get_submodule(b.module_path)
        pre = b.site.name.removesuffix("logits")
        q, k = got[pre + "query.out"].transpose(1, 2), got[pre + "key.out"].transpose(1, 2)
        window = getattr(attn, "sliding_window", None)
        allowed = _own_mask(mask, ids.shape[1], window)
        want = brute_force_range(q, k, allowed, attn.scaling, getattr(cfg, "attn_logit_softcapping", None))
        torch.testing.assert_close(got[b.site.name][real], want[real], rtol=1e-6, atol=1e-6)
    if family == "gemma3_text":  # the window matters here: without it the ranges differ
        b = next(
            b
            for b in chosen
            if b.site.kind == "attn_logits" and model.get_submodule(b.module_path).sliding_window
        )
        pre = b.site.name.removesuffix("logits")
        q, k = got[pre + "query.out"].transpose(1, 2), got[pre + "key.out"].transpose(1, 2)
        full = brute_force_range(
            q, k, _own_mask(mask, ids.shape[1]), model.get_submodule(b.module_path).scaling
        )
        assert not torch.equal(full[real], got[b.site.name][real])


def test_logit_range_chunks_agree_with_one_block():
    """The query chunks (a budget of one row) give what one block gives."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8)
    mod = torch.nn.Module()
    one = attention.logit_range(mod, q, k, None, {"scaling": 0.3})
    rows = attention.logit_range(mod, q, k, None, {"scaling": 0.3}, budget=1)
    assert torch.equal(one, rows)
    allowed = _own_mask(torch.ones(2, 6, dtype=torch.long), 6)
    torch.testing.assert_close(one, brute_force_range(q, k, allowed, 0.3), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gemma", "smollm"])
def test_real_models_sites_exact_and_logits_unchanged(name, request):
    loaded = request.getfixturevalue(name)
    model = loaded.model
    ids, mask = _inputs(vocab=1000, S=11)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    chosen, got, inputs = _capture(model, ["query", "key", "value", "attn_logits"], ids, mask)
    assert len(chosen) == 4 * model.config.get_text_config().num_hidden_layers
    for b in chosen[:8]:  # the first two layers against the reference
        attn = model.get_submodule(b.module_path)
        if b.site.kind == "attn_logits":
            pre = b.site.name.removesuffix("logits")
            q, k = got[pre + "query.out"].transpose(1, 2), got[pre + "key.out"].transpose(1, 2)
            want = brute_force_range(q, k, _own_mask(mask, ids.shape[1]), attn.scaling)
            torch.testing.assert_close(got[b.site.name][mask.bool()], want[mask.bool()], rtol=1e-6, atol=1e-5)
            continue
        x, kw = inputs[b.module_path]
        want = dict(zip(("query", "key", "value"), reference(name, attn, x, kw)))[b.site.kind]
        assert torch.equal(got[b.site.name], want), b.site.name
    probe = probe_sites(model, select_sites(discover_sites(model).bindings, "all"), ids[:, :7], mask[:, :7])
    with HookSet(model, probe.bindings, lambda i, x: None), torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(ref, after)


def test_intercept_restores_the_registry_and_passes_other_modules_through():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS as reg

    model = tiny_model("llama")
    before = dict(reg._local_mapping)
    attn = model.model.layers[0].self_attn
    seen = []
    with attention.intercept({attn: [lambda m, q, k, v, mask, kw: seen.append(m)]}):
        with attention.intercept({attn: [lambda m, q, k, v, mask, kw: seen.append("inner")]}):
            with torch.no_grad():
                model(input_ids=torch.tensor([[1, 2, 3]]))
    assert seen == ["inner", attn]  # the inner wrapper first; layer 1 passed through
    assert reg._local_mapping == before


def test_default_selection_leaves_attn_logits_out_and_all_has_it():
    plan = discover_sites(tiny_model("qwen3"))
    kinds = lambda spec: {b.site.kind for b in select_sites(plan.bindings, spec)}  # noqa: E731
    assert "attn_logits" not in kinds(None) and {"query", "key", "value"} <= kinds(None)
    assert "attn_logits" in kinds("all")
    assert kinds("paper,attn_logits") >= {"attn_logits", "residual"}
    assert kinds("paper,query") >= {"query", "residual"}
    assert kinds("kv") == {"key", "value"}
    names = {b.site.name for b in plan.bindings}
    assert {
        "layers.0.attn.key.out",
        "layers.0.attn.value.out",
        "layers.0.attn.query.out",
        "layers.0.attn.logits",
    } <= names


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_sites_under_a_kv_cache_equal_one_full_forward(family):
    """Prefill, then token-by-token decoding with the model's own KV cache (what generate does):
    each step's query/key/value are the new tokens' only, attn_logits ranges over the cached keys
    (Gemma 3: past its sliding window of 4), and the steps together equal one full forward."""
    from transformers import DynamicCache

    model = tiny_model(family)
    ids = _inputs(B=2, S=9)[0][:1]
    kinds = ["query", "key", "value", "attn_logits"]
    chosen, full, _ = _capture(model, kinds, ids, torch.ones_like(ids))
    names = [b.site.name for b in chosen]
    steps, got = [], {}
    cache = DynamicCache(config=model.config)
    with HookSet(model, chosen, lambda i, x: got.__setitem__(names[i], x.clone())) as hs, torch.no_grad():
        for s0, s1 in [(0, 5), (5, 6), (6, 7), (7, 8), (8, 9)]:
            got.clear()
            model(input_ids=ids[:, s0:s1], past_key_values=cache, use_cache=True)
            hs.check_once()  # every site once per step
            steps.append(dict(got))
    assert cache.get_seq_length() > 5  # the steps did run on the cache
    for name in names:
        assert all(st[name].shape[1] == n for st, n in zip(steps, (5, 1, 1, 1, 1))), name
        torch.testing.assert_close(torch.cat([st[name] for st in steps], 1), full[name], rtol=1e-5, atol=1e-5)
    seen = []  # generate itself: one call per new token, each measuring its new token only
    with HookSet(model, chosen, lambda i, x: seen.append(x.shape[1]) if i == 1 else None), torch.no_grad():
        model.generate(ids[:, :5], attention_mask=torch.ones(1, 5, dtype=torch.long), max_new_tokens=4,
                       do_sample=False, pad_token_id=0)  # fmt: skip
    assert seen == [5, 1, 1, 1]
