"""The cheapest scheme that meets the user's budget, and the sites to keep in higher precision.

A budget is a floor on SQNR at every quantized linear input plus a ceiling on
the end-to-end perplexity increase. For each scheme, the linear inputs below
the SQNR floor are candidates to keep in 16 bits; a scheme qualifies when at
most `max_keep_fraction` of them must be kept. Candidates are ordered by the
mean bits per linear-input activation element (kept sites count 16 bits),
then by the scheme's own cost, then by the higher SQNR floor; the cheapest
`max_checks` are run end to end, and the first whose perplexity increase
(with its kept sites left in float) stays within the budget is the
recommendation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .scheme import Scheme

HIGH_PRECISION_BITS = 16.0


@dataclass(frozen=True)
class Budget:
    min_sqnr_db: float = 20.0
    max_ppl_increase_pct: float = 1.0
    max_keep_fraction: float = 0.1  # of linear-input sites
    max_checks: int = 3  # cheapest candidates verified end to end (in one loop with the e2e schemes)


@dataclass(frozen=True)
class Candidate:
    scheme: Scheme
    keep: tuple[str, ...]  # linear-input sites (hooked names) left in high precision
    mean_bits: float  # per linear-input element, channel-weighted
    min_sqnr_db: float  # over the sites that stay quantized


def candidates(
    metrics: dict[str, dict[str, float]], channels: dict[str, int], schemes: list[Scheme], budget: Budget
) -> list[Candidate]:
    """metrics: scheme name -> {linear-input site -> SQNR dB}; cheapest first."""
    out = []
    total = sum(channels.values())
    for s in schemes:
        sq = metrics.get(s.name)
        if not sq:
            continue
        keep = tuple(sorted(site for site, v in sq.items() if not v >= budget.min_sqnr_db))  # nan fails too
        if len(keep) > budget.max_keep_fraction * len(sq):
            continue
        bits = sum(channels[site] * (HIGH_PRECISION_BITS if site in keep else s.bits) for site in sq) / total
        rest = [v for site, v in sq.items() if site not in keep]
        out.append(Candidate(s, keep, bits, min(rest) if rest else float("nan")))
    # equal cost: the better-reconstructing scheme first (higher SQNR floor over its quantized sites)
    return sorted(out, key=lambda c: (c.mean_bits, c.scheme.cost, -c.min_sqnr_db, c.scheme.name))


def recommend(cands: list[Candidate], check: Callable[[Candidate], dict], budget: Budget) -> dict:
    """The first candidate (cheapest first) whose end-to-end result, check(c), meets the budget."""
    tried = []
    for c in cands:
        e2e = check(c)
        ok = e2e["ppl_change_pct"] <= budget.max_ppl_increase_pct
        tried.append(
            {
                "scheme": c.scheme.name,
                "keep": list(c.keep),
                "mean_bits": c.mean_bits,
                "ppl_change_pct": e2e["ppl_change_pct"],
                "kl": e2e["kl"],
                "meets_budget": ok,
            }
        )
        if ok:
            return {
                "scheme": c.scheme.name,
                "keep_high_precision": list(c.keep),
                "mean_bits": c.mean_bits,
                "min_sqnr_db": c.min_sqnr_db,
                "e2e": e2e,
                "tried": tried,
            }
    why = (
        "no scheme keeps enough linear inputs above the SQNR floor"
        if not cands
        else f"the {len(tried)} cheapest candidates exceed the perplexity budget"
    )
    return {"scheme": None, "reason": why, "tried": tried}
