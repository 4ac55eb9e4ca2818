"""End to end on a tiny model: run directory contents, e2e masking, recommendation, CLI errors."""

from __future__ import annotations

import math

import pytest
import torch

from actscope.corpus import TokenizeConfig, make_batches, tokenize_corpus
from actscope.quant import QuantConfig, run_quant
from actscope.quant.e2e import QuantizedLinearInputs, evaluate_e2e
from actscope.rundir import read_manifest, read_table

SCHEMES = (
    "int8:tensor:absmax",
    "int8:tensor:mse",
    "int8:token",
    "fp8_e4m3:token",
    "int4:token",
    "mxfp4",
    "nvfp4",
    "int8:token+sq0.5",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_loaded, tiny_corpus):
    out = tmp_path_factory.mktemp("q") / "run"
    cfg = QuantConfig(
        target="tiny-llama",
        out=str(out),
        calib=6,
        eval=6,
        max_length=48,
        token_budget=256,
        e2e_token_budget=128,
        schemes=SCHEMES,
        e2e=("int8:token", "int4:token"),
    )
    return run_quant(cfg, loaded=tiny_loaded, corpus=tiny_corpus)


def test_results_are_written_to_the_run_directory(run):
    out, section = run
    m = read_manifest(out)
    assert m["quant"]["schemes"].keys() == section["schemes"].keys()
    rows = read_table(out, "quant").to_pylist()
    kinds = {r["kind"] for r in rows}
    assert kinds == {"residual", "linear_input"}
    assert {r["scheme"] for r in rows if r["kind"] == "residual"} == set(SCHEMES) - {"int8:token+sq0.5"}
    assert all(r["elements"] > 0 and r["sqnr_db"] > 0 for r in rows)
    assert read_table(out, "quant_corr").num_rows > 0
    split = m["quant"]["split"]
    assert not set(split["calibration"]) & set(split["evaluation"])


def test_metrics_order_formats_sensibly(run):
    _, section = run
    s = section["schemes"]
    assert s["int8:token"]["linear_median_sqnr_db"] > s["int4:token"]["linear_median_sqnr_db"] + 15
    e = section["e2e"]
    assert e["int8:token"]["kl"] < e["int4:token"]["kl"]
    assert e["float"]["kl"] == 0 and e["float"]["ppl_change_pct"] == 0
    assert e["int8:token"]["linear_unquantized"] == e["int4:token"]["linear_unquantized"] == []


def test_recommendation_is_the_cheapest_within_budget(run):
    _, section = run
    rec = section["recommendation"]
    assert rec["tried"], rec
    if rec["scheme"] is not None:
        assert rec["e2e"]["ppl_change_pct"] <= 1.0
        assert rec["tried"][-1]["meets_budget"] and not any(t["meets_budget"] for t in rec["tried"][:-1])


def test_e2e_masks_padding_and_removes_hooks(tiny_loaded, tiny_corpus):
    model = tiny_loaded.model
    seqs = tokenize_corpus(tiny_corpus, tiny_loaded.tokenizer, TokenizeConfig(max_length=64))
    one = [make_batches([s], token_budget=64)[0] for s in seqs]  # no padding at all
    padded = make_batches(seqs, token_budget=512)  # heavy right padding
    assert any(b.padded for b in padded)
    a, b = evaluate_e2e(model, one, {}), evaluate_e2e(model, padded, {})
    assert a["float"]["positions"] == b["float"]["positions"] == sum(len(s.ids) - 1 for s in seqs)
    assert math.isclose(a["float"]["ce"], b["float"]["ce"], rel_tol=1e-5)
    n_hooks = sum(len(m._forward_pre_hooks) for m in model.modules())
    with QuantizedLinearInputs(model, {"model.layers.0.mlp.down_proj": lambda x: (x * 0, None)}):
        assert sum(len(m._forward_pre_hooks) for m in model.modules()) == n_hooks + 1
    assert sum(len(m._forward_pre_hooks) for m in model.modules()) == n_hooks


def test_quantized_inputs_replace_the_linear_input(tiny_loaded):
    model = tiny_loaded.model
    ids = torch.tensor([[1, 5, 9, 13]])
    ref = model(input_ids=ids).logits
    zero = {f"model.layers.{i}.mlp.down_proj": (lambda x: (x * 0, None)) for i in range(2)}
    with QuantizedLinearInputs(model, zero):
        changed = model(input_ids=ids).logits
    assert not torch.allclose(ref, changed)
    assert torch.equal(model(input_ids=ids).logits, ref)


def test_cli_bad_input_is_one_line(capsys):
    from actscope.cli import main

    assert main(["quant", "tiny", "--schemes", "int8:token:p99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dynamic" in err
    assert main(["quant", "a", "b", "--out", "x"]) == 2


def test_cli_adds_to_a_run_and_pools_runs(run, tmp_path, monkeypatch, capsys, tiny_loaded, tiny_corpus):
    """`actscope quant RUN --with RUN2`: results land in RUN, the pooled correlation is saved."""
    import json
    import shutil

    import actscope.models
    import actscope.quant.pipeline as pipeline
    from actscope.cli import main

    monkeypatch.setattr(actscope.models, "load_model", lambda *a, **k: tiny_loaded)
    monkeypatch.setattr(pipeline, "load_corpus", lambda spec: tiny_corpus)
    first, _ = run
    other = tmp_path / "other"
    shutil.copytree(first, other)
    m = json.loads((other / "run.json").read_text())
    m["model"]["source"] = "tiny-llama-copy"
    (other / "run.json").write_text(json.dumps(m))
    target = tmp_path / "target"
    shutil.copytree(first, target)
    rc = main(
        [
            "quant",
            str(target),
            "--calib",
            "4",
            "--eval",
            "4",
            "--max-length",
            "32",
            "--schemes",
            "int8,fp8:token",
            "--e2e",
            "none",
            "--no-recommend",
            "--with",
            str(other),
            "--compare-out",
            str(tmp_path / "cmp"),
        ]
    )
    assert rc == 0
    assert read_manifest(target)["quant"]["settings"]["schemes"] == ["int8", "fp8:token"]
    doc = json.loads((tmp_path / "cmp" / "quant_compare.json").read_text())
    assert {p["model"] for p in doc["peaks"]} == {"tiny-llama", "tiny-llama-copy"}
    assert read_table(tmp_path / "cmp", "quant_compare").num_rows > 0
    assert "correlation" in capsys.readouterr().out
    assert main(["quant-compare", str(target), str(other), "--out", str(tmp_path / "cmp2")]) == 0
    assert (tmp_path / "cmp2" / "quant_compare.json").exists()
    assert main(["quant-compare", str(tmp_path / "nothing")]) == 2
