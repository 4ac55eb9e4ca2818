"""The |a| distribution: a log-binned histogram from the float bits (histogram.py)."""

from __future__ import annotations

import torch

from ..limits import FP8_E4M3_MAX, FP8_E5M2_MAX, FP16_MAX
from . import histogram as H
from .base import SiteView, Statistic

QUANTILES = (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999)
# Outlier (LLM.int8), massive (Sun et al.), FP8 E4M3 and E5M2 maxima, fp16's largest finite
# value. frac_ge_65504 is an upper bound on what overflows fp16: the histogram bin holding
# 65,504 is [64,512, 65,536) (the others are bin edges, their fractions exact); the exact
# test is the site's max|a| against limits.FP16_OVERFLOW.
THRESHOLDS = (6.0, 100.0, FP8_E4M3_MAX, FP8_E5M2_MAX, FP16_MAX)


class Histogram(Statistic):
    name = "histogram"
    merge_rules = {"hist": "sum"}
    native_slots = {"hist": "hist"}
    columns = {
        **{f"q{q:g}": "float64" for q in QUANTILES},
        **dict.fromkeys(("posinf", "neginf", "nan"), "int64"),
        **{f"frac_ge_{t:g}": "float64" for t in THRESHOLDS},
    }
    table = "hist"

    def __init__(self, channels, n_samples, device):
        super().__init__(channels, n_samples, device)
        self.hist = torch.zeros(H.N_BINS, dtype=torch.int64, device=device)

    def update(self, v: SiteView) -> None:
        self.hist += v.p.hist

    def result(self) -> dict:
        h = self.hist.cpu().numpy()
        out = {f"q{q:g}": val for q, val in zip(QUANTILES, H.quantiles(h, QUANTILES))}
        out.update(H.nonfinite_counts(h))
        for t, (_lo, hi) in H.fraction_above(h, THRESHOLDS).items():
            # upper bound (exact at bin edges); inf counts as >= t, nan does not
            out[f"frac_ge_{t:g}"] = hi
        return out

    def table_data(self):
        """The (N_BINS,) int64 signed histogram."""
        return self.hist.cpu().numpy()
