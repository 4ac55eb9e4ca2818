"""Headline numbers against brute force: the layer-median massive bracket, LLM.int8 outlier features."""

from __future__ import annotations

import math

import pytest
import torch

from actscope.config import MeasureConfig
from actscope.rundir import RunView
from actscope.runner import measure
from actscope.stats import histogram as H
from actscope.summary import massive_bracket
from tinylm import TEXTS, tiny_loaded


def true_layer_median_count(x: torch.Tensor) -> int:
    """Elements with |a| > 100 and |a| >= 1000 x the lower median |a| of the finite values."""
    a = x.abs()[torch.isfinite(x)].double().sort().values
    med = a[math.ceil(a.numel() / 2) - 1]
    return int(((a > 100) & (a >= 1000 * med)).sum())


def case(median: float, extra: list[float], n: int = 2001, seed: int = 0) -> torch.Tensor:
    """n values around `median` (half below, half above, one exactly at it) plus `extra` big ones,
    balanced by as many zeros, so that the lower median is exactly `median`."""
    g = torch.Generator().manual_seed(seed)
    half = (n - 1) // 2
    lo = median * torch.rand(half, generator=g)
    hi = median * (1 + torch.rand(half, generator=g))
    zeros = torch.zeros(sum(1 for v in extra if math.isfinite(v)))
    return torch.cat([zeros, lo, torch.tensor([median]), hi, torch.tensor(extra)]).float()


CASES = {
    # the median on a bin edge (0.125 = 2**-3) with elements exactly at 1000 x median and at 100
    "edge-median": case(0.125, [125.0] * 7 + [100.0] * 5 + [124.99, 125.01, 3000.0]),
    # a median of 0.1 (1000 x median is 100: both conditions meet at one value)
    "median-0.1": case(0.1, [100.0] * 9 + [100.0001, 99.99, 250.0]),
    # elements exactly 100 only: > 100 fails for all of them
    "exactly-100": case(0.01, [100.0] * 11),
    # a tiny median: 100 decides; nonfinite values never count
    "tiny-median": case(1e-4, [100.0, 100.01, float("inf"), float("nan"), 5e4]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_median_bracket_holds_the_truth(name):
    x = CASES[name]
    lo, hi = massive_bracket(H.histogram(x).numpy())
    truth = true_layer_median_count(x)
    assert lo <= truth <= hi, (lo, truth, hi)


def test_outlier_feature_through_the_norm_output(tmp_path):
    """A norm weight that lifts one channel above 6 on most tokens: that channel is an outlier
    feature of the q/k/v and gate/up inputs (aliases of the norm outputs under the default sites)."""
    loaded = tiny_loaded("llama", seed=1)
    with torch.no_grad():
        for layer in loaded.model.model.layers:
            layer.input_layernorm.weight[17] = 40.0
    corpus_texts = TEXTS * 2
    from actscope.corpus import Corpus, Sample

    corpus = Corpus("t", tuple(Sample(f"s{i}", "d", "t", t) for i, t in enumerate(corpus_texts)))
    run = RunView(
        measure(MeasureConfig(out=str(tmp_path / "r"), progress=False), loaded=loaded, corpus=corpus)
    )
    of = run.summary["outlier_features"]
    assert 17 in of["channels"]
    assert of["layers"]["17"] == 2  # both layers (JSON keys are strings)
