"""One test per supported family (every FamilyTable with a tiny model):
kinds found or declared absent, every site fires once, the recorded residual
stream equals output_hidden_states, and measuring leaves the logits unchanged.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from actscope.adapters import ADAPTERS, discover_sites
from actscope.adapters.tiny import TINY
from actscope.config import MeasureConfig
from actscope.corpus import TokenizeConfig, make_batches, tokenize_corpus
from actscope.engine import batch_context
from actscope.hooks import HookSet
from actscope.probe import probe_sites
from actscope.runner import measure
from actscope.sites import KINDS
from actscope.stats import DEFAULT_STATISTICS
from actscope.stats.accumulator import Accumulator

FAMILIES = sorted(TINY)


def padded_batch(tok, corpus, n: int = 2):
    """The first n samples as one right-padded batch, as measure() builds it."""
    seqs = tokenize_corpus(corpus, tok, TokenizeConfig())[:n]
    (batch,) = make_batches(seqs, token_budget=4096, max_batch=n, pad_id=tok.pad_token_id)
    assert batch.padded
    return batch


def test_every_tiny_family_has_a_table():
    assert {f.removesuffix("+vl") for f in FAMILIES} <= set(ADAPTERS.names())


@pytest.mark.parametrize("family", FAMILIES)
def test_kinds_found_or_declared_absent(family, family_model):
    plan = discover_sites(family_model(family))
    assert plan.table_name != "default"
    cov = plan.coverage()
    assert set(cov) == set(KINDS)
    assert [k for k, s in cov.items() if s == "missing"] == [], plan.missing_kinds
    for k in ("embedding", "residual", "attention", "mlp", "linear_input", "norm", "final_norm"):
        assert cov[k] == "found", k  # every decoder has these
    if "router" not in plan.absent_kinds:  # MoE: router logits, routing counts and expert sites together
        assert {"router", "routing", "expert"} <= set(plan.kinds())


@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_fires_once(family, family_model, char_tok, corpus):
    model = family_model(family)
    plan = discover_sites(model)
    batch = padded_batch(char_tok, corpus)
    res = probe_sites(model, plan.bindings, batch.input_ids, batch.attention_mask)
    fired_wrong = {n: why for n, why in res.dropped.items() if "fired" in why}
    assert fired_wrong == {}
    # sites dropped for their layout (per-head tensors) must not take a whole kind with them
    usable = {b.site.kind for b in res.usable.values()}
    assert usable == set(plan.kinds())


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_unchanged_by_measuring(family, family_model, char_tok, corpus):
    model = family_model(family)
    batch = padded_batch(char_tok, corpus)
    with torch.no_grad():
        ref = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    plan = discover_sites(model)
    probe = probe_sites(model, plan.bindings, batch.input_ids, batch.attention_mask)
    acc = Accumulator(probe.channels, len(corpus), "cpu", DEFAULT_STATISTICS)
    with HookSet(model, probe.bindings, acc.update) as hooks, torch.inference_mode():
        acc.begin_batch(batch_context(batch, "cpu"))
        got = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        hooks.check_once()
        acc.end_batch()
    assert torch.equal(ref, got)


def reference_hidden_states(model, tok, corpus):
    """output_hidden_states of each sample alone (no padding): [(L + 1) x (S, H)] per sample."""
    out = []
    with torch.no_grad():
        for s in corpus.samples:
            ids = torch.tensor([tok(s.text)["input_ids"]])
            out.append([h[0] for h in model(input_ids=ids, output_hidden_states=True).hidden_states])
    return out


def close(a: float, b: float) -> bool:
    # padded batches vs one sample alone: the same math with other shapes, equal up to rounding
    return a == pytest.approx(b, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_sites_equal_output_hidden_states(
    family, family_model, as_loaded, char_tok, corpus, tmp_path
):
    """layers.i.resid.out over the real tokens of a padded run == hidden_states[i + 1].

    transformers replaces hidden_states[-1] by the final-normed last_hidden_state in
    most families; the last layer is then checked through final_norm.out instead.
    """
    model = family_model(family)
    cfg = MeasureConfig(
        model=family, out=str(tmp_path / "run"), progress=False, max_batch=2, max_length=64, token_budget=256
    )
    out = measure(cfg, loaded=as_loaded(model, family), corpus=corpus)
    sites = {r["site"]: r for r in pq.read_table(out / "sites.parquet").to_pylist()}
    hs = reference_hidden_states(model, char_tok, corpus)
    n_layers = len(hs[0]) - 1
    n_tokens = sum(h[0].shape[0] for h in hs)
    for i in range(n_layers):
        x = torch.cat([h[i + 1] for h in hs])
        name = f"layers.{i}.resid.out"
        if i == n_layers - 1 and not close(sites[name]["max"], x.max().item()):
            name = "final_norm.out"  # hidden_states[-1] is final-normed in this family
        r = sites[name]
        assert r["tokens"] == n_tokens, name
        assert close(r["max"], x.max().item()), (name, r["max"], x.max().item())
        assert close(r["min"], x.min().item()), (name, r["min"], x.min().item())
