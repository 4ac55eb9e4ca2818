"""Streaming reconstruction error per site and scheme: sums, never activations.

Per site and batch the hooks add float64 sums; those of x alone once per site,
those of the error once per scheme:

    site:    finite and nonfinite element counts, zeros, sum x^2, sum |x|
    scheme:  sum (x - q)^2, sum |x - q|, saturated count, zero count of q(x)

from which the metrics follow at the end:

    SQNR dB      10 log10(sum x^2 / sum (x - q)^2)        (+inf when q(x) == x)
    rel RMSE     sqrt(sum (x - q)^2 / sum x^2)
    rel MAE      sum |x - q| / sum |x|
    clip rate    saturated / finite elements
    underflow    (x != 0 and q(x) == 0) / nonzero elements
                 = (zeros of q(x) - zeros of x) / nonzero: every format maps 0 to 0

Nonfinite inputs (inf, nan) are counted and replaced by 0 before quantizing:
one inf would make every metric of the site meaningless, and it would blow
up the dynamic scale of its whole row.
"""

from __future__ import annotations

import math

import torch

from .primitives import sqnr_db

SITE_FIELDS = ("n", "nonfinite", "zeros", "sx2", "sabs")
SCHEME_FIELDS = ("se2", "sabserr", "clipped", "qzeros")


def _rowsum(t: torch.Tensor) -> torch.Tensor:
    """Reduce per token in float32, over tokens in float64: independent of batching."""
    return t.sum(-1).double().sum()


def finite_part(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with nonfinite elements set to 0, (len(SITE_FIELDS),) float64 site sums); x (N, C) float32."""
    finite = torch.isfinite(x)
    x0 = torch.where(finite, x, 0.0)
    n_finite = finite.sum()
    sums = torch.stack(
        [
            n_finite.double(),
            (x.numel() - n_finite).double(),
            (x0 == 0).sum().double() - (x.numel() - n_finite).double(),  # finite zeros only
            _rowsum(x0 * x0),
            _rowsum(x0.abs()),
        ]
    )
    return x0, sums


def error_terms(x0: torch.Tensor, xq: torch.Tensor, clipped: torch.Tensor) -> torch.Tensor:
    """(len(SCHEME_FIELDS),) float64 sums of one scheme on one batch; x0 finite (N, C)."""
    err = x0 - xq
    return torch.stack(
        [
            torch.linalg.vector_norm(err, 2, dim=-1).double().square().sum(),
            torch.linalg.vector_norm(err, 1, dim=-1).double().sum(),
            clipped.double(),
            (xq == 0).sum().double(),
        ]
    )


class ErrorSums:
    """One site: (SITE_FIELDS,) and (schemes, SCHEME_FIELDS) float64 sums on the model's device."""

    def __init__(self, n_schemes: int, device):
        self.site = torch.zeros(len(SITE_FIELDS), dtype=torch.float64, device=device)
        self.schemes = torch.zeros(n_schemes, len(SCHEME_FIELDS), dtype=torch.float64, device=device)

    def add_site(self, x: torch.Tensor) -> torch.Tensor:
        """Count x once per batch; returns the finite x0 that every scheme quantizes."""
        x0, sums = finite_part(x)
        self.site += sums
        return x0

    def update(self, j: int, x0: torch.Tensor, xq: torch.Tensor, clipped: torch.Tensor) -> None:
        self.schemes[j] += error_terms(x0, xq, clipped)

    def merge(self, other: ErrorSums) -> None:
        self.site += other.site.to(self.site.device)
        self.schemes += other.schemes.to(self.schemes.device)

    def result(self, j: int) -> dict:
        return metrics_from_sums(self.site.cpu().tolist(), self.schemes[j].cpu().tolist())


def metrics_from_sums(site: list[float], scheme: list[float]) -> dict:
    s = dict(zip(SITE_FIELDS, site, strict=True))
    e = dict(zip(SCHEME_FIELDS, scheme, strict=True))
    n, sx2, se2 = s["n"], s["sx2"], e["se2"]
    nonzero = n - s["zeros"]
    # rounding noise can make zero counts differ by nothing else than real underflow: both exact ints
    underflow = e["qzeros"] - s["zeros"] - s["nonfinite"]  # nonfinite inputs became 0 and stay 0
    return {
        "sqnr_db": sqnr_db(sx2, se2),
        "rel_rmse": math.sqrt(se2 / sx2) if sx2 > 0 else None,
        "rel_mae": e["sabserr"] / s["sabs"] if s["sabs"] > 0 else None,
        "clip_rate": e["clipped"] / n if n else None,
        "underflow_rate": underflow / nonzero if nonzero else None,
        "elements": int(n),
        "nonfinite": int(s["nonfinite"]),
    }
