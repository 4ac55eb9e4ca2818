"""Reading the log histogram: quantiles at both ends of float32, the inverted CDF, fractions
above thresholds with nan and inf (issue 14, items 7 and 11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actscope.limits import FP16_MAX, FP16_OVERFLOW
from actscope.stats import histogram as H
from actscope.stats.distribution import Histogram

NAN, INF = float("nan"), float("inf")


def test_fraction_above_counts_inf_but_not_nan():
    x = torch.tensor([1.0, 7.0, NAN, NAN, INF, -INF, -8.0, 2.0])
    h = Histogram(1, 1, "cpu")
    h.hist = H.histogram(x)
    r = h.result()
    assert r["frac_ge_6"] == 4 / 8  # 7, -8, +-inf; a nan is >= nothing, as (x.abs() >= 6).mean() says
    assert r["frac_ge_6"] == float((x.abs() >= 6).float().mean())


def test_quantiles_hold_their_bound_at_both_ends_of_float32():
    """Subnormals: within ABS_ERROR (absolute). The top float32 bin's upper edge was inf, so
    its quantiles read as inf; now within REL_ERROR like every normal bin."""
    g = torch.Generator().manual_seed(5)
    parts = [
        torch.tensor([0.0, 1e-45, 1e-42, 1e-40, 2.5e-39, 1.1e-38]),  # zero, subnormals
        torch.exp(torch.randn(2000, generator=g) * 20).clamp(max=1e30),
        torch.tensor([3.35e38, 3.38e38, 3.4028235e38, -3.39e38]),  # the top finite bin
    ]
    x = torch.cat(parts)
    a = np.sort(np.abs(x.numpy()).astype(np.float64))
    qs = [0.0001, 0.001, 0.003, 0.5, 0.9, 0.999, 0.9995, 1.0]
    got = H.quantiles(H.histogram(x).numpy(), qs)
    for q, v in zip(qs, got):
        true = float(np.quantile(a, q, method="inverted_cdf"))  # the order statistic counted to
        assert math.isfinite(v)
        assert abs(v - true) <= max(H.REL_ERROR * true, H.ABS_ERROR), (q, v, true)
    assert H.UPPER[H.INF_BIN - 1] == 2.0**128 and H.EDGES[H.INF_BIN] == math.inf  # the inf bin's lower edge


def test_quantiles_are_of_the_inverted_cdf():
    """Lower median of an even count; the k-th smallest for k = ceil(q n)."""
    x = torch.tensor([1.0, 2.0, 4.0, 8.0])
    h = H.histogram(x).numpy()
    assert H.quantiles(h, [0.5, 0.75, 0.76, 1.0]) == [
        pytest.approx(v, rel=H.REL_ERROR) for v in (2.0, 4.0, 8.0, 8.0)
    ]


def test_fp16_limits():
    """65,504 is float16's largest finite value and fits; overflow starts at 65,520."""
    x = torch.tensor([FP16_MAX, np.nextafter(np.float32(FP16_OVERFLOW), np.float32(0)), FP16_OVERFLOW])
    assert x.half().tolist() == [65504.0, 65504.0, INF]
