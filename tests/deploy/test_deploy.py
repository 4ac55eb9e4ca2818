"""Checkpoints written, read back by their consumers' rules, reloaded by transformers, verified."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from actscope.deploy.verify import SIM_TOLERANCE_PCT
from actscope.quant.formats import FP8_E4M3
from actscope.rundir import RunView

pytestmark = pytest.mark.slow


def tensors(ckpt, suffix):
    out = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out.update({k.removesuffix(suffix): h.get_tensor(k) for k in h.keys() if k.endswith(suffix)})
    return out


def peaks(run):
    return {r["module"]: r["absmax"] for r in RunView(run).sites if r["kind"] == "linear_input"}


@pytest.mark.parametrize("which", ["ckpt_fp8", "ckpt_modelopt"])
def test_written_input_scales_cover_the_measured_peak(which, request, smol_run):
    out, rec = request.getfixturevalue(which)
    scales = tensors(out, ".input_scale")
    measured = peaks(smol_run)
    assert set(scales) == set(measured)  # every linear layer but the LM head
    for m, s in scales.items():
        assert float(s.double()) * FP8_E4M3.max_value >= measured[m], m


def test_compressed_tensors_layout_is_what_the_library_validates(ckpt_fp8):
    from compressed_tensors.quantization import QuantizationConfig

    out, rec = ckpt_fp8
    cfg = json.loads((out / "config.json").read_text())
    qc = QuantizationConfig.model_validate(cfg["quantization_config"])
    assert qc.quant_method == "compressed-tensors" and qc.format == "float-quantized"
    assert qc.ignore == ["lm_head"]
    act = qc.config_groups["group_0"].input_activations
    assert (act.type, act.strategy, act.dynamic) == ("float", "tensor", False)
    w, ws, s = (
        tensors(out, x)["model.layers.0.mlp.down_proj"] for x in (".weight", ".weight_scale", ".input_scale")
    )
    assert w.dtype == torch.float8_e4m3fn and ws.shape == (w.shape[0], 1) and s.shape == (1,)
    assert s.dtype == ws.dtype == torch.float32


def test_modelopt_layout(ckpt_modelopt, smol_run):
    out, _ = ckpt_modelopt
    hq = json.loads((out / "hf_quant_config.json").read_text())
    assert hq["producer"]["name"] == "modelopt"
    assert hq["quantization"] == {
        "quant_algo": "FP8",
        "kv_cache_quant_algo": None,
        "exclude_modules": ["lm_head"],
    }
    s = tensors(out, ".input_scale")["model.layers.0.self_attn.o_proj"]
    peak = peaks(smol_run)["model.layers.0.self_attn.o_proj"]
    assert s.dtype == torch.float32 and s.shape == ()
    assert float(s) == pytest.approx(peak / 448, rel=1e-6) and float(s) * 448 >= peak


def test_reload_applies_the_static_scales_and_agrees_with_the_simulation(ckpt_fp8):
    _, rec = ckpt_fp8
    v = rec["verify"]
    assert v["applies_input_quantization"] is True
    assert v["generate"]["finite"] and v["generate"]["reload"].strip()
    assert v["reload"]["kl"] > 0  # quantization did something
    # the reload computes what actscope's own simulation of the same checkpoint computes
    assert abs(v["reload"]["ppl_change_pct"] - v["simulated"]["ppl_change_pct"]) <= SIM_TOLERANCE_PCT
    assert v["reload"]["kl"] == pytest.approx(v["simulated"]["kl"], rel=0.02)
    assert v["quant"]["scheme"] == "fp8_e4m3:tensor:absmax"


def test_deployment_is_recorded(ckpt_fp8, smol_run):
    out, rec = ckpt_fp8
    on_disk = json.loads((out / "actscope.json").read_text())
    assert on_disk["scheme"] == "fp8-static" and on_disk["clip"] == "absmax"
    assert len(on_disk["modules"]) == 210
    entry = next(d for d in RunView(smol_run).deployments if d["out"] == str(out.resolve()))
    assert entry["verify"]["reload"]["ppl_change_pct"] == rec["verify"]["reload"]["ppl_change_pct"]
