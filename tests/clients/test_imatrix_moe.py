"""MoE imatrix export on tiny random MoE models: one matrix per expert, exact per-expert
counts, idle experts reported; read back by llama.cpp's llama-imatrix."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from llamafiles import NO_MODEL, THREADS, llama_statistics, measure_tiny_moe, our_statistics

from actscope.cli import main
from actscope.report.export import export
from actscope.report.imatrix import read_dat
from actscope.report.rundata import RunView
from actscope.summary import expert_load

EXPS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")


@pytest.fixture(scope="session")
def qwen_moe(tmp_path_factory, moe_tok):
    return measure_tiny_moe(tmp_path_factory.mktemp("moe") / "qwen3_moe", "qwen3_moe", moe_tok)


@pytest.fixture(scope="session")
def oss_idle(tmp_path_factory, moe_tok):
    """gpt_oss with expert 3 unreachable (router bias -1e4) in both layers."""
    return measure_tiny_moe(tmp_path_factory.mktemp("moe") / "gpt_oss", "gpt_oss", moe_tok, idle_expert=3)


def tensors(path) -> dict[str, np.ndarray]:
    """name -> data in numpy order ((n_mat, n_in) for in_sum2)."""
    return {t.name: np.asarray(t.data) for t in gguf.GGUFReader(path).tensors}


def test_one_matrix_per_expert_with_exact_counts(qwen_moe, tmp_path):
    view = RunView(qwen_moe)
    export(view, "imatrix", tmp_path / "x.gguf")
    t = tensors(tmp_path / "x.gguf")
    load = expert_load(qwen_moe)
    sites = {s["name"]: s for s in view.manifest["sites"]}
    tokens = view.manifest["tokens"]["measured"]
    for i in range(2):
        counts = load[f"layers.{i}.mlp.experts.routed.in"]
        assert sum(counts) == 2 * tokens  # top-2
        for w in EXPS:
            assert t[f"blk.{i}.{w}.weight.counts"].ravel().tolist() == counts
        gate = t[f"blk.{i}.ffn_gate_exps.weight.in_sum2"]
        assert gate.shape == (4, 32)  # (experts, hidden)
        assert t[f"blk.{i}.ffn_down_exps.weight.in_sum2"].shape == (4, 16)  # (experts, moe_intermediate)
        # the router (ffn_gate_inp) reads the same block input over all tokens: one matrix
        norm = view.channels(f"layers.{i}.norm.post_attention.out")
        assert sites[f"layers.{i}.mlp.router.out"]["module"] == f"model.layers.{i}.mlp.gate"
        np.testing.assert_allclose(t[f"blk.{i}.ffn_gate_inp.weight.in_sum2"][0], norm["sum_sq"], rtol=1e-6)
        assert t[f"blk.{i}.ffn_gate_inp.weight.counts"].ravel().tolist() == [tokens]
        # per-expert sums: count_e x the pooled per-column mean, so sum x^2 is conserved
        np.testing.assert_allclose(
            gate / np.array(counts)[:, None], np.tile(norm["sum_sq"] / tokens, (4, 1)), rtol=1e-5
        )
        down = view.channels(f"layers.{i}.mlp.experts.down_proj.in")
        np.testing.assert_allclose(
            t[f"blk.{i}.ffn_down_exps.weight.in_sum2"].sum(0), down["sum_sq"].reshape(2, 16).sum(0), rtol=1e-5
        )
        absmax = t[f"blk.{i}.ffn_down_exps.weight.in_absmax"].ravel()
        np.testing.assert_allclose(absmax, down["absmax"].reshape(2, 16).max(0), rtol=1e-6)


def test_idle_experts_are_reported_not_silent(oss_idle, tmp_path, capsys):
    view = RunView(oss_idle)
    info = export(view, "imatrix", tmp_path / "x.gguf")
    assert info["idle_experts"] == {f"blk.{i}.{w}.weight": [3] for i in range(2) for w in EXPS}
    t = tensors(tmp_path / "x.gguf")
    assert t["blk.0.ffn_down_exps.weight.counts"].ravel()[3] == 0
    assert not t["blk.0.ffn_down_exps.weight.in_sum2"][3].any()
    assert t["blk.0.ffn_down_exps.weight.in_sum2"][:3].all()
    assert main(["export", str(oss_idle), "--format", "imatrix-dat", "-o", str(tmp_path / "x.dat")]) == 0
    shown = capsys.readouterr().out
    assert "blk.1.ffn_up_exps.weight: no token reached expert(s) 3" in shown
    # the legacy layout cannot say "no data": llama.cpp writes 1 x ncall there, and so do we
    ncall, vals = read_dat(tmp_path / "x.dat")["entries"]["blk.0.ffn_down_exps.weight"]
    assert (vals.reshape(4, -1)[3] == ncall).all() and ncall >= 1


def test_llama_imatrix_reads_per_expert_entries(qwen_moe, oss_idle, llama, tmp_path):
    for run in (qwen_moe, oss_idle):
        path = tmp_path / f"{run.name}.gguf"
        export(RunView(run), "imatrix", path)
        r = llama("llama-imatrix", *NO_MODEL, "--in-file", path, "--show-statistics", "-t", THREADS)
        theirs, ours = llama_statistics(r.stdout), our_statistics(path)
        assert theirs.keys() == ours.keys() and any("_exps" in k for k in theirs)
        for name, (mean, sum_e2) in ours.items():
            assert theirs[name][0] == pytest.approx(mean, abs=2e-4), name
            assert theirs[name][1] == pytest.approx(sum_e2, rel=1e-4, abs=1e-4), name


def test_llama_dat_conversion_equals_our_dat(qwen_moe, oss_idle, llama, tmp_path):
    for run in (qwen_moe, oss_idle):
        view = RunView(run)
        export(view, "imatrix", tmp_path / "x.gguf")
        export(view, "imatrix-dat", tmp_path / "ours.dat")
        dat = ("-o", tmp_path / "theirs.dat", "--output-format", "dat")
        llama("llama-imatrix", *NO_MODEL, "--in-file", tmp_path / "x.gguf", *dat)
        assert (tmp_path / "theirs.dat").read_bytes() == (tmp_path / "ours.dat").read_bytes(), run.name
