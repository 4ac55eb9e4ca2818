"""Mean, std, rms and excess kurtosis from mergeable central moments; per-channel sums.

The state is (count, mean, M2, M3, M4), M_p = sum (a - mean)^p over the finite
elements, in float64. A batch's moments come from per-row central moments
(kernels.row_moments, native.c row_sums: powers of a - K with K inside the row,
so a mean of 1000 with sd 0.1 loses nothing to cancellation and a constant
tensor has M2 exactly 0); batches, ranks and shards combine by the parallel
formulas of Chan et al. (1979) and Pebay (2008) (`merge_moments`). Raw power sums
would not do: sum a^4 - 4 mu sum a^3 + ... cancels catastrophically once the mean
is large against the spread (excess kurtosis -51.6 for mean 1000, sd 0.1).

Per-channel sums of a and a^2 (float64, exact terms) stay plain sums: the
per-channel mean and rms, the imatrix's sum x^2 and expert loads read them.
"""

from __future__ import annotations

import math

import torch

from .base import SiteView, Statistic


def merge_moments(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(5,) moments of the union of two sets from theirs (count, mean, M2, M3, M4); no host sync.

    native.c moments_merge is the same formula. A difference of means of 0 adds
    nothing, so equal constants merge to M2 = 0 exactly.
    """
    na, nb = a[0], b[0]
    n = na + nb
    d = b[1] - a[1]
    dn = d / n.clamp(min=1)
    dn2 = dn * dn
    t = d * dn * na * nb
    m2 = a[2] + b[2] + t
    m3 = a[3] + b[3] + t * dn * (na - nb) + 3 * dn * (na * b[2] - nb * a[2])
    m4 = (
        a[4]
        + b[4]
        + t * dn2 * (na * na - na * nb + nb * nb)
        + 6 * dn2 * (na * na * b[2] + nb * nb * a[2])
        + 4 * dn * (na * b[3] - nb * a[3])
    )
    both = torch.stack([n, a[1] + nb * dn, m2, m3, m4])
    return torch.where(nb == 0, a, torch.where(na == 0, b, both))


class Moments(Statistic):
    name = "moments"
    merge_rules = {"cm": "moments", "ch_s1": "sum", "ch_s2": "sum"}  # "moments": merge_moments
    native_slots = {"cm": "moments", "ch_s1": "ch_s1", "ch_s2": "ch_s2"}
    columns = {"mean": "float64", "std": "float64", "rms": "float64", "kurtosis": "float64"}
    channel_columns = {"mean": "float64", "rms": "float64", "sum_sq": "float64"}

    def __init__(self, channels, n_samples, device):
        super().__init__(channels, n_samples, device)
        f64 = dict(dtype=torch.float64, device=device)
        self.cm = torch.zeros(5, **f64)  # count, mean, M2, M3, M4 of the finite elements
        self.ch_s1 = torch.zeros(channels, **f64)
        self.ch_s2 = torch.zeros(channels, **f64)

    def update(self, v: SiteView) -> None:
        p = v.p
        self.cm = merge_moments(self.cm, p.mom)
        self.ch_s1 += p.ch_s1
        self.ch_s2 += p.ch_s2

    def merge(self, other: Statistic) -> None:
        assert isinstance(other, Moments)
        self.cm = merge_moments(self.cm, other.cm.to(self.device))
        self.ch_s1 = self.ch_s1 + other.ch_s1.to(self.device)
        self.ch_s2 = self.ch_s2 + other.ch_s2.to(self.device)

    def result(self) -> dict:
        """Over the finite elements (nan and inf are counted by the histogram); kurtosis
        None where the variance is 0 (a constant tensor), rather than 0 / 0."""
        n, mean, m2, _, m4 = self.cm.tolist()
        if n == 0:
            return {"mean": None, "std": None, "rms": None, "kurtosis": None}
        var = max(m2, 0.0) / n
        kurt = n * m4 / (m2 * m2) - 3.0 if m2 > 0 else None
        return {"mean": mean, "std": math.sqrt(var), "rms": math.sqrt(var + mean * mean), "kurtosis": kurt}

    def channel_result(self, site: dict) -> dict:
        """Per-channel mean and rms over the channel's finite values (the site's tokens less the
        channel's nonfinite count, from the extrema before it), and sum x^2 of the finite values."""
        nonfinite = site.get("channel_nonfinite")
        n = torch.full((self.channels,), int(site["tokens"]), dtype=torch.float64)
        if nonfinite is not None:
            n -= torch.from_numpy(nonfinite).double()
        n = n.clamp(min=1)
        s1, s2 = self.ch_s1.cpu(), self.ch_s2.cpu()
        return {"mean": (s1 / n).numpy(), "rms": (s2 / n).sqrt().numpy(), "sum_sq": s2.numpy()}
