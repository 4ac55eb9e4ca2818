"""Per-domain counts of a corpus: samples, characters and (with a tokenizer) tokens."""

from __future__ import annotations

from dataclasses import dataclass

from .types import Corpus


@dataclass
class DomainStats:
    domain: str
    samples: int = 0
    chars: int = 0
    tokens: int | None = None  # None without a tokenizer
    max_tokens: int | None = None


def domain_stats(corpus: Corpus, tokenizer=None, batch: int = 64) -> list[DomainStats]:
    """One row per domain in order of first appearance; tokens counted without special tokens."""
    rows: dict[str, DomainStats] = {}
    for s in corpus.samples:
        row = rows.setdefault(s.domain, DomainStats(s.domain))
        row.samples += 1
        row.chars += len(s.text)
    if tokenizer is not None:
        for row in rows.values():
            row.tokens, row.max_tokens = 0, 0
        samples = corpus.samples
        for i in range(0, len(samples), batch):
            chunk = samples[i : i + batch]
            ids = tokenizer([s.text for s in chunk], add_special_tokens=False)["input_ids"]
            for s, seq in zip(chunk, ids, strict=True):
                row = rows[s.domain]
                row.tokens += len(seq)
                row.max_tokens = max(row.max_tokens, len(seq))
    return list(rows.values())
