"""The per-kind stress table, computed from run directories only.

    rows = kind_table(corpus_view, worst_view, kinds, first)

corpus M comes from the corpus run, worst M from the run that measured worst.jsonl with
runner.measure: never from the search's own numbers, so `actscope measure --corpus
OUT/worst.jsonl` gives the same table. Positions before `first` (Gemma's BOS, whose peak
is the same for every input) are left out of "worst M (searched positions)" by reading
the run's top-k rows, which hold position and sample: with fewer samples than top-k
rows per site (checked), the best later-position row of a site is always among them.
"""

from __future__ import annotations

from ..limits import FP8_E4M3_MAX, FP16_MAX
from ..stats.topk import K as TOPK_ROWS


def kind_sites(view, kind: str) -> dict[str, float]:
    """site -> max|a| of every site of a kind in a run (aliases included)."""
    return {r["site"]: r["absmax"] for r in view.sites if r["kind"] == kind and r["absmax"] is not None}


def later_peak(view, kind: str, first: int) -> float | None:
    """max|a| of a kind over positions >= first, from the hooked sites' top-k rows."""
    if first == 0:
        return max(kind_sites(view, kind).values(), default=None)
    n_samples = view.samples.num_rows
    assert n_samples * first < TOPK_ROWS, "top-k rows cannot hold every sample's early positions"
    vals = [
        abs(t["value"])
        for site in {view.source(s) for s in kind_sites(view, kind)}  # an alias's rows are its source's
        for t in view.topk_by_site.get(site, [])
        if t["pos"] >= first
    ]
    return max(vals, default=None)


def corpus_peak(view, kind: str) -> dict:
    """M of a kind in the corpus run, where it sits, and whether it is the input-independent BOS peak."""
    sites = kind_sites(view, kind)
    if not sites:
        return {"M": None, "site": None, "bos_peak": False}
    site = max(sites, key=sites.get)
    top = (view.topk_by_site.get(view.source(site)) or view.topk_by_site.get(site) or [{}])[0]
    # the BOS token at position 0 of every sample: the same value whatever the text
    bos = view.model.get("bos_token")
    at_bos = bool(bos) and top.get("pos") == 0 and top.get("token_text") == bos
    return {"M": sites[site], "site": site, "position": top.get("pos"), "token": top.get("token_text"),
            "bos_peak": at_bos}  # fmt: skip


def kind_table(corpus_view, worst_view, kinds: list[str], first: int) -> list[dict]:
    rows = []
    for kind in kinds:
        c = corpus_peak(corpus_view, kind)
        worst_sites = kind_sites(worst_view, kind)
        w_all = max(worst_sites.values(), default=None)
        w_later = later_peak(worst_view, kind, first)
        calibrated = kind_sites(corpus_view, kind)
        # A static per-tensor scale calibrated on the corpus is amax / 448 (E4M3) or amax / 127
        # (INT8): any later value above the calibrated amax saturates it.
        saturated = sorted(
            (s for s, v in worst_sites.items() if s in calibrated and v > calibrated[s]),
            key=lambda s: -worst_sites[s] / calibrated[s],
        )
        rows.append({
            "kind": kind,
            "corpus_M": c["M"],
            "corpus_site": c["site"],
            "corpus_bos_peak": c["bos_peak"],
            "worst_M": w_all,
            "worst_M_searched": w_later,
            "worst_site": max(worst_sites, key=worst_sites.get) if worst_sites else None,
            "ratio": (w_later / c["M"]) if (w_later is not None and c["M"]) else None,
            "fp16_headroom": FP16_MAX / w_all if w_all else None,
            "e4m3_headroom": FP8_E4M3_MAX / w_all if w_all else None,
            "saturated_sites": saturated,
            "saturation": {s: worst_sites[s] / calibrated[s] for s in saturated},
        })  # fmt: skip
    return rows


def entry_value(view, sample: int, site: str, first: int) -> float | None:
    """A worst.jsonl entry's max|a| at its site over positions >= first, as the run measured it.

    first == 0: the samples table (exact). Otherwise the site's top-k rows of that sample at
    positions >= first: if any is there, its best one is too (top-k holds the largest tokens),
    so the value is exact; None when the sample falls below the site's top-k."""
    src = view.source(site)
    if first == 0:
        col = view.sample_max().get(src)
        return (
            None if col is None else float(col[list(view.samples.column("sample").to_numpy()).index(sample)])
        )
    vals = [
        abs(t["value"]) for t in view.topk_by_site.get(src, []) if t["sample"] == sample and t["pos"] >= first
    ]
    return max(vals, default=None)
