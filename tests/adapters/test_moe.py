"""MoE sites on tiny qwen3_moe and gpt_oss: tokens per expert, expert internals, idle experts."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from actscope.adapters import discover_sites
from actscope.adapters.moe import recompute_experts
from actscope.adapters.tiny import tiny_model
from actscope.config import MeasureConfig
from actscope.runner import measure
from actscope.summary import expert_load, idle_experts

MOE = ["qwen3_moe", "gpt_oss"]


def run(model, family, as_loaded, corpus, tmp_path):
    cfg = MeasureConfig(
        model=family, out=str(tmp_path / "run"), progress=False, max_batch=2, max_length=64, token_budget=256
    )  # batches of two samples: right-padded
    return measure(cfg, loaded=as_loaded(model, family), corpus=corpus)


def routed_indices(model, tok, corpus) -> list[torch.Tensor]:
    """Per MoE layer, the (T, k) top-k indices of every real token, samples run alone."""
    routers = [m for n, m in model.named_modules() if n.endswith(("mlp.gate", "mlp.router"))]
    got: list[list[torch.Tensor]] = [[] for _ in routers]
    handles = [
        r.register_forward_hook(lambda m, a, o, j=j: got[j].append(o[2])) for j, r in enumerate(routers)
    ]
    try:
        with torch.no_grad():
            for s in corpus.samples:
                model(input_ids=torch.tensor([tok(s.text)["input_ids"]]))
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(g) for g in got]


@pytest.mark.parametrize("family", MOE)
def test_tokens_per_expert_sum_to_tokens_times_top_k(
    family, family_model, as_loaded, char_tok, corpus, tmp_path
):
    model = family_model(family)
    out = run(model, family, as_loaded, corpus, tmp_path)
    load = expert_load(out)
    k = model.config.num_experts_per_tok
    n_tokens = sum(len(char_tok(s.text)["input_ids"]) for s in corpus.samples)
    assert sorted(load) == [
        f"layers.{i}.mlp.experts.routed.in" for i in range(model.config.num_hidden_layers)
    ]
    sites = {r["site"]: r for r in pq.read_table(out / "sites.parquet").to_pylist()}
    for name, r in sites.items():  # expert-internal rows are real tokens only, like every site
        assert r["tokens"] == n_tokens, name
    ref = routed_indices(model, char_tok, corpus)
    for i, counts in enumerate(load[f"layers.{i}.mlp.experts.routed.in"] for i in range(len(ref))):
        assert sum(counts) == n_tokens * k  # padding tokens are routed too, and not counted
        assert counts == torch.bincount(ref[i].reshape(-1), minlength=len(counts)).tolist()


def capture_experts(model, ids):
    """The experts module's inputs and output of every MoE layer for one forward."""
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, a, o: calls.append((m, a, o)))
        for n, m in model.named_modules()
        if n.endswith("mlp.experts")
    ]
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return calls


@pytest.mark.parametrize("family", MOE)
def test_recomputed_down_proj_input_rebuilds_the_experts_output(family, family_model):
    """Feeding the recomputed down_proj inputs through the experts' down projections and
    routing weights gives the experts module's own output: the rows are the right pairs."""
    model = family_model(family)
    for m, (x, idx, w), y in capture_experts(model, torch.randint(3, 40, (1, 9))):
        T, k = idx.shape
        down = recompute_experts(m, x, idx, with_act=False)["down"].view(T, k, -1)  # (T, k, I)
        rebuilt = torch.zeros_like(y)
        for j in range(k):
            wd = m.down_proj[idx[:, j]]  # (T, H, I) or (T, I, H) transposed
            yj = (
                torch.einsum("ti,tih->th", down[:, j], wd)
                if m.is_transposed
                else torch.einsum("ti,thi->th", down[:, j], wd)
            )
            if m.has_bias:
                yj = yj + m.down_proj_bias[idx[:, j]]
            rebuilt += w[:, j, None] * yj
        torch.testing.assert_close(rebuilt, y, rtol=1e-5, atol=1e-6)


def test_recomputed_act_equals_the_models_own_act_fn(family_model):
    """qwen3_moe: the act_fn outputs the experts compute (any implementation, all calls)
    are the recomputed act site's values, as multisets."""
    model = family_model("qwen3_moe")
    experts = model.model.layers[0].mlp.experts
    seen = []
    h = experts.act_fn.register_forward_hook(lambda m, a, o: seen.append(o.detach().reshape(-1)))
    try:
        ((m, (x, idx, _), _), *_rest) = capture_experts(model, torch.randint(3, 40, (1, 9)))
    finally:
        h.remove()
    ours = recompute_experts(m, x, idx, with_act=True)["act"].reshape(-1)
    torch.testing.assert_close(ours.sort().values, torch.cat(seen).sort().values, rtol=1e-5, atol=1e-6)


def test_idle_expert_is_flagged(as_loaded, char_tok, corpus, tmp_path):
    """An expert the router never picks (gpt_oss router bias -1e4) has count 0,
    shows in zero_channels of the routing site and in idle_experts()."""
    model = tiny_model("gpt_oss", vocab_size=len(char_tok))
    for layer in model.model.layers:
        layer.mlp.router.bias.data[3] = -1e4
    out = run(model, "gpt_oss", as_loaded, corpus, tmp_path)
    assert idle_experts(out) == {f"layers.{i}.mlp.experts.routed.in": [3] for i in range(2)}
    sites = {r["site"]: r for r in pq.read_table(out / "sites.parquet").to_pylist()}
    assert sites["layers.0.mlp.experts.routed.in"]["zero_channels"] == 1
    assert sites["layers.0.mlp.experts.routed.in"]["max"] == 1.0


@pytest.mark.parametrize("family", MOE)
def test_router_site_is_the_logits(family, family_model):
    """The router site's tensor is the (T, E) logits, whatever else the router returns."""
    model = family_model(family)
    plan = discover_sites(model)
    b = next(b for b in plan.bindings if b.site.name == "layers.0.mlp.router.out")
    router = model.get_submodule(b.module_path)
    seen = {}
    h = router.register_forward_hook(lambda m, a, o: seen.update(x=a[0], out=o))
    try:
        with torch.no_grad():
            model(input_ids=torch.randint(3, 40, (1, 9)))
    finally:
        h.remove()
    logits = F.linear(seen["x"], router.weight, getattr(router, "bias", None))
    torch.testing.assert_close(seen["out"][0], logits)
    assert "logits" in b.note
