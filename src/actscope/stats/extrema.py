"""Counts, finite min/max, per-channel max|a| and per-channel non-finite counts.

Over the finite elements: a nan or inf is counted (here per channel, by the histogram
per site) and enters no extreme, and the finite elements of its token still do
(kernels.py states the one rule for all statistics). So max(ch_absmax) is the site's
max|a|, whatever the batching.
"""

from __future__ import annotations

import math

import torch

from .base import SiteView, Statistic


class Extrema(Statistic):
    name = "extrema"
    merge_rules = {
        "elements": "sum",
        "tokens": "sum",
        "min": "min",
        "max": "max",
        "ch_absmax": "max",
        "ch_nonfinite": "sum",
    }
    native_slots = {f: f for f in merge_rules}
    columns = {
        "elements": "int64",
        "tokens": "int64",
        "channels": "int64",
        "min": "float64",
        "max": "float64",
        "absmax": "float64",
        "absmax_signed": "float64",
        "zero_channels": "int64",
        "nonfinite_channels": "int64",
    }
    channel_columns = {"absmax": "float64", "nonfinite": "int64"}

    def __init__(self, channels, n_samples, device):
        super().__init__(channels, n_samples, device)
        z = dict(device=device)
        self.elements = torch.zeros((), dtype=torch.int64, **z)
        self.tokens = torch.zeros((), dtype=torch.int64, **z)
        self.min = torch.full((), math.inf, dtype=torch.float64, **z)
        self.max = torch.full((), -math.inf, dtype=torch.float64, **z)
        self.ch_absmax = torch.zeros(channels, dtype=torch.float32, **z)
        self.ch_nonfinite = torch.zeros(channels, dtype=torch.int64, **z)

    def update(self, v: SiteView) -> None:
        p = v.p
        n, c = v.ctx.n_rows, v.full.shape[1]
        self.elements += n * c
        self.tokens += n
        self.min = torch.minimum(self.min, p.finite_min)  # finite elements only (module doc)
        self.max = torch.maximum(self.max, p.finite_max)
        self.ch_absmax = torch.maximum(self.ch_absmax, p.ch_max)
        self.ch_nonfinite += p.ch_nonfinite

    def result(self) -> dict:
        mn, mx = float(self.min), float(self.max)
        finite = math.isfinite(mn) and math.isfinite(mx)
        absmax = max(abs(mn), abs(mx)) if finite else None
        signed = (mx if abs(mx) >= abs(mn) else mn) if finite else None
        return {
            "elements": int(self.elements),
            "tokens": int(self.tokens),
            "channels": self.channels,
            "min": mn if finite else None,
            "max": mx if finite else None,
            "absmax": absmax,
            "absmax_signed": signed,
            # Channels exactly 0 on every token: dead units; at an MoE routing site
            # (layers.i.mlp.experts.routed.in), experts that received no tokens.
            "zero_channels": int((self.ch_absmax == 0).sum()) if int(self.tokens) else None,
            "nonfinite_channels": int((self.ch_nonfinite > 0).sum()),  # channels that saw nan or inf
        }

    def channel_result(self, site: dict) -> dict:
        return {"absmax": self.ch_absmax.cpu().double().numpy(), "nonfinite": self.ch_nonfinite.cpu().numpy()}
