"""fp64 sums of x, x^2, x^3, x^4 -> mean, std, rms, excess kurtosis; per-channel sums.

All sums are float64 (kernels.py): x^2 of a float is exact in float64, and
per-token partials do not depend on how tokens were batched, so padded,
sharded and distributed runs agree to ~1e-15 relative.
"""

from __future__ import annotations

import math

import torch

from .base import SiteView, Statistic


class Moments(Statistic):
    name = "moments"
    merge_rules = {
        "n": "sum",
        "s1": "sum",
        "s2": "sum",
        "s3": "sum",
        "s4": "sum",
        "ch_s1": "sum",
        "ch_s2": "sum",
    }
    native_slots = {"n": "elements", **{f: f for f in ("s1", "s2", "s3", "s4", "ch_s1", "ch_s2")}}
    columns = {"mean": "float64", "std": "float64", "rms": "float64", "kurtosis": "float64"}
    channel_columns = {"mean": "float64", "rms": "float64", "sum_sq": "float64"}

    def __init__(self, channels, n_samples, device):
        super().__init__(channels, n_samples, device)
        f64 = dict(dtype=torch.float64, device=device)
        self.n = torch.zeros((), dtype=torch.int64, device=device)
        self.s1 = torch.zeros((), **f64)
        self.s2 = torch.zeros((), **f64)
        self.s3 = torch.zeros((), **f64)
        self.s4 = torch.zeros((), **f64)
        self.ch_s1 = torch.zeros(channels, **f64)
        self.ch_s2 = torch.zeros(channels, **f64)

    def update(self, v: SiteView) -> None:
        p = v.p
        self.n += v.ctx.n_rows * v.full.shape[1]
        torch._foreach_add_([self.s1, self.s2, self.s3, self.s4], list(p.sd[2:].unbind()))
        self.ch_s1 += p.ch_s1
        self.ch_s2 += p.ch_s2

    def result(self) -> dict:
        n = int(self.n)
        s = [float(t) for t in (self.s1, self.s2, self.s3, self.s4)]
        if n == 0 or not all(math.isfinite(t) for t in s):
            return {"mean": None, "std": None, "rms": None, "kurtosis": None}
        mu, m2, m3, m4 = s[0] / n, s[1] / n, s[2] / n, s[3] / n
        var = max(m2 - mu * mu, 0.0)
        # Central 4th moment from raw moments: E[(x-mu)^4] = m4 - 4 mu m3 + 6 mu^2 m2 - 3 mu^4.
        c4 = m4 - 4 * mu * m3 + 6 * mu * mu * m2 - 3 * mu**4
        kurt = c4 / var**2 - 3.0 if var > 0 else None
        return {"mean": mu, "std": math.sqrt(var), "rms": math.sqrt(m2), "kurtosis": kurt}

    def channel_result(self) -> dict:
        """Per-channel mean and rms over the site's real tokens (n / C of them), and sum x^2."""
        tokens = max(int(self.n) // max(self.channels, 1), 1)
        s1, s2 = self.ch_s1.cpu(), self.ch_s2.cpu()
        return {"mean": (s1 / tokens).numpy(), "rms": (s2 / tokens).sqrt().numpy(), "sum_sq": s2.numpy()}
