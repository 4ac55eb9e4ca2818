"""Quantization verdicts estimated from the log-binned histogram, against exact fake-quant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actscope.report.rundata import RunView
from actscope.report.verdicts import FP8_E4M3, INT8, hist_error, verdicts
from actscope.stats import histogram as H


def exact(x: torch.Tensor, fmt) -> tuple[float, float]:
    amax = x.abs().max()
    scale = amax / fmt.max_value
    if fmt is INT8:
        q = torch.clamp(torch.round(x / scale), -127, 127) * scale
    else:
        q = (x / scale).clamp(-448, 448).to(torch.float8_e4m3fn).float() * scale
    sqnr = 10 * math.log10(float((x**2).sum() / ((x - q) ** 2).sum()))
    nz = x != 0
    return sqnr, float((q[nz] == 0).float().mean())


@pytest.mark.parametrize("fmt", [INT8, FP8_E4M3])
@pytest.mark.parametrize("case", ["gaussian", "heavy", "massive"])
def test_histogram_estimate_matches_exact(fmt, case):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g)
    if case == "heavy":
        x = x * torch.exp(torch.randn(200_000, generator=g))  # log-normal scale mixture
    if case == "massive":
        # a massive channel, the bulk ~1e-3 of the peak; the peaks vary from token to token
        # (identical peaks would all sit exactly on qmax, a case a histogram cannot see)
        x[::1000] = 3000.0 * (1 + 0.2 * torch.rand(200, generator=g))
    est_db, est_zero = hist_error(H.histogram(x).numpy(), float(x.abs().max()), fmt)
    true_db, true_zero = exact(x, fmt)
    assert est_db == pytest.approx(true_db, abs=1.0)
    assert est_zero == pytest.approx(true_zero, abs=0.02)


def test_massive_outliers_break_int8_not_sqnr():
    """The case the zero-fraction criterion exists for: SQNR looks fine, the bulk is lost."""
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(1))
    x[::500] = 5000.0
    db, zero = hist_error(H.histogram(x).numpy(), 5000.0, INT8)
    assert db > 20 and zero > 0.9


def test_empty_and_zero_histograms():
    h = np.zeros(H.N_BINS, dtype=np.int64)
    assert hist_error(h, 0.0, INT8) == (math.inf, 0.0)
    h = H.histogram(torch.zeros(100)).numpy()
    assert hist_error(h, 0.0, FP8_E4M3) == (math.inf, 0.0)


def test_run_verdicts(run_gemma):
    v = verdicts(RunView(run_gemma))
    assert v["fp16"]["safe"] is True
    for key in ("fp8_e4m3", "int8"):
        assert v[key]["scope"].startswith("linear inputs")
        assert v[key]["sites_checked"] == 3 * 4  # per layer: qkv input (one tensor), o, gate/up input, down
        assert v[key]["worst_sqnr_db"] is not None
    assert v["fp8_e4m3"]["safe"] is True  # a tiny random model has no outliers
