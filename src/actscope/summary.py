"""Turn the accumulator into the run directory's tables and the manifest summary."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import analysis
from .results import write_manifest, write_table
from .stats import histogram as H
from .stats.kernels import MASSIVE_ABS, MASSIVE_RATIO, OUTLIER_ABS

FP16_MAX = 65504.0
FP8_E4M3_MAX = 448.0
FP8_E5M2_MAX = 57344.0


def site_rows(acc, manifest) -> list[dict]:
    """One dict per site (aliases included), in the manifest's firing order."""
    results = {}
    for name in acc.names:
        r = {}
        for s in acc.stats[name]:
            r.update(s.result())
        results[name] = r
    out = []
    for m in manifest["sites"]:
        src = m["alias_of"] or m["name"]
        out.append(
            {"site": m["name"], "alias_of": m["alias_of"], **results[src]}
            | {"kind": m["kind"], "layer": m["layer"], "module": m["module"], "note": m["note"]}
        )
    return out


def write_results(out: Path, manifest: dict, acc, corpus, tok) -> dict:
    """Write every table and the summary; mark the run complete."""
    rows = site_rows(acc, manifest)
    _write_sites(out, rows)
    _write_channels(out, acc)
    _write_hist(out, acc)
    peak_tables = _write_topk(out, acc, corpus, tok)
    sample_max = _write_samples(out, acc, corpus)
    manifest["summary"] = summarize(rows, peak_tables, sample_max, corpus, acc, manifest)
    manifest["status"] = "complete"
    # A run whose activations left the dtype's range is complete but not trustworthy as M.
    manifest["overflowed"] = bool(manifest["summary"].get("nonfinite", {}).get("overflowed"))
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_manifest(out, manifest)
    return manifest


def _write_sites(out: Path, rows: list[dict]) -> None:
    cols = list(rows[0].keys()) if rows else []
    write_table(out, "sites", {c: [r.get(c) for r in rows] for c in cols})


def _write_channels(out: Path, acc) -> None:
    cols: dict[str, list] = {
        k: [] for k in ("site", "channel", "absmax", "mean", "rms", "sum_sq", "massive", "ge6")
    }
    for name in acc.names:
        ext, mom, mas = acc.stat(name, "extrema"), acc.stat(name, "moments"), acc.stat(name, "massive")
        tokens = max(int(ext.tokens), 1)
        c = ext.channels
        cols["site"] += [name] * c
        cols["channel"] += list(range(c))
        cols["absmax"] += ext.ch_absmax.cpu().tolist()
        cols["mean"] += (mom.ch_s1.cpu() / tokens).tolist()
        cols["rms"] += (mom.ch_s2.cpu() / tokens).sqrt().tolist()
        cols["sum_sq"] += mom.ch_s2.cpu().tolist()
        cols["massive"] += mas.ch_massive.cpu().tolist()
        cols["ge6"] += mas.ch_ge6.cpu().tolist()
    write_table(out, "channels", cols)


def _write_hist(out: Path, acc) -> None:
    cols: dict[str, list] = {k: [] for k in ("site", "bin", "sign", "lower", "upper", "count")}
    for name in acc.names:
        h = acc.stat(name, "histogram").hist.cpu().numpy()
        for b in np.nonzero(h)[0]:
            j = b % H.HALF
            cols["site"].append(name)
            cols["bin"].append(int(b))
            cols["sign"].append(-1 if b >= H.HALF else 1)
            cols["lower"].append(float(H.EDGES[j]))
            cols["upper"].append(float(H.EDGES[min(j + 1, H.HALF)]))
            cols["count"].append(int(h[b]))
    write_table(out, "hist", cols)


def _write_topk(out: Path, acc, corpus, tok) -> dict[str, list[dict]]:
    keys = (
        "site",
        "rank",
        "value",
        "absval",
        "sample",
        "sample_id",
        "domain",
        "pos",
        "channel",
        "token",
        "token_text",
        "context",
    )
    cols: dict[str, list] = {k: [] for k in keys}
    per_site: dict[str, list[dict]] = {}
    ids_cache: dict[int, list[int]] = {}
    for name in acc.names:
        entries = acc.stat(name, "topk").entries()
        per_site[name] = entries
        for rank, e in enumerate(entries):
            s = corpus.samples[e["sample"]]
            e.update(
                sample_id=s.id,
                domain=s.domain,
                token_text=tok.decode([e["token"]]),
                context=_context(tok, s.text, e["sample"], e["pos"], ids_cache),
            )
            for k in keys:
                cols[k].append(name if k == "site" else rank if k == "rank" else e[k])
    write_table(out, "topk", cols)
    return per_site


def _context(tok, text: str, sample: int, pos: int, cache: dict, width: int = 8) -> str:
    """The text of tokens pos-width .. pos+width, the peak token in [[ ]]."""
    if sample not in cache:
        cache[sample] = tok(text, add_special_tokens=True)["input_ids"]
    ids = cache[sample]
    if not 0 <= pos < len(ids):
        return ""
    before = tok.decode(ids[max(0, pos - width) : pos])
    return f"{before}[[{tok.decode([ids[pos]])}]]{tok.decode(ids[pos + 1 : pos + 1 + width])}"


def _write_samples(out: Path, acc, corpus) -> dict[str, np.ndarray]:
    smax = {name: acc.stat(name, "samples").smax.cpu().numpy() for name in acc.names}
    cols: dict[str, list] = {
        "sample": list(range(len(corpus))),
        "sample_id": [s.id for s in corpus.samples],
        "domain": [s.domain for s in corpus.samples],
        "source": [s.source for s in corpus.samples],
        "tokens": acc.sample_tokens.cpu().tolist(),
    }
    for name, v in smax.items():
        cols[name] = v.tolist()
    write_table(out, "samples", cols)
    return smax


def summarize(rows, topk, sample_max, corpus, acc, manifest) -> dict:
    """The headline numbers: M with its location, safety verdicts, counts, domains, bootstrap."""
    hooked = [r for r in rows if r["alias_of"] is None and r["absmax"] is not None]
    if not hooked:
        return {"M": None, "note": "no finite activation was measured"}
    peak = max(hooked, key=lambda r: (r["absmax"], -_order(rows, r)))
    top = topk[peak["site"]][0]
    resid = [r for r in hooked if r["kind"] == "residual"]
    resid_max = max((r["absmax"] for r in resid), default=None)
    nonfinite = {k: sum(int(r[k]) for r in hooked) for k in ("nan", "posinf", "neginf")}
    first_bad = next(
        (r["site"] for r in rows if r["alias_of"] is None and (r["nan"] or r["posinf"] or r["neginf"])), None
    )
    all_max = np.max(np.stack(list(sample_max.values())), axis=0)
    domains = [s.domain for s in corpus.samples]
    carriers = sorted({r["kind"] for r in hooked if r["absmax"] == peak["absmax"]})
    return {
        "M": peak["absmax"],
        "M_signed": top["value"],
        "location": {
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
        },
        "carrier_kinds": carriers,
        "residual_max": resid_max,
        "residual_carries_M": resid_max is not None and resid_max == peak["absmax"],
        "safety": {
            "fp16_safe": peak["absmax"] < FP16_MAX and not any(nonfinite.values()),
            "fp16_headroom": FP16_MAX / peak["absmax"] if peak["absmax"] else None,
            "sites_over_fp16": [r["site"] for r in hooked if r["absmax"] >= FP16_MAX],
            "sites_over_fp8_e4m3": len([r for r in hooked if r["absmax"] > FP8_E4M3_MAX]),
            "sites_over_fp8_e5m2": len([r for r in hooked if r["absmax"] > FP8_E5M2_MAX]),
        },
        "nonfinite": {
            **nonfinite,
            "first_site": first_bad,
            "first_layer": next((r["layer"] for r in rows if r["site"] == first_bad), None),
            "overflowed": first_bad is not None,
            "advice": "measure in float32 or bfloat16" if first_bad is not None else None,
        },
        # With inf/nan present, M covers finite values only and is a lower bound of the true peak.
        "M_lower_bound": first_bad is not None,
        "massive": _massive_summary(hooked, acc),
        "outlier_features": _outlier_features(acc, manifest),
        "per_layer": _per_layer(hooked),
        "experts": _expert_load(acc, manifest),
        "domains": analysis.domain_maxima(all_max, domains),
        "domains_by_kind": _domains_by_kind(sample_max, domains, manifest),
        "bootstrap": analysis.bootstrap_m(all_max, analysis.bootstrap_sizes(int((all_max >= 0).sum()))),
        "quantile_rel_error": H.REL_ERROR,
    }


def _order(rows, r) -> int:
    return rows.index(r)


def _massive_summary(hooked, acc) -> dict:
    """Sun et al.'s criterion with two medians: per token (exact, for the candidate
    tokens) and layer-wide (the run's median |a| of the site, from the histogram)."""
    per_token = sum(r["massive_elements"] for r in hooked)
    layer_wide_lo = layer_wide_hi = 0
    for r in hooked:
        h = acc.stat(r["site"], "histogram").hist.cpu().numpy()
        med = H.quantiles(h, [0.5])[0] or 0.0
        t = max(MASSIVE_ABS, MASSIVE_RATIO * med)
        lo, hi = H.fraction_above(h, [t])[t]
        n = int(r["elements"])
        layer_wide_lo += round(lo * n)
        layer_wide_hi += round(hi * n)
    return {
        "per_token_median": {
            "elements": per_token,
            "tokens": sum(r["massive_tokens"] for r in hooked),
            "lower_bound": any(r["massive_lower_bound"] for r in hooked),
        },
        "layer_median": {"elements_lo": layer_wide_lo, "elements_hi": layer_wide_hi},
        "criterion": f"|a| > {MASSIVE_ABS:g} and |a| >= {MASSIVE_RATIO:g} x median |a|",
    }


def _outlier_features(acc, manifest) -> dict:
    """LLM.int8() outlier features: hidden-size channels of the inputs to linear layers
    (what the int8 matmul sees) with |a| >= 6 in >= 6% of tokens, in >= 25% of layers."""
    meta = {s["name"]: s for s in manifest["sites"]}
    lin = [n for n in acc.names if meta[n]["kind"] == "linear_input" and meta[n]["layer"] is not None]
    if not lin:
        return {"channels": [], "site_kind": "linear_input"}
    widths = [acc.stat(n, "extrema").channels for n in lin]
    hidden = max(set(widths), key=widths.count)  # q/k/v/gate/up inputs have the model width
    by_layer: dict[int, np.ndarray] = {}
    for n, w in zip(lin, widths):
        if w != hidden:
            continue
        frac = acc.stat(n, "massive").ch_ge6.cpu().numpy() / max(int(acc.stat(n, "extrema").tokens), 1)
        layer = meta[n]["layer"]
        by_layer[layer] = np.maximum(by_layer.get(layer, 0), frac)
    hit = np.stack([f >= 0.06 for f in by_layer.values()])  # (layers, C)
    chans = np.nonzero(hit.mean(axis=0) >= 0.25)[0]
    return {
        "channels": [int(c) for c in chans],
        "site_kind": "linear_input",
        "criterion": f"|a| >= {OUTLIER_ABS:g} in >= 6% of tokens in >= 25% of layers (inputs of width {hidden})",
    }


def _domains_by_kind(
    sample_max: dict[str, np.ndarray], domains: list[str], manifest
) -> dict[str, dict[str, float]]:
    """kind -> domain -> max|a| over that kind's sites and the domain's samples."""
    kinds = {s["name"]: s["kind"] for s in manifest["sites"]}
    by_kind: dict[str, np.ndarray] = {}
    for name, v in sample_max.items():
        k = kinds[name]
        by_kind[k] = np.maximum(by_kind[k], v) if k in by_kind else v
    return {k: analysis.domain_maxima(v, domains) for k, v in by_kind.items()}


def _expert_load(acc, manifest) -> dict | None:
    """MoE: tokens routed to each expert per layer, and experts that got none (their
    ranges were never observed: a known calibration failure of quantization tools).
    Routing sites hold a 0/1 row per real token, so per-channel sums of x^2 are counts."""
    routing = [s["name"] for s in manifest["sites"] if s["kind"] == "routing" and not s["alias_of"]]
    if not routing:
        return None
    load = {n: [round(v) for v in acc.stat(n, "moments").ch_s2.cpu().tolist()] for n in routing}
    return {"load": load, "idle": {n: [e for e, c in enumerate(v) if c == 0] for n, v in load.items()}}


def _per_layer(hooked) -> dict[str, list[list]]:
    out: dict[str, list[list]] = {}
    for r in hooked:
        if r["layer"] is not None:
            out.setdefault(r["kind"], []).append([r["layer"], r["absmax"]])
    for kind, pts in out.items():
        best: dict[int, float] = {}
        for layer, v in pts:
            best[layer] = max(best.get(layer, 0.0), v)
        out[kind] = [[k, best[k]] for k in sorted(best)]
    return out
