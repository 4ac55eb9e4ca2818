"""The streaming passes agree with quantizing captured activations directly (padding excluded)."""

from __future__ import annotations

import math

import torch

from actscope.adapters import discover_sites
from actscope.corpus import TokenizeConfig, make_batches, tokenize_corpus
from actscope.engine import probe_inputs
from actscope.probe import probe_sites
from actscope.quant.passes import calibrate, evaluate
from actscope.quant.primitives import amax_to_scale, compute_error, fake_quantize, fake_quantize_dynamic
from actscope.quant.quantizer import build_quantizer
from actscope.quant.scheme import parse_scheme
from actscope.quant.splits import split_corpus, subset
from actscope.sites import select_sites


def _captured(model, binding, batches) -> torch.Tensor:
    """Real-token rows of one site over all batches, (N, C), by a plain forward hook."""
    rows, got = [], []
    mod = model.get_submodule(binding.module_path)
    h = mod.register_forward_hook(lambda m, a, o: got.append(o[0] if isinstance(o, tuple) else o))
    try:
        for b in batches:
            with torch.no_grad():
                model(input_ids=b.input_ids, attention_mask=b.attention_mask)
            x = got.pop()
            rows.append(x.reshape(-1, x.shape[-1])[b.attention_mask.reshape(-1) > 0])
    finally:
        h.remove()
    return torch.cat(rows).float()


def test_streamed_sqnr_equals_direct_quantization(tiny_loaded, tiny_corpus):
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    split = split_corpus(tiny_corpus, 6, 6, seed=1)
    tcfg = TokenizeConfig(max_length=48)
    cal_seqs = tokenize_corpus(subset(tiny_corpus, split.calibration), tok, tcfg)
    ev_seqs = tokenize_corpus(subset(tiny_corpus, split.evaluation), tok, tcfg)
    cal_b, ev_b = make_batches(cal_seqs, token_budget=200), make_batches(ev_seqs, token_budget=200)
    assert any(b.padded for b in ev_b)
    chosen = select_sites(discover_sites(model).bindings, "layers.1.resid.out")
    probe = probe_sites(model, chosen, *probe_inputs(cal_seqs, "cpu", 0))
    cal = calibrate(model, probe.bindings, probe.channels, cal_b, 6, {})
    schemes = [parse_scheme(s) for s in ("int8:tensor:absmax", "int8:token")]
    name = probe.bindings[0].site.name
    quantizers = {name: [build_quantizer(s, cal[name]) for s in schemes]}
    sink = evaluate(model, probe.bindings, probe.channels, quantizers, ev_b, 6)

    xc = _captured(model, probe.bindings[0], cal_b)
    xe = _captured(model, probe.bindings[0], ev_b)
    assert math.isclose(cal[name].amax, xc.abs().max().item(), rel_tol=1e-6)
    static, _ = fake_quantize(xe, parse_scheme("int8").fmt, amax_to_scale(xc.abs().max(), schemes[0].fmt))
    dynamic, _ = fake_quantize_dynamic(xe, schemes[1].fmt, schemes[1].gran)
    for j, direct in enumerate((static, dynamic)):
        got = sink.errors[0].result(j)
        assert got["elements"] == xe.numel()
        assert math.isclose(got["sqnr_db"], compute_error(xe, direct), rel_tol=1e-5, abs_tol=1e-4)
