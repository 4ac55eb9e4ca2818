"""audit: shrunk scales are flagged, exactly; an unmodified fp8-static checkpoint does not clip."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file, save_file

from actscope.deploy.audit import audit, write_audit
from actscope.rundir import RunView, read_table

pytestmark = pytest.mark.slow

SHRUNK = ("model.layers.2.self_attn.o_proj", "model.layers.7.mlp.down_proj", "model.layers.29.mlp.up_proj")


@pytest.fixture()
def run_copy(smol_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(smol_run, dst)
    return dst


def test_unmodified_checkpoint_reports_no_clipping(ckpt_fp8, run_copy):
    out, _ = ckpt_fp8
    name, rows = audit(out, RunView(run_copy))
    assert name == "compressed-tensors" and len(rows) == 210
    assert all(r["verdict"].startswith("headroom x") and r["clip_fraction"] == 0.0 for r in rows)
    section = write_audit(run_copy, out, name, rows)
    assert section["saturating"] == []
    assert read_table(run_copy, "audit").num_rows == 210
    assert RunView(run_copy).audits[-1]["checkpoint"] == str(out.resolve())


@pytest.mark.parametrize("which", ["ckpt_fp8", "ckpt_modelopt"])
def test_shrunk_scales_are_flagged_exactly(which, request, run_copy, tmp_path):
    src, _ = request.getfixturevalue(which)
    ck = tmp_path / "ck"
    shutil.copytree(src, ck)
    f = ck / "model.safetensors"
    t = load_file(str(f))
    for m in SHRUNK:
        t[f"{m}.input_scale"] = t[f"{m}.input_scale"] * 0.5
    save_file(t, str(f))
    _, rows = audit(ck, RunView(run_copy))
    flagged = {r["module"] for r in rows if r["verdict"] == "saturates"}
    assert flagged == set(SHRUNK)
    assert {r["module"] for r in rows[:3]} == set(SHRUNK)  # worst first
    top = rows[0]
    assert 0 < top["clip_fraction"] < 1 and top["headroom"] == pytest.approx(0.5, rel=1e-2)


def test_corpus_measures_the_checkpoints_own_model(ckpt_fp8, tmp_path, capsys):
    """--corpus: the quantized checkpoint is loaded and measured (linear inputs) by the measure engine."""
    import json

    from actscope.cli import main

    out, _ = ckpt_fp8
    run = tmp_path / "own"
    argv = ["audit", str(out), "--corpus", "quick", "--limit", "2", "--max-length", "16", "-o", str(run)]
    assert main([*argv, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["summary"]["modules"] == 210 and got["summary"]["measured"] == 210
    assert RunView(run).model["source"] == str(out)


def test_vllm_fp8_checkpoint_is_read(ckpt_fp8, run_copy, tmp_path):
    """vLLM's own `fp8` format (quant_method fp8, activation_scheme static, `input_scale` per
    module): the same scales read the same way as the compressed-tensors checkpoint's."""
    import json

    src, _ = ckpt_fp8
    ck = tmp_path / "vllm-fp8"
    shutil.copytree(src, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["quantization_config"] = {
        "quant_method": "fp8",
        "activation_scheme": "static",
        "ignored_layers": ["lm_head"],
    }
    (ck / "config.json").write_text(json.dumps(cfg))
    name, rows = audit(ck, RunView(run_copy))
    _, reference = audit(src, RunView(run_copy))
    assert name == "fp8"
    key = lambda r: (r["module"], r["input_scale"], r["representable"], r["verdict"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, reference))
