"""Calibration and evaluation splits of a corpus, disjoint by sample.

Scales are fitted on one split and judged on the other, so a percentile or
clip ratio that merely memorised the calibration tokens shows up as clipping.
Samples with identical text are kept on the same side (a duplicate on both
sides would leak), windows of one long sample never straddle the split
(splitting happens before tokenization), and every domain is spread over both
splits (round-robin over domains after a seeded shuffle).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from ..corpus import Corpus
from ..errors import UserError


@dataclass(frozen=True)
class Split:
    calibration: tuple[int, ...]  # corpus sample indices
    evaluation: tuple[int, ...]


def split_corpus(corpus: Corpus, n_calib: int, n_eval: int, seed: int = 0) -> Split:
    """Pick n_calib and n_eval samples, disjoint, domains interleaved, deterministic for a seed."""
    if n_calib < 1 or n_eval < 1:
        raise UserError(
            f"--calib {n_calib} / --eval {n_eval} must both be at least 1", "give positive sample counts"
        )
    groups = _text_groups(corpus)  # [[sample index, ...] per distinct text]
    if n_calib + n_eval > len(corpus):
        raise UserError(
            f"--calib {n_calib} + --eval {n_eval} exceeds the corpus's {len(corpus)} samples",
            "lower the counts or use a larger corpus (--corpus standard)",
        )
    order = _interleaved(groups, corpus, seed)
    calib: list[int] = []
    evals: list[int] = []
    for g in order:  # whole text groups go to one side
        if len(calib) < n_calib:
            calib.extend(g)
        elif len(evals) < n_eval:
            evals.extend(g)
    calib, evals = calib[:n_calib], evals[:n_eval]
    if len(evals) < n_eval:
        raise UserError(
            f"only {len(evals)} distinct evaluation samples remain after {n_calib} calibration samples",
            "lower --calib or --eval (duplicate texts stay on one side)",
        )
    assert not set(calib) & set(evals)
    return Split(tuple(sorted(calib)), tuple(sorted(evals)))


def subset(corpus: Corpus, indices) -> Corpus:
    samples = tuple(corpus.samples[i] for i in indices)
    return Corpus(corpus.name, samples, dict(corpus.manifest, subset=len(samples)))


def _text_groups(corpus: Corpus) -> list[list[int]]:
    by_text: dict[str, list[int]] = {}
    for i, s in enumerate(corpus.samples):
        by_text.setdefault(hashlib.sha256(s.text.encode()).hexdigest(), []).append(i)
    return list(by_text.values())


def _interleaved(groups: list[list[int]], corpus: Corpus, seed: int) -> list[list[int]]:
    """Shuffle groups, then take one group per domain in turn, so both splits see every domain."""
    rng = random.Random(seed)
    groups = list(groups)
    rng.shuffle(groups)
    by_domain: dict[str, list[list[int]]] = {}
    for g in groups:
        by_domain.setdefault(corpus.samples[g[0]].domain, []).append(g)
    queues = [by_domain[d] for d in sorted(by_domain)]
    out: list[list[int]] = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out
