"""Streaming reconstruction error per site and scheme: sums, never activations.

For every (site, scheme) the hooks add, per batch, float64 sums of

    x^2, (x - q(x))^2, |x|, |x - q(x)|, counts of finite, nonfinite,
    saturated and underflowed (x != 0, q(x) == 0) elements

from which the metrics follow at the end:

    SQNR dB      10 log10(sum x^2 / sum (x - q)^2)        (+inf when q(x) == x)
    rel RMSE     sqrt(sum (x - q)^2 / sum x^2)
    rel MAE      sum |x - q| / sum |x|
    clip rate    saturated / finite elements
    underflow    (x != 0 and q(x) == 0) / finite nonzero elements

Nonfinite inputs (inf, nan) are counted and left out of the sums: one inf
would make every metric of the site meaningless.
"""

from __future__ import annotations

import math

import torch

from .primitives import sqnr_db

FIELDS = ("n", "nonfinite", "nonzero", "sx2", "se2", "sabs", "sabserr", "clipped", "underflow")
_IDX = {f: i for i, f in enumerate(FIELDS)}


def error_terms(x: torch.Tensor, xq: torch.Tensor, clipped: torch.Tensor) -> torch.Tensor:
    """(len(FIELDS),) float64 sums for one batch of one site and scheme; x, xq (N, C) float32.

    Sums are reduced per token in float32 and over tokens in float64, so they
    do not depend on how the tokens were batched beyond float32 rounding of a row.
    """
    finite = torch.isfinite(x)
    x0 = torch.where(finite, x, 0.0)
    err = torch.where(finite, x - xq, 0.0)
    err = torch.nan_to_num(err, nan=0.0)  # xq is nan only where a row held nan (dynamic scales)

    def total(t: torch.Tensor) -> torch.Tensor:
        return t.sum(-1).double().sum()

    nonzero = x0 != 0
    return torch.stack(
        [
            finite.sum().double(),
            (~finite).sum().double(),
            nonzero.sum().double(),
            total(x0.square()),
            total(err.square()),
            total(x0.abs()),
            total(err.abs()),
            clipped.double(),
            (nonzero & (xq == 0)).sum().double(),
        ]
    )


class ErrorSums:
    """(schemes, FIELDS) float64 sums for one site, on the model's device."""

    def __init__(self, n_schemes: int, device):
        self.sums = torch.zeros(n_schemes, len(FIELDS), dtype=torch.float64, device=device)

    def update(self, j: int, x: torch.Tensor, xq: torch.Tensor, clipped: torch.Tensor) -> None:
        self.sums[j] += error_terms(x, xq, clipped)

    def merge(self, other: ErrorSums) -> None:
        self.sums += other.sums.to(self.sums.device)

    def result(self, j: int) -> dict:
        return metrics_from_sums(self.sums[j].cpu().tolist())


def metrics_from_sums(s: list[float]) -> dict:
    g = {f: s[i] for f, i in _IDX.items()}
    sx2, se2 = g["sx2"], g["se2"]
    n = g["n"]
    return {
        "sqnr_db": sqnr_db(sx2, se2),
        "rel_rmse": math.sqrt(se2 / sx2) if sx2 > 0 else None,
        "rel_mae": g["sabserr"] / g["sabs"] if g["sabs"] > 0 else None,
        "clip_rate": g["clipped"] / n if n else None,
        "underflow_rate": g["underflow"] / g["nonzero"] if g["nonzero"] else None,
        "elements": int(n),
        "nonfinite": int(g["nonfinite"]),
    }
