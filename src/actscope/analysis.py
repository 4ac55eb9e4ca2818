"""Answers computed from per-sample maxima, without re-running the model:
per-domain peaks and bootstrap intervals of M for subsample sizes."""

from __future__ import annotations

import numpy as np


def domain_maxima(sample_max: np.ndarray, domains: list[str]) -> dict[str, float]:
    """sample_max: (n_samples,) max|a| per sample (-1 = not measured)."""
    out: dict[str, float] = {}
    for d in sorted(set(domains)):
        vals = sample_max[[i for i, x in enumerate(domains) if x == d]]
        vals = vals[vals >= 0]
        if vals.size:
            out[d] = float(vals.max())
    return out


def bootstrap_m(sample_max: np.ndarray, sizes, resamples: int = 1000, seed: int = 0) -> list[dict]:
    """For each subsample size n: the distribution of M over `resamples` random
    subsets of n measured samples (drawn without replacement), as a 95% interval.

    This is what the paper estimated by re-running the model on 1k and 2k subsets.
    """
    vals = sample_max[sample_max >= 0]
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        if n < 1 or n > vals.size:
            continue
        # argpartition of random keys draws n distinct samples per resample, vectorised.
        keys = rng.random((resamples, vals.size))
        idx = np.argpartition(keys, n - 1, axis=1)[:, :n]
        ms = vals[idx].max(axis=1)
        out.append(
            {
                "n": int(n),
                "resamples": resamples,
                "lo95": float(np.quantile(ms, 0.025)),
                "median": float(np.median(ms)),
                "hi95": float(np.quantile(ms, 0.975)),
                "p_reach_full_M": float(np.mean(ms >= vals.max())),
            }
        )
    return out


def bootstrap_sizes(n_samples: int) -> list[int]:
    """The paper's 1,000 and 2,000 when the corpus allows; otherwise 20% and 50%."""
    if n_samples >= 4000:
        return [1000, 2000]
    return sorted({max(1, n_samples // 5), max(1, n_samples // 2)})
