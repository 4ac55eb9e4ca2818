"""Streaming error sums equal direct computation; correlations match hand values."""

from __future__ import annotations

import math

import numpy as np
import torch

from actscope.quant.covariance import correlations, pearson, rankdata, spearman
from actscope.quant.formats import INT8
from actscope.quant.metrics import ErrorSums
from actscope.quant.primitives import amax_to_scale, compute_error, fake_quantize


def test_streamed_sums_equal_one_shot_metrics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=g) * 3
    x[5, 3] = 0.001  # underflows to zero
    s = amax_to_scale(torch.tensor(4.0), INT8)  # clips the tail beyond 4
    sums = ErrorSums(1, "cpu")
    for chunk in x.split(64):
        x0 = sums.add_site(chunk)
        xq, clipped = fake_quantize(x0, INT8, s)
        sums.update(0, x0, xq, clipped)
    r = sums.result(0)
    xq, clipped = fake_quantize(x, INT8, s)
    assert math.isclose(r["sqnr_db"], compute_error(x, xq), rel_tol=1e-6)
    assert math.isclose(r["rel_mae"], ((x - xq).abs().sum() / x.abs().sum()).item(), rel_tol=1e-5)
    assert math.isclose(r["rel_rmse"], 10 ** (-r["sqnr_db"] / 20), rel_tol=1e-9)
    assert r["clip_rate"] == int(clipped) / x.numel() > 0
    assert r["underflow_rate"] == int(((x != 0) & (xq == 0)).sum()) / x.numel() > 0
    assert r["elements"] == x.numel() and r["nonfinite"] == 0


def test_nonfinite_inputs_are_counted_and_left_out():
    x = torch.tensor([[1.0, 2.0, math.inf, math.nan, 0.0, 0.001]])
    sums = ErrorSums(1, "cpu")
    x0 = sums.add_site(x)
    assert x0[0, :5].tolist() == [1.0, 2.0, 0.0, 0.0, 0.0]
    xq, clipped = fake_quantize(x0, INT8, amax_to_scale(torch.tensor(127.0), INT8))
    sums.update(0, x0, xq, clipped)
    r = sums.result(0)
    assert r["nonfinite"] == 2 and r["elements"] == 4 and r["clip_rate"] == 0
    assert r["underflow_rate"] == 1 / 3  # 0.001 of the three finite nonzero values


def test_exact_input_gives_infinite_sqnr_in_the_stream():
    x = torch.arange(-127, 128, dtype=torch.float32)[None, :] / 8
    sums = ErrorSums(1, "cpu")
    x0 = sums.add_site(x)
    sums.update(0, x0, *fake_quantize(x0, INT8, amax_to_scale(x.abs().amax(), INT8)))
    assert sums.result(0)["sqnr_db"] == math.inf


def test_rank_and_correlations_hand_values():
    assert rankdata(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert math.isclose(pearson(x, 2 * x + 1), 1.0)
    assert math.isclose(spearman(x, -np.exp(x)), -1.0)  # monotone, not linear
    assert math.isclose(pearson(x, np.array([1.0, 3.0, 2.0, 4.0])), 0.8)
    assert pearson(x[:2], x[:2]) is None  # too few points


def test_correlations_leave_out_infinite_sqnr():
    rows = [
        {"scheme": "s", "kind": "linear_input", "absmax": 10.0**k, "rms": 1.0, "sqnr_db": 40.0 - 10 * k}
        for k in range(5)
    ] + [{"scheme": "s", "kind": "residual", "absmax": 1.0, "rms": 1.0, "sqnr_db": math.inf}]
    out = {(r["sites"], r["feature"]): r for r in correlations(rows)}
    r = out[("linear_input", "log10_absmax")]
    assert r["n"] == 5 and math.isclose(r["pearson"], -1.0) and math.isclose(r["spearman"], -1.0)
    assert out[("all", "log10_absmax")]["n"] == 5
    assert out[("residual", "log10_absmax")]["pearson"] is None
