"""KV-cache scales from a run: per-head peaks equal the keys and values themselves, scales
rounded up, the kv-scales export in the vLLM / compressed-tensors layout, SQNR and end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import actscope
from actscope import attention
from actscope.quant.formats import FP8_E4M3, INT8
from actscope.quant.kvcache import (
    KVFakeQuant,
    evaluate_kv,
    kv_cache_scheme,
    kv_peaks,
    kv_scales,
    kv_sqnr,
)
from actscope.quant.primitives import stored_scale
from actscope.rundir import RunView


@pytest.fixture(scope="module")
def tiny_loaded():
    """A tiny random Llama (4 query heads, 2 KV heads) with a real character tokenizer."""
    from actscope.adapters.tiny import tiny_model
    from actscope.models import LoadedModel
    from tinylm import char_tokenizer

    return LoadedModel(tiny_model("llama", vocab_size=98), char_tokenizer(), {"source": "tiny-llama"})


@pytest.fixture(scope="module")
def kv_run(tiny_loaded, tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("kv") / "run"
    texts = [s.text for s in tiny_corpus.samples[:8]]
    actscope.measure(tiny_loaded.model, tiny_loaded.tokenizer, corpus=texts, sites="kv", out=str(out))
    return RunView.measured(out), texts


def _direct_peaks(loaded, texts):
    """max|k|, max|v| per layer and KV head from the attention calls themselves, text by text."""
    model, tok = loaded.model, loaded.tokenizer
    attn = {layer.self_attn: i for i, layer in enumerate(model.model.layers)}
    peaks = {}

    def grab(module, q, k, v, mask, kw):
        i = attn[module]
        for name, t in (("k", k), ("v", v)):
            h = t.abs().amax(dim=(0, 2, 3)).float()
            peaks[(i, name)] = torch.maximum(peaks.get((i, name), h), h)

    with attention.intercept({m: [grab] for m in attn}), torch.no_grad():
        for t in texts:
            model(input_ids=torch.tensor([tok(t)["input_ids"]]))
    return peaks


def test_head_peaks_equal_the_attention_inputs(kv_run, tiny_loaded):
    view, texts = kv_run
    peaks = kv_peaks(view)
    direct = _direct_peaks(tiny_loaded, texts)
    assert sorted(peaks) == [0, 1]
    for i, p in peaks.items():
        assert p["module"] == f"model.layers.{i}.self_attn"
        assert p["k"].shape == (2,)  # KV heads, not query heads
        np.testing.assert_array_equal(p["k"], direct[(i, "k")].numpy())
        np.testing.assert_array_equal(p["v"], direct[(i, "v")].numpy())


def test_scales_are_rounded_up_and_shaped_per_granularity(kv_run):
    view, _ = kv_run
    t, h = kv_scales(view, "fp8-e4m3", "tensor"), kv_scales(view, "fp8-e4m3", "head")
    peaks = kv_peaks(view)
    for i in peaks:
        assert t[i]["k_scale"].shape == (1,) and h[i]["k_scale"].shape == (2,)
        assert t[i]["k_scale"].dtype == torch.float32
        assert float(t[i]["k_scale"]) * 448.0 >= float(peaks[i]["k"].max())
        assert torch.all(h[i]["v_scale"] * 448.0 >= torch.from_numpy(peaks[i]["v"]))
    # where the float32 quotient rounds down, the scale is nudged up one ulp (and no more)
    amax = np.random.default_rng(0).uniform(0.01, 500, 4000).astype(np.float32)
    for fmt in (FP8_E4M3, INT8):
        s = stored_scale(amax, fmt, torch.float32)
        a = torch.from_numpy(amax)
        assert torch.all(s.double() * fmt.max_value >= a.double())  # exact products
        plain = a / fmt.max_value
        assert torch.any(s != plain)  # some quotients did round down
        assert torch.all((s == plain) | (s == torch.nextafter(plain, torch.full_like(plain, torch.inf))))


def test_scheme_fields():
    assert kv_cache_scheme("fp8-e4m3") == {
        "num_bits": 8,
        "type": "float",
        "strategy": "tensor",
        "dynamic": False,
        "symmetric": True,
        "group_size": None,
        "observer": "minmax",
    }
    assert kv_cache_scheme("int8", "head")["type"] == "int"
    with pytest.raises(actscope.errors.UserError):
        kv_cache_scheme("fp4")


def test_export_kv_scales_cli(kv_run, tmp_path):
    from safetensors import safe_open

    view, _ = kv_run
    out = tmp_path / "kv.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "actscope",
        "export",
        str(view.path),
        "--format",
        "kv-scales",
        "-o",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with safe_open(str(out), "pt") as f:
        names = sorted(f.keys())
        k0 = f.get_tensor("model.layers.0.self_attn.k_scale")
    assert names == [f"model.layers.{i}.self_attn.{t}_scale" for i in (0, 1) for t in ("k", "v")]
    assert torch.equal(k0, kv_scales(view)[0]["k_scale"])
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["kv_cache_scheme"]["strategy"] == "tensor"
    assert doc["layers"]["0"]["k_absmax_per_head"] == [float(x) for x in kv_peaks(view)[0]["k"]]
    bad = subprocess.run([*cmd[:-2], "--kv-format", "fp4"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_fake_quant_sqnr_and_end_to_end(kv_run, tiny_loaded, tiny_corpus):
    from actscope import engine
    from actscope.corpus import Corpus, TokenizeConfig

    view, _ = kv_run
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    held = Corpus("held", tiny_corpus.samples[12:20])
    _, batches = engine.tokenized_batches(held, tok, TokenizeConfig(bos="auto"), token_budget=256)
    ids = batches[0].input_ids
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        with KVFakeQuant(model, kv_scales(view, "int8"), "int8"):
            q = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.equal(ref, q) and torch.equal(ref, after)  # quantized inside, restored after
    rows = kv_sqnr(model, batches, kv_scales(view, "fp8-e4m3"), "fp8-e4m3")
    assert {(r["layer"], r["tensor"]) for r in rows if r["head"] == -1} == {
        (0, "k"),
        (0, "v"),
        (1, "k"),
        (1, "v"),
    }
    assert all(25 < r["sqnr_db"] < 40 for r in rows)  # FP8 E4M3: ~31 dB on Gaussian-like data
    res, table = evaluate_kv(model, view, batches, batches, ["fp8-e4m3:tensor", "int8:head"], 1.0)
    peaks = kv_peaks(view)
    assert len(table) == 2 * 2 * 2 * 3  # schemes x layers x (k, v) x (all heads, head 0, head 1)
    for r in table:
        peak = peaks[r["layer"]][r["tensor"]]
        assert r["absmax"] == float(peak.max() if r["head"] < 0 else peak[r["head"]])
        qmax = (FP8_E4M3 if r["format"] == "fp8-e4m3" else INT8).max_value
        assert r["scale"] * qmax >= r["absmax"]  # the static scale holds the measured peak
    # on the measured texts, layer 0's static scales hold every element (nothing upstream of it
    # is quantized; later layers see the quantized cache of the earlier ones, so may exceed)
    measured = Corpus("measured", tiny_corpus.samples[:8])  # what kv_run measured
    _, seen = engine.tokenized_batches(measured, tok, TokenizeConfig(bos="auto"), token_budget=256)
    for fmt in ("fp8-e4m3", "int8"):
        first = [r for r in kv_sqnr(model, seen, kv_scales(view, fmt, "head"), fmt) if r["layer"] == 0]
        assert len(first) == 6 and all(r["clip_rate"] == 0.0 for r in first)
    assert res["fp8-e4m3:tensor"]["verdict"] in ("pass", "fail")
    assert res["fp8-e4m3:tensor"]["e2e"]["positions"] == res["float"]["e2e"]["positions"] > 0
    assert res["float"]["e2e"]["kl"] == 0.0 and res["int8:head"]["e2e"]["kl"] > 0


def test_quant_pipeline_kv_section(kv_run, tiny_loaded, tiny_corpus, tmp_path):
    from actscope.quant.config import QuantConfig
    from actscope.quant.pipeline import run_quant

    view, _ = kv_run
    cfg = QuantConfig(
        target=str(view.path),
        calib=4,
        eval=4,
        max_length=32,
        schemes=("int8:tensor:absmax",),
        e2e=("int8:token",),
        kv=("fp8-e4m3:tensor", "int8:head"),
        recommend=False,
    )
    _, section = run_quant(cfg, loaded=tiny_loaded, corpus=tiny_corpus)
    kv = section["kv_cache"]
    assert set(kv) == {"fp8-e4m3:tensor", "int8:head", "float"}
    assert kv["int8:head"]["verdict"] in ("pass", "fail") and kv["int8:head"]["e2e"]["kl"] > 0
    table = RunView.measured(view.path).table("quant_kv").to_pylist()
    assert {r["head"] for r in table if r["scheme"] == "int8:head"} == {-1, 0, 1}
    worst = min(
        (r for r in table if r["scheme"] == "int8:head" and r["head"] == -1), key=lambda r: r["sqnr_db"]
    )
    assert kv["int8:head"]["worst"] == {k: worst[k] for k in ("layer", "tensor", "sqnr_db")}
    assert "rows" not in kv["int8:head"]  # the rows live in quant_kv.parquet only
    stored = RunView.measured(view.path).manifest["quant"]["kv_cache"]
    assert stored["fp8-e4m3:tensor"]["verdict"] == kv["fp8-e4m3:tensor"]["verdict"]
    from actscope.report.card import card_fields, card_markdown

    card = card_fields(RunView.measured(view.path))["kv_cache"]
    assert card["fp8-e4m3:tensor"]["verdict"] == kv["fp8-e4m3:tensor"]["verdict"]
    from actscope.report.html import render_report
    from actscope.report.kvview import kv_context

    ctx = kv_context(RunView.measured(view.path))
    assert [x["scheme"] for x in ctx["schemes"]] == ["fp8-e4m3:tensor", "int8:head"]
    assert all(len(x["layers"]) == 2 and x["verdict"] == kv[x["scheme"]]["verdict"] for x in ctx["schemes"])
    html = render_report([view.path], tmp_path / "r.html").read_text()
    assert "K SQNR" in html and "KV cache <code>int8:head</code>" in html
    md = card_markdown(RunView.measured(view.path))
    assert "KV cache `int8:head`" in md and "KV cache range (keys after RoPE)" in md
    peaks = kv_peaks(view)
    k_layer = max(peaks, key=lambda i: peaks[i]["k"].max())
    assert card_fields(view)["kv_range"]["key"] == {
        "layer": k_layer,
        "absmax": float(peaks[k_layer]["k"].max()),
    }

    with pytest.raises(actscope.errors.UserError, match="KV granularity"):
        QuantConfig(target="x", kv=("fp8-e4m3:channel",))


def test_report_kv_section(kv_run, tmp_path):
    """The HTML report's KV section: per layer max|k| and max|v| from the run's own sites, the
    E4M3 headroom at scale 1, and (after quant --kv, test above) each scheme's SQNR per layer."""
    from actscope.report.html import render_report
    from actscope.report.kvview import kv_context

    view, _ = kv_run
    ctx = kv_context(RunView.measured(view.path))
    peaks = kv_peaks(view)
    assert [e["layer"] for e in ctx["rows"]] == sorted(peaks)
    for e in ctx["rows"]:
        assert e["key"] == float(peaks[e["layer"]]["k"].max()) and e["value"] == float(
            peaks[e["layer"]]["v"].max()
        )
        assert e["key_e4m3_headroom"] == FP8_E4M3.max_value / e["key"]
        assert "query" not in e and "logits_max" not in e  # measured with --sites kv
    html = render_report([view.path], tmp_path / "r.html").read_text()
    assert "KV cache and attention" in html and "K E4M3 headroom" in html and "max |q|" not in html
