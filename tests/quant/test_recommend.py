"""The cheapest scheme within the budget, with the sites to keep in high precision."""

from __future__ import annotations

from actscope.quant.recommend import Budget, candidates, recommend
from actscope.quant.scheme import parse_scheme

SCHEMES = [parse_scheme(s) for s in ("int8:tensor", "int8:token", "int4:token", "fp8_e4m3:token")]
CHANNELS = {f"s{i}": 100 for i in range(10)}


def _sqnr(floor: float, bad: int = 0) -> dict[str, float]:
    return {site: (5.0 if i < bad else floor) for i, site in enumerate(CHANNELS)}


def test_candidates_order_by_bits_and_keep_failing_sites():
    metrics = {
        "int8:tensor:absmax": _sqnr(30.0, bad=1),  # one site kept in 16 bits
        "int8:token": _sqnr(35.0),
        "int4:token": _sqnr(15.0),  # every site below 20 dB: not a candidate
        "fp8_e4m3:token": _sqnr(28.0),
    }
    cands = candidates(metrics, CHANNELS, SCHEMES, Budget(min_sqnr_db=20.0, max_keep_fraction=0.1))
    names = [c.scheme.name for c in cands]
    assert "int4:token" not in names
    assert names[:2] == ["int8:token", "fp8_e4m3:token"]  # 8 bits, none kept: higher SQNR first
    last = cands[-1]
    assert last.scheme.name == "int8:tensor:absmax" and last.keep == ("s0",)
    assert last.mean_bits == (9 * 8 + 16) / 10 and last.min_sqnr_db == 30.0


def test_recommend_returns_the_first_that_meets_the_perplexity_budget():
    cands = candidates({"int4:token": _sqnr(25.0), "int8:token": _sqnr(40.0)}, CHANNELS, SCHEMES, Budget())
    e2e = {
        "int4:token": {"ppl_change_pct": 3.0, "kl": 0.01},
        "int8:token": {"ppl_change_pct": 0.2, "kl": 1e-4},
    }
    rec = recommend(cands, lambda c: e2e[c.scheme.name], Budget())
    assert rec["scheme"] == "int8:token" and rec["keep_high_precision"] == []
    assert [t["meets_budget"] for t in rec["tried"]] == [False, True]
    none = recommend(cands, lambda c: {"ppl_change_pct": 5.0, "kl": 0.1}, Budget())
    assert none["scheme"] is None and "perplexity" in none["reason"]
    assert "SQNR floor" in recommend([], lambda c: {}, Budget())["reason"]
