"""End to end, every linear input is quantized whatever site carries its tensor (issue 14, item 9).

Olmo2 has no input norms: its q/k/v projections read the residual stream itself,
which the probe hooks once as the previous layer's resid.out (or embed.out) and
reports q/k/v_proj.in as aliases of it. SmoothQuant used to be skipped there.
"""

from __future__ import annotations

import pytest
import torch

from actscope.corpus import TokenizeConfig, make_batches, tokenize_corpus
from actscope.quant import QuantConfig, run_quant
from actscope.quant.e2e import evaluate_e2e, linear_layers
from actscope.quant.passes import calibrate
from actscope.quant.pipeline import _batches, _resolve_sites, resolve_target
from actscope.quant.quantizer import site_quantizer
from actscope.quant.scheme import parse_scheme

SQ = "int8:token+sq0.5"


@pytest.fixture
def olmo2(tiny_olmo2):
    return tiny_olmo2


def cfg(tmp_path) -> QuantConfig:
    return QuantConfig(
        target="tiny-olmo2",
        out=str(tmp_path / "run"),
        calib=4,
        eval=4,
        max_length=32,
        token_budget=256,
        e2e_token_budget=128,
        schemes=(SQ,),
        e2e=(SQ,),
        recommend=False,
    )


def test_smoothquant_applies_to_every_site_that_carries_a_linear_input(olmo2, tiny_corpus, tmp_path):
    c = cfg(tmp_path)
    from actscope.quant.splits import split_corpus

    split = split_corpus(tiny_corpus, c.calib, c.eval, c.seed)
    data = _batches(c, resolve_target(c), olmo2.tokenizer, tiny_corpus, split)
    probe, linear_modules = _resolve_sites(c, olmo2.model, data["calib_seqs"], data["pad_id"])
    cal = calibrate(olmo2.model, probe.bindings, probe.channels, data["calib"], c.calib, linear_modules)
    carriers = {}  # linear layer -> kind of the hooked site that carries its input
    for name, b in probe.usable.items():
        if b.site.kind == "linear_input":
            carriers[b.module_path] = cal[probe.aliases.get(name, name)]
    assert set(carriers) == set(linear_layers(olmo2.model))
    assert {"residual", "embedding"} & {c.kind for c in carriers.values()}  # q/k/v read the residual stream
    for path, site in carriers.items():
        assert site_quantizer(parse_scheme(SQ), site) is not None, (path, site.name, site.kind)
    not_linear = [n for n, s in cal.items() if s.weight_amax is None]
    assert not_linear and all(site_quantizer(parse_scheme(SQ), cal[n]) is None for n in not_linear)


def test_e2e_results_name_the_linear_layers_left_unquantized(tiny_loaded, tiny_corpus):
    model = tiny_loaded.model
    layers = linear_layers(model)
    assert layers and "lm_head" not in layers and all("layers." in p for p in layers)
    seqs = tokenize_corpus(tiny_corpus, tiny_loaded.tokenizer, TokenizeConfig(max_length=32))
    batches = make_batches(seqs[:4], token_budget=128)

    def same(x):
        return x, torch.zeros(())

    keep = layers[:3]
    res = evaluate_e2e(
        model, batches, {"all": dict.fromkeys(layers, same), "some": dict.fromkeys(layers[3:], same)}
    )
    assert res["all"]["linear_unquantized"] == [] and res["some"]["linear_unquantized"] == keep


def test_olmo2_smoothquant_end_to_end_quantizes_every_linear_input(olmo2, tiny_corpus, tmp_path):
    _, section = run_quant(cfg(tmp_path), loaded=olmo2, corpus=tiny_corpus)
    assert section["e2e"][SQ]["linear_unquantized"] == []
