"""`export`: SmoothQuant act_scales, llama.cpp imatrix GGUF and JSON, each read back."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from actscope.errors import UserError
from actscope.report.export import export, linear_inputs
from actscope.report.imatrix_names import gguf_arch
from actscope.report.rundata import RunView


def _linear_sites(view):
    return [s for s in view.manifest["sites"] if s["kind"] == "linear_input" and s["point"] == "in"]


def test_smoothquant_scales(run_llama, tmp_path):
    view = RunView(run_llama)
    info = export(view, "smoothquant", tmp_path / "act_scales.pt")
    scales = torch.load(tmp_path / "act_scales.pt", weights_only=True)
    sites = _linear_sites(view)
    assert info["entries"] == len(scales) == len(sites) == 3 * 7  # q k v o gate up down per layer
    assert "model.layers.0.self_attn.q_proj" in scales and "model.layers.2.mlp.down_proj" in scales
    assert scales["model.layers.0.mlp.down_proj"].shape == (64,)  # intermediate size
    assert scales["model.layers.0.self_attn.q_proj"].shape == (32,)
    assert all(t.dtype == torch.float32 for t in scales.values())
    # aliased inputs share their source's per-channel maxima: q, k and v see one tensor
    s = scales
    assert torch.equal(s["model.layers.1.self_attn.q_proj"], s["model.layers.1.self_attn.v_proj"])
    alias = next(x for x in sites if x["alias_of"])
    src_rows = {r["site"]: r for r in view.sites}
    assert s[alias["module"]].max().item() == pytest.approx(src_rows[alias["name"]]["absmax"], rel=1e-6)
    assert s[alias["module"]].max().item() == pytest.approx(src_rows[alias["alias_of"]]["absmax"], rel=1e-6)


def test_imatrix_gguf_layout(run_gemma, tmp_path):
    view = RunView(run_gemma)
    export(view, "imatrix", tmp_path / "imatrix.gguf")
    r = gguf.GGUFReader(tmp_path / "imatrix.gguf")
    assert r.fields["general.type"].contents() == "imatrix"
    assert r.fields[gguf.Keys.IMatrix.DATASETS].contents() == ["hostile"]
    size = r.fields[gguf.Keys.IMatrix.CHUNK_SIZE].contents()
    assert size == view.manifest["settings"]["max_length"]
    tensors = {t.name: t for t in r.tensors}
    # llama.cpp's order: entries sorted by weight name, each as in_sum2, counts, in_sum; then
    # actscope's max|x| per column, which llama.cpp's loader skips
    parts = ("in_sum2", "counts", "in_sum", "in_absmax")
    assert list(tensors)[:4] == [f"blk.0.attn_k.weight.{x}" for x in parts]
    bases = [t.rsplit(".", 1)[0] for t in list(tensors)[::4]]
    assert bases == sorted(bases)
    q = tensors["blk.0.attn_q.weight.in_sum2"]
    assert q.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(q.shape) == [32, 1]  # ggml ne: [n_in, n_mat]
    assert list(tensors["blk.0.ffn_down.weight.in_sum2"].shape) == [64, 1]
    counts = tensors["blk.0.ffn_down.weight.counts"]
    assert list(counts.shape) == [1, 1]
    # values are the run's per-channel sum x^2, sum x and token counts
    rows = {r["site"]: r for r in view.sites}
    down = next(s for s in _linear_sites(view) if s["module"] == "model.layers.0.mlp.down_proj")
    ch = view.channels(down["name"])
    np.testing.assert_allclose(
        np.asarray(tensors["blk.0.ffn_down.weight.in_sum2"].data).ravel(), ch["sum_sq"], rtol=1e-6
    )
    n = rows[down["name"]]["tokens"]
    assert float(np.asarray(counts.data).ravel()[0]) == n == view.manifest["tokens"]["measured"]
    np.testing.assert_allclose(
        np.asarray(tensors["blk.0.ffn_down.weight.in_sum"].data).ravel(), ch["mean"] * n, rtol=1e-5, atol=1e-6
    )
    names = {t[: -len(".in_sum2")] for t in tensors if t.endswith(".in_sum2")}
    assert len(names) == len(_linear_sites(view))
    assert {
        f"blk.{i}.{k}.weight"
        for i in range(3)
        for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    } == names
    np.testing.assert_array_equal(
        np.asarray(tensors["blk.0.ffn_down.weight.in_absmax"].data).ravel(), ch["absmax"].astype(np.float32)
    )
    # llama.cpp's rows_to_chunks: the largest count over chunk_size, rounded to nearest
    assert r.fields[gguf.Keys.IMatrix.CHUNK_COUNT].contents() == (n + size // 2) // size


def test_json_export(run_gemma, tmp_path):
    view = RunView(run_gemma)
    export(view, "json", tmp_path / "e.json")
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["summary"]["M"] == view.summary["M"]
    assert len(doc["sites"]) == len(view.sites)
    lin = doc["linear_input_channels"]["model.layers.0.self_attn.o_proj"]
    assert len(lin["absmax"]) == 32 and lin["tokens"] == view.manifest["tokens"]["measured"]


def test_gguf_arch_names():
    assert gguf_arch("gemma3_text") == "gemma3"
    assert gguf_arch("llama") == "llama"
    assert gguf_arch("qwen3_moe") == "qwen3moe"
    assert gguf_arch("gpt_oss") == "gpt-oss"
    assert gguf_arch("no_such_family") == "llama"


def test_export_needs_linear_inputs(run_copy, tmp_path):
    run = run_copy(lambda m: m.update(sites=[s for s in m["sites"] if s["kind"] != "linear_input"]))
    with pytest.raises(UserError, match="linear"):
        linear_inputs(RunView(run))
    with pytest.raises(UserError, match="smoothquant"):
        export(RunView(run), "bogus", tmp_path / "x")
