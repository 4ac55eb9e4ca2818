"""From documents to ranked candidates to balanced, nested profiles. Pure functions, no I/O.

Every source ranks its candidates with an RNG seeded by "seed:domain:source";
candidates of one document are spread out (rank key = (chunk k, document
position)), so the first N of a source cover as many documents as possible.
A domain's pool interleaves its sources by weight, with a long sample
(2,048-4,096 tokens) in every LONG_EVERY-th slot while long ones last. A
profile takes the first q_d of each domain's pool; when a domain runs short its
share passes to the others, so the full profile always has N samples.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from .doc import Doc
from .spec import DOMAINS, SourceSpec
from .text import (
    LONG_KEEP,
    LONG_MIN,
    SHORT_MAX,
    SHORT_MIN,
    chunk_long,
    chunk_short,
    est_tokens,
    letter_ratio,
    normalise,
)

LONG_EVERY = 16  # ~6% of each domain's samples are long documents
MIN_LETTERS = 0.6
QUICK_TOKENS = (100, 300)  # quick samples are short so `make run` stays fast on a CPU


@dataclass(frozen=True)
class Candidate:
    id: str
    domain: str
    source: str
    text: str
    license: str

    @property
    def tokens(self) -> int:
        return est_tokens(self.text)

    @property
    def long(self) -> bool:
        return self.tokens >= LONG_MIN

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.text.encode()).hexdigest()


def rank_source(spec: SourceSpec, docs: Iterable[Doc], seed: int) -> tuple[list[Candidate], list[Candidate]]:
    """(short, long) candidates of one source, each in rank order."""
    rng = random.Random(f"{seed}:{spec.domain}:{spec.name}")
    docs = list(docs)
    rng.shuffle(docs)
    short: list[tuple[int, int, Candidate]] = []
    long: list[tuple[int, int, Candidate]] = []
    long_left = spec.long_docs
    for pos, doc in enumerate(docs):
        text = normalise(doc.text, code=spec.code)
        n = est_tokens(text)
        make = _candidate_factory(spec, doc)
        if spec.whole:
            if SHORT_MIN <= n <= SHORT_MAX and _keep(spec, text):
                short.append((0, pos, make(text, "0")))
            elif LONG_KEEP[0] <= n <= LONG_KEEP[1] and long_left > 0 and _keep(spec, text):
                long.append((0, pos, make(text, "0")))
                long_left -= 1
            continue
        if long_left > 0 and n >= LONG_MIN:
            chunks = [c for c in chunk_long(text, code=spec.code) if _keep(spec, c)]
            if chunks:
                long_left -= 1
                long += [(k, pos, make(c, f"L{k}")) for k, c in enumerate(chunks)]
                continue
        chunks = chunk_short(text, rng, code=spec.code)
        order = list(range(len(chunks)))
        rng.shuffle(order)  # which chunk of a document comes first is random, not always its opening
        short += [(r, pos, make(chunks[k], str(k))) for r, k in enumerate(order) if _keep(spec, chunks[k])]
    return [c for *_, c in sorted(short, key=lambda t: t[:2])], [
        c for *_, c in sorted(long, key=lambda t: t[:2])
    ]


def _candidate_factory(spec: SourceSpec, doc: Doc):
    def make(text: str, part: str) -> Candidate:
        return Candidate(
            f"{spec.name}/{doc.id}/{part}", spec.domain, spec.name, text, doc.license or spec.license
        )

    return make


def _keep(spec: SourceSpec, text: str) -> bool:
    return not spec.letters or letter_ratio(text) >= MIN_LETTERS


def interleave(lists: list[list[Candidate]], weights: list[float]) -> list[Candidate]:
    """Smooth weighted round-robin: each list gets its weight's share while it has items left."""
    pos = [0] * len(lists)
    credit = [0.0] * len(lists)
    out: list[Candidate] = []
    while True:
        active = [i for i in range(len(lists)) if pos[i] < len(lists[i])]
        if not active:
            return out
        for i in active:
            credit[i] += weights[i]
        pick = max(active, key=lambda i: (credit[i], -i))
        credit[pick] -= sum(weights[i] for i in active)
        out.append(lists[pick][pos[pick]])
        pos[pick] += 1


def domain_pool(short: list[Candidate], long: list[Candidate]) -> list[Candidate]:
    """Short candidates with a long one in every LONG_EVERY-th slot while long ones last."""
    out: list[Candidate] = []
    s = ln = 0
    while s < len(short) or ln < len(long):
        want_long = (len(out) % LONG_EVERY == LONG_EVERY - 1) or s >= len(short)
        if want_long and ln < len(long):
            out.append(long[ln])
            ln += 1
        else:
            out.append(short[s])
            s += 1
    return out


def dedupe(pools: dict[str, list[Candidate]]) -> dict[str, list[Candidate]]:
    """Drop repeated texts (boilerplate licenses, duplicate mails); the best-ranked copy stays."""
    seen: set[str] = set()
    out: dict[str, list[Candidate]] = {}
    for d in sorted(pools, key=_domain_order):
        out[d] = []
        for c in pools[d]:
            if c.sha1 not in seen:
                seen.add(c.sha1)
                out[d].append(c)
    return out


def _domain_order(d: str) -> tuple[int, str]:
    return (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d)


def allocate(total: int, capacity: dict[str, int]) -> dict[str, int]:
    """Equal shares of `total`; what a domain cannot fill goes to the others (water filling)."""
    quota = {d: 0 for d in capacity}
    left = total
    active = sorted((d for d in capacity if capacity[d] > 0), key=_domain_order)
    while left > 0 and active:
        share, extra = divmod(left, len(active))
        for i, d in enumerate(active):
            give = min(share + (i < extra), capacity[d] - quota[d])
            quota[d] += give
            left -= give
        active = [d for d in active if quota[d] < capacity[d]]
    return quota


def select_profiles(pools: dict[str, list[Candidate]], sizes: dict[str, int]) -> dict[str, list[Candidate]]:
    """full = head of every pool; standard and quick are nested stratified subsets of it.

    quick  ⊂ standard ⊂ full; quick takes only samples of QUICK_TOKENS length.
    Within a profile samples are ordered by domain, then rank.
    """
    full_q = allocate(sizes["full"], {d: len(p) for d, p in pools.items()})
    need = -(-sizes["quick"] // max(1, len(pools)))  # quick samples a domain must be able to give
    full = {d: _with_quick_candidates(pools[d], full_q[d], need) for d in pools}
    lo, hi = QUICK_TOKENS
    quick_pool = {d: [c for c in full[d] if lo <= c.tokens <= hi] for d in full}
    quick_q = allocate(sizes["quick"], {d: len(p) for d, p in quick_pool.items()})
    quick = {d: quick_pool[d][: quick_q[d]] for d in full}
    std_q = allocate(sizes["standard"], {d: len(p) for d, p in full.items()})
    standard = {}
    for d in full:
        chosen = {c.id for c in quick[d]}
        extra = [c for c in full[d] if c.id not in chosen][: max(0, std_q[d] - len(chosen))]
        chosen |= {c.id for c in extra}
        standard[d] = [c for c in full[d] if c.id in chosen]
    flat = lambda by_domain: [c for d in sorted(by_domain, key=_domain_order) for c in by_domain[d]]  # noqa: E731
    return {"quick": flat(quick), "standard": flat(standard), "full": flat(full)}


def _quick_sized(c: Candidate) -> bool:
    return QUICK_TOKENS[0] <= c.tokens <= QUICK_TOKENS[1]


def _with_quick_candidates(pool: list[Candidate], n: int, need: int) -> list[Candidate]:
    """The first n of the pool, but with at least `need` quick-sized samples when the pool has them.

    Domains of long paragraphs (speeches) have few 100-300 token chunks near the
    head of their pool; the best-ranked quick-sized ones further down replace the
    worst-ranked other short samples, so the domain's count stays n.
    """
    head = pool[:n]
    missing = need - sum(map(_quick_sized, head))
    if missing <= 0:
        return head
    extra = [c for c in pool[n:] if _quick_sized(c)][:missing]
    drop = {id(c) for c in [c for c in head if not _quick_sized(c) and not c.long][::-1][: len(extra)]}
    kept = [c for c in head if id(c) not in drop]
    return kept + extra[: n - len(kept)]
