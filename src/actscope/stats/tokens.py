"""Per-token and per-sample statistics: massive activations, outlier channels, sample maxima.

Massive activation (Sun et al. 2024): |a| > 100 and |a| >= 1000 x median |a| of
"its hidden state". Which median is a choice, and three are in use
(docs/statistics.md):

- per token (this statistic, exact): the lower median of |a| over the C channels
  of the token's vector at the site;
- per sequence and layer: Sun et al.'s released code (locuslab/massive-activations,
  main_llm.py) takes torch.median of |a| over the whole decoder-layer output of one
  sequence, every token and channel. actscope does not compute this one;
- per site over the whole run (the summary's `layer_median`): the median |a| of every
  element the site produced, from the histogram, so bracketed rather than exact.

The counts here are per site: `massive_tokens` is the number of tokens holding a
massive element at this site, so a sum over sites counts (token, site) pairs. A
token holding a non-finite element is not tested (kernels.py).

The test is exact: 1000 x median <= a is decided in float64, where 1000 x a float32
is exact (kernels.ratio_floor / ratio_ceil), not as a float32 product that can round
onto a (1000 x 0.2f > 200, yet the float32 product is 200).

The per-token median costs a sort, so it is computed only where the test can
pass. A token can hold a massive activation only if its max|a| > 100 and its
(lower) median <= max|a| / 1000, i.e. at least (C-1)//2 + 1 of its elements are
<= max|a| / 1000 (exactly: ratio_floor): one comparison pass finds these tokens.
The native CPU kernel then tests every element > 100 of every such token (in
practice BOS and a few delimiter tokens) by counting (native.c); the torch
implementation takes the medians of up to CANDIDATES of them per batch and
counts any beyond in `unchecked_tokens`: when that is non-zero the counts are
lower bounds and the output says so.
"""

from __future__ import annotations

import torch

from .base import SiteView, Statistic


class Massive(Statistic):
    name = "massive"
    merge_rules = {
        "massive_elements": "sum",
        "massive_tokens": "sum",
        "tokens_over_100": "sum",
        "unchecked_tokens": "sum",
        "ch_massive": "sum",
        "ch_ge6": "sum",
    }
    native_slots = {f: f for f in merge_rules}
    columns = {
        "massive_elements": "int64",
        "massive_tokens": "int64",
        "massive_lower_bound": "bool",
        "tokens_over_100": "int64",
    }
    channel_columns = {"massive": "int64", "ge6": "int64"}

    def __init__(self, channels, n_samples, device):
        super().__init__(channels, n_samples, device)
        i64 = dict(dtype=torch.int64, device=device)
        self.massive_elements = torch.zeros((), **i64)
        self.massive_tokens = torch.zeros((), **i64)
        self.tokens_over_100 = torch.zeros((), **i64)
        self.unchecked_tokens = torch.zeros((), **i64)
        self.ch_massive = torch.zeros(channels, **i64)  # massive elements per channel
        self.ch_ge6 = torch.zeros(channels, **i64)  # tokens with |a| >= 6 per channel

    def update(self, v: SiteView) -> None:
        p = v.p
        self.tokens_over_100 += p.rows_over_100
        self.massive_elements += p.massive_elements
        self.massive_tokens += p.massive_rows
        self.unchecked_tokens += p.unchecked_rows
        self.ch_massive += p.ch_massive
        self.ch_ge6 += p.ch_ge6

    def result(self) -> dict:
        return {
            "massive_elements": int(self.massive_elements),
            "massive_tokens": int(self.massive_tokens),
            "massive_lower_bound": bool(int(self.unchecked_tokens) > 0),
            "tokens_over_100": int(self.tokens_over_100),
        }

    def channel_result(self, site: dict) -> dict:
        return {"massive": self.ch_massive.cpu().numpy(), "ge6": self.ch_ge6.cpu().numpy()}


class SampleMax(Statistic):
    """max|a| of every corpus sample at this site: per-domain maxima and bootstrap
    intervals of M are computed from these, without re-running the model."""

    name = "samples"
    merge_rules = {"smax": "max"}
    native_slots = {"smax": "sample_max"}
    table = "samples"

    def __init__(self, channels, n_samples, device):
        super().__init__(channels, n_samples, device)
        self.smax = torch.full((n_samples,), -1.0, device=device)  # -1: sample not seen

    def update(self, v: SiteView) -> None:
        self.smax.scatter_reduce_(0, v.ctx.sample, v.tok_abs, reduce="amax")

    def table_data(self):
        """(n_samples,) float32 max|a| per sample, -1 where the sample was not measured."""
        return self.smax.cpu().numpy()
