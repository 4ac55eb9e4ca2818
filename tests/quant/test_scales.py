"""Static scales: histogram percentiles within REL_ERROR of torch.quantile; MSE search; SmoothQuant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actscope.quant.formats import FP8_E4M3, INT4, INT8
from actscope.quant.primitives import amax_to_scale, fake_quantize
from actscope.quant.scales import (
    CLIP_RATIOS,
    histogram_mse,
    mse_threshold,
    percentile_threshold,
    smooth_factors,
    weight_input_amax,
)
from actscope.stats import histogram as H

QS = (0.5, 0.9, 0.99, 0.999, 0.9999)


SEEDS = {"student_t2": 0, "lognormal": 100, "massive": 200}


def heavy_tailed(kind: str, n: int = 1 << 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEEDS[kind] + seed)
    if kind == "student_t2":  # infinite variance
        z = torch.randn(n, generator=g)
        chi = torch.randn(n, 2, generator=g).square().sum(1)
        return z / (chi / 2).sqrt()
    if kind == "lognormal":
        sign = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        return sign * torch.exp(2.0 * torch.randn(n, generator=g))
    if kind == "massive":  # gaussian bulk + a few massive activations, as in the residual stream
        x = torch.randn(n, generator=g)
        x[torch.randint(0, n, (50,), generator=g)] = 3000.0
        return x
    raise AssertionError(kind)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["student_t2", "lognormal", "massive"])
def test_histogram_percentiles_within_bound_of_torch_quantile(kind, seed):
    x = heavy_tailed(kind, 1 << 18, seed)
    a = x.abs()
    hist = H.histogram(x).numpy()
    q = torch.tensor(QS, dtype=torch.float64)
    # torch.quantile interpolates between two order statistics; the histogram reads one of them.
    lo, hi, exact = (
        torch.quantile(a.double(), q, interpolation=i).tolist() for i in ("lower", "higher", "linear")
    )
    for k, qk in enumerate(QS):
        got, rel = percentile_threshold(hist, qk)
        assert rel == H.REL_ERROR
        # The bound is relative to the reported value: the exact quantile lies in got * (1 +- rel).
        # (Relative to the exact value the worst case is 2**-(MANT_BITS + 1), slightly more.)
        assert got * (1 - rel) <= hi[k] and lo[k] <= got * (1 + rel), (qk, got, lo[k], hi[k])
        assert abs(got - exact[k]) <= rel * got + (hi[k] - lo[k]), (qk, got, exact[k])


def test_percentile_of_zeros_and_empty():
    assert percentile_threshold(H.histogram(torch.zeros(10)).numpy(), 0.999)[0] == 0.0
    assert percentile_threshold(np.zeros(H.N_BINS, dtype=np.int64), 0.5)[0] == 0.0


def _exact_mse(x: torch.Tensor, fmt, thresholds) -> np.ndarray:
    out = []
    for t in thresholds:
        xq, _ = fake_quantize(x, fmt, amax_to_scale(torch.tensor(float(t)), fmt))
        out.append((x - xq).double().square().mean().item())
    return np.array(out)


@pytest.mark.parametrize("fmt", [INT8, INT4, FP8_E4M3])
@pytest.mark.parametrize("kind", ["student_t2", "massive"])
def test_histogram_mse_tracks_the_exact_error(fmt, kind):
    x = heavy_tailed(kind, 1 << 16)
    hist = H.histogram(x).numpy()
    amax = x.abs().max().item()
    ratios = CLIP_RATIOS[::8]
    est = histogram_mse(hist, fmt, amax * ratios, amax)
    exact = _exact_mse(x, fmt, amax * ratios)
    # the estimate follows the exact curve (within 10% where it matters: near the optimum)
    best = int(np.argmin(exact))
    assert abs(est[best] - exact[best]) <= 0.1 * exact[best]
    t, ratio = mse_threshold(hist, fmt, amax)
    exact_at_choice = _exact_mse(x, fmt, [t])[0]
    assert exact_at_choice <= 1.1 * exact.min()
    assert 0 < ratio <= 1


def test_mse_clip_ratio_depends_on_the_tail():
    """Student t (df 2): clipping the far tail pays; 50 massive values of 3000 in a unit
    Gaussian: clipping them costs more squared error than the rounding of the bulk."""
    t2 = heavy_tailed("student_t2", 1 << 18)
    _, ratio = mse_threshold(H.histogram(t2).numpy(), INT8, t2.abs().max().item())
    assert ratio < 1.0
    m = heavy_tailed("massive", 1 << 18)
    _, ratio = mse_threshold(H.histogram(m).numpy(), INT8, m.abs().max().item())
    assert ratio == 1.0


def test_smooth_factors_hand_case():
    s = smooth_factors(torch.tensor([4.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 4.0]), 0.5)
    assert torch.allclose(s, torch.tensor([2.0, (1e-5) ** 0.5, 0.5]))


def test_weight_input_amax_over_modules_sharing_an_input():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 4)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, -5.0, 0.0], [2.0, 0.0, 0.0]]))
        b.weight.zero_()
        b.weight[0, 2] = -3.0
    assert weight_input_amax([a, b]).tolist() == [2.0, 5.0, 3.0]
