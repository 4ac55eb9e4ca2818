"""deploy --kv-cache: static KV-cache scales from the run's key/value sites, in the
compressed-tensors layout that transformers reloads and applies."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from test_errors import one_line_error

from actscope.deploy import DeployConfig, deploy
from actscope.quant.kvcache import kv_peaks
from actscope.rundir import RunView

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is Paris, and the capital of Spain is"


def _tensors(ckpt):
    out = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("granularity", ["tensor", "head"])
def test_kv_scales_cover_the_peaks_and_reload(smol_run, tmp_path, granularity):
    from compressed_tensors.quantization import QuantizationConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "ckpt"
    deploy(DeployConfig(run=str(smol_run), out=str(out), kv_cache=f"fp8-e4m3:{granularity}"))
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert QuantizationConfig.model_validate(qc).kv_cache_scheme.strategy == (
        "tensor" if granularity == "tensor" else "attn_head"
    )
    tensors, peaks = _tensors(out), kv_peaks(RunView(smol_run))
    assert len(peaks) == 30  # every SmolLM2 layer
    for i, p in peaks.items():
        for which in ("k", "v"):
            s = tensors[f"model.layers.{i}.self_attn.{which}_scale"].double().reshape(-1)
            peak = torch.from_numpy(p[which]).double()
            assert s.numel() == (1 if granularity == "tensor" else 3)  # 3 KV heads
            assert torch.all(s * 448.0 >= (peak.max() if granularity == "tensor" else peak))  # never clips
    record = json.loads((out / "actscope.json").read_text())["kv_cache"]
    assert record["scheme"] == f"fp8-e4m3:{granularity}" and len(record["layers"]) == 30

    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True, dtype=torch.float32)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    attn = model.model.layers[0].self_attn
    assert torch.equal(
        attn.k_scale.detach().reshape(-1), tensors["model.layers.0.self_attn.k_scale"].reshape(-1)
    )
    ids = AutoTokenizer.from_pretrained(out)(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        base = model(ids).logits
        for layer in model.model.layers:  # the reload quantizes K and V with these scales
            layer.self_attn.k_scale.mul_(64)
            layer.self_attn.v_scale.mul_(64)
        coarse = model(ids).logits
    assert float((base - coarse).abs().max()) > 0.1


def test_kv_cache_bad_input(smol_run, tmp_path, capsys):
    run = ["deploy", str(smol_run), "-o", str(tmp_path / "o")]
    one_line_error(capsys, [*run, "--kv-cache", "fp8-e5m2"], "only FP8 E4M3 KV-cache scales are deployed")
    one_line_error(capsys, [*run, "--kv-cache", "fp8-e4m3:row"], "KV granularity 'row'")
    one_line_error(
        capsys, [*run, "--kv-cache", "fp8-e4m3", "--format", "modelopt"], "compressed-tensors layout"
    )
    bare = tmp_path / "run"  # a run measured before the key/value sites existed
    shutil.copytree(smol_run, bare)
    m = json.loads((bare / "run.json").read_text())
    m["sites"] = [s for s in m["sites"] if s["kind"] not in ("key", "value")]
    (bare / "run.json").write_text(json.dumps(m))
    one_line_error(
        capsys,
        ["deploy", str(bare), "-o", str(tmp_path / "o2"), "--kv-cache", "fp8-e4m3"],
        "no key and value sites",
    )
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()
