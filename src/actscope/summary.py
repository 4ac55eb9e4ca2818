"""The headline numbers of a run, as pure functions of its tables.

    summary = summarize(view)     # view: rundir.RunView, on disk or still in memory

M with its location, safety verdicts, nonfinite counts, massive activations,
outlier features, per-layer and per-domain maxima, bootstrap intervals, expert
load. Nothing here reads a statistic's state: only the run directory's tables,
so a summary can be recomputed from any run without the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import analysis
from .limits import FP8_E4M3_MAX, FP8_E5M2_MAX, FP16_MAX, FP16_OVERFLOW
from .rundir import RunView
from .stats import histogram as H
from .stats.kernels import MASSIVE_ABS, MASSIVE_RATIO, OUTLIER_ABS


def summarize(view) -> dict:
    """The headline numbers: M with its location, safety verdicts, counts, domains, bootstrap."""
    rows = view.sites
    hooked = [r for r in rows if r["alias_of"] is None and r["absmax"] is not None]
    if not hooked:
        return {"M": None, "note": "no finite activation was measured"}
    peak = max(hooked, key=lambda r: (r["absmax"], -rows.index(r)))
    top = view.topk_by_site[peak["site"]][0]
    resid_max = max((r["absmax"] for r in hooked if r["kind"] == "residual"), default=None)
    nonfinite = nonfinite_counts(rows, hooked)
    sample_max = {k: v.astype(np.float32) for k, v in view.sample_max().items()}  # the state's dtype
    all_max = np.max(np.stack(list(sample_max.values())), axis=0)
    domains = view.samples.column("domain").to_pylist()
    return {
        "M": peak["absmax"],
        "M_signed": top["value"],
        "location": location(peak, top),
        "carrier_kinds": sorted({r["kind"] for r in hooked if r["absmax"] == peak["absmax"]}),
        "residual_max": resid_max,
        "residual_carries_M": resid_max is not None and resid_max == peak["absmax"],
        "safety": safety(hooked, peak["absmax"], nonfinite),
        "nonfinite": nonfinite,
        # With inf/nan present, M covers finite values only and is a lower bound of the true peak.
        "M_lower_bound": nonfinite["first_site"] is not None,
        "massive": massive_summary(hooked, view),
        "outlier_features": outlier_features(view),
        "per_layer": per_layer(hooked),
        "experts": expert_summary(view),
        "domains": analysis.domain_maxima(all_max, domains),
        "domains_by_kind": domains_by_kind(sample_max, domains, view),
        "bootstrap": analysis.bootstrap_m(all_max, analysis.bootstrap_sizes(int((all_max >= 0).sum()))),
        "quantile_rel_error": H.REL_ERROR,
    }


def location(peak: dict, top: dict) -> dict:
    return {
        "site": peak["site"],
        "kind": peak["kind"],
        "layer": peak["layer"],
        "channel": top["channel"],
        "sample": top["sample"],
        "sample_id": top["sample_id"],
        "domain": top["domain"],
        "position": top["pos"],
        "token_id": top["token"],
        "token_text": top["token_text"],
        "context": top["context"],
    }


def nonfinite_counts(rows: list[dict], hooked: list[dict]) -> dict:
    counts = {k: sum(int(r[k]) for r in hooked) for k in ("nan", "posinf", "neginf")}
    first_bad = next(
        (r for r in rows if r["alias_of"] is None and (r["nan"] or r["posinf"] or r["neginf"])), None
    )
    return {
        **counts,
        "first_site": first_bad["site"] if first_bad else None,
        "first_layer": first_bad["layer"] if first_bad else None,
        "overflowed": first_bad is not None,
        "advice": "measure in float32 or bfloat16" if first_bad is not None else None,
    }


def safety(hooked: list[dict], m: float, nonfinite: dict) -> dict:
    bad = any(nonfinite[k] for k in ("nan", "posinf", "neginf"))
    return {
        # float16 rounds |a| >= 65,520 to inf; 65,504 itself is representable
        "fp16_safe": m < FP16_OVERFLOW and not bad,
        # a run with inf/nan has a lower bound of M only: no headroom to speak of
        "fp16_headroom": FP16_MAX / m if m and not bad else None,
        "sites_over_fp16": [r["site"] for r in hooked if r["absmax"] >= FP16_OVERFLOW],
        "sites_over_fp8_e4m3": len([r for r in hooked if r["absmax"] > FP8_E4M3_MAX]),
        "sites_over_fp8_e5m2": len([r for r in hooked if r["absmax"] > FP8_E5M2_MAX]),
    }


def massive_summary(hooked: list[dict], view) -> dict:
    """Sun et al.'s criterion with two medians: per token (exact, for the candidate
    tokens) and layer-wide (the run's median |a| of the site, known to its histogram bin)."""
    layer_wide_lo = layer_wide_hi = 0
    for r in hooked:
        h = view.hist(r["site"])
        if h is not None:
            lo, hi = massive_bracket(h)
            layer_wide_lo += lo
            layer_wide_hi += hi
    return {
        "per_token_median": {
            "elements": sum(r["massive_elements"] for r in hooked),
            "token_sites": sum(r["massive_tokens"] for r in hooked),  # a sum over sites
            "lower_bound": any(r["massive_lower_bound"] for r in hooked),
        },
        "layer_median": {"elements_lo": layer_wide_lo, "elements_hi": layer_wide_hi},
        "criterion": f"|a| > {MASSIVE_ABS:g} and |a| >= {MASSIVE_RATIO:g} x median |a|",
    }


def massive_bracket(hist) -> tuple[int, int]:
    """[lo, hi] bounds on the finite elements with |a| > 100 and |a| >= 1000 x m, where m is the
    (lower) median |a| of the histogram's finite values: the histogram knows m only to its bin
    [e_k, e_k+1), and an element only to its own bin [b, b+), so

        certainly counted: b > 100 and b >= 1000 e_k+1     (every value of the bin passes)
        possibly counted:  b+ > 100 and b+ > 1000 e_k      (some value of the bin may pass)

    The true count lies in [lo, hi] (tests check it at bin edges, at exactly 100 and at
    exactly 1000 x median). Nonfinite values are counted apart and never here.
    """
    c = H.abs_counts(hist)[: H.INF_BIN]  # finite |a| bins
    total = int(c.sum())
    if total == 0:
        return 0, 0
    k = int(np.searchsorted(np.cumsum(c), 0.5 * total, side="left"))  # bin of the lower median
    m_lo, m_hi = H.EDGES[k], H.EDGES[k + 1]
    lower, upper = H.EDGES[: H.INF_BIN], H.EDGES[1 : H.INF_BIN + 1]
    sure = (lower > MASSIVE_ABS) & (lower >= MASSIVE_RATIO * m_hi)
    maybe = (upper > MASSIVE_ABS) & (upper > MASSIVE_RATIO * m_lo)
    return int(c[sure].sum()), int(c[maybe].sum())


def outlier_features(view) -> dict:
    """LLM.int8() outlier features: hidden-state channels of the inputs to linear layers (what the
    int8 matmul sees) with |a| >= 6 in >= 6% of tokens, in >= 25% of layers (Dettmers et al.).

    Every linear input counts, whatever site carries its tensor: with the default sites the
    q/k/v and gate/up inputs are the norm outputs (aliases), and they are the hidden-width ones.
    """
    lin = [r for r in view.sites if r["kind"] == "linear_input" and r["layer"] is not None]
    if not lin:
        return {"channels": [], "site_kind": "linear_input"}
    resid = [r["channels"] for r in view.sites if r["kind"] == "residual"]
    widths = [r["channels"] for r in lin]
    hidden = resid[0] if resid else max(set(widths), key=widths.count)  # the model's hidden size
    by_layer: dict[int, np.ndarray] = {}
    for r in lin:
        ch = view.channels(r["site"])
        if r["channels"] != hidden or ch is None:
            continue
        frac = ch["ge6"] / max(int(r["tokens"]), 1)
        by_layer[r["layer"]] = np.maximum(by_layer.get(r["layer"], 0), frac)
    if not by_layer:
        return {"channels": [], "site_kind": "linear_input"}
    hit = np.stack([f >= 0.06 for f in by_layer.values()])  # (layers, C)
    share = hit.mean(axis=0)
    chans = np.nonzero(share >= 0.25)[0]
    return {
        "channels": [int(c) for c in chans],
        "layers": {str(c): int(hit[:, c].sum()) for c in chans},  # JSON object keys are strings
        "layers_measured": len(by_layer),
        "site_kind": "linear_input",
        "criterion": (
            f"|a| >= {OUTLIER_ABS:g} in >= 6% of tokens in >= 25% of layers, over the linear inputs "
            f"of the hidden width {hidden} (aliases of norm outputs included)"
        ),
    }


def domains_by_kind(
    sample_max: dict[str, np.ndarray], domains: list[str], view
) -> dict[str, dict[str, float]]:
    """kind -> domain -> max|a| over that kind's sites and the domain's samples."""
    kinds = {s["name"]: s["kind"] for s in view.manifest["sites"]}
    by_kind: dict[str, np.ndarray] = {}
    for name, v in sample_max.items():
        k = kinds[name]
        by_kind[k] = np.maximum(by_kind[k], v) if k in by_kind else v
    return {k: analysis.domain_maxima(v, domains) for k, v in by_kind.items()}


def expert_load(run) -> dict[str, list[int]]:
    """routing site -> tokens routed to each expert (a run directory or a RunView).

    The routing site is 0/1, so its per-channel sum of squares (channels table,
    float64 sums of exact float32 batch sums) is the exact count of real tokens
    routed to each expert; padding rows were dropped like at every site.
    """
    view = _view(run)
    routing = [
        s["name"] for s in view.manifest.get("sites", []) if s["kind"] == "routing" and not s["alias_of"]
    ]
    return {n: [round(v) for v in view.channels(n)["sum_sq"].tolist()] for n in routing}


def idle_experts(run) -> dict[str, list[int]]:
    """routing site -> experts that received no tokens in the whole run (a calibration
    failure for quantization tools: their ranges were never observed)."""
    return {site: [e for e, n in enumerate(counts) if n == 0] for site, counts in expert_load(run).items()}


def expert_summary(view) -> dict | None:
    """MoE: tokens routed to each expert per layer, and experts that got none."""
    load = expert_load(view)
    if not load:
        return None
    return {"load": load, "idle": {n: [e for e, c in enumerate(v) if c == 0] for n, v in load.items()}}


def per_layer(hooked) -> dict[str, list[list]]:
    best: dict[str, dict[int, float]] = {}
    for r in hooked:
        if r["layer"] is not None:
            b = best.setdefault(r["kind"], {})
            b[r["layer"]] = max(b.get(r["layer"], 0.0), r["absmax"])
    return {kind: [[k, b[k]] for k in sorted(b)] for kind, b in best.items()}


def _view(run):
    return RunView(run) if isinstance(run, (str, Path)) else run
