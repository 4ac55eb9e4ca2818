"""A model-card block: Markdown for people plus machine-readable fields (JSON) for tools.

The paper recommends reporting M on the model card; this is that paragraph, with
where M sits, what it was measured with, and what it means for fp16 and FP8.
"""

from __future__ import annotations

import json

from .. import __version__
from ..textsafe import md_cell, md_code, md_fence
from .compare import fmt_m, fmt_pct, human_params, location
from .kvview import kv_context
from .rundata import RunView, massive_channels
from .verdicts import FP8_E4M3, FP16_MAX, INT8, format_verdict, fp16_verdict

BEGIN, END = "<!-- actscope:activation-range:begin -->", "<!-- actscope:activation-range:end -->"


def card_fields(view: RunView) -> dict:
    s = view.summary
    loc = s.get("location") or {}
    tokens = view.manifest.get("tokens") or {}
    corpus = view.manifest.get("corpus") or {}
    fp8, int8 = format_verdict(view, FP8_E4M3), format_verdict(view, INT8)
    mc = massive_channels(view)
    return {
        "actscope_version": __version__,
        "model": view.label,
        "model_type": view.model.get("model_type"),
        "parameters": view.n_params,
        "max_abs_activation": s.get("M"),
        # inf/nan measured: M covers finite values only and the true peak is higher
        "max_abs_activation_is_lower_bound": bool(s.get("M_lower_bound")),
        "partial_merge": view.manifest.get("shards_merged") if view.partial else None,
        "max_activation_signed": s.get("M_signed"),
        "location": {
            "site": loc.get("site"),
            "kind": loc.get("kind"),
            "layer": loc.get("layer"),
            "channel": loc.get("channel"),
            "token": loc.get("token_text"),
        },
        "measured_dtype": view.dtype,
        "corpus": {
            "name": corpus.get("name"),
            "hash": corpus.get("hash"),
            "samples": tokens.get("samples", corpus.get("samples")),
            "tokens": tokens.get("measured"),
        },
        "bos": (view.manifest.get("settings") or {}).get("bos"),
        "fp16_safe": fp16_verdict(view)["safe"],
        "fp16_headroom": (s.get("safety") or {}).get("fp16_headroom"),
        "fp8_e4m3_per_tensor_safe": fp8["safe"],
        "int8_per_tensor_safe": int8["safe"],
        "verdict_scope": fp8["scope"],
        "massive_channels": [c["channel"] for c in mc],
        "massive_channel_kind": "residual",
        "outlier_feature_channels": (s.get("outlier_features") or {}).get("channels", []),
        "residual_carries_M": s.get("residual_carries_M"),
        "kv_cache": kv_card(view),
        "kv_range": kv_range(view),
    }


def kv_range(view: RunView) -> dict | None:
    """Measured max|k| and max|v| as cached, with their layers (None without key/value sites,
    and for an overflowed run, whose maxima are lower bounds)."""
    if view.summary.get("M_lower_bound"):
        return None
    ctx = kv_context(view)
    peaks = {t: p for t, p in (ctx or {}).get("peaks", {}).items() if t in ("key", "value")}
    return peaks or None


def _kv_range_row(r: dict | None) -> list[tuple[str, str]]:
    if not r:
        return []
    parts = [f"max \\|{t[0]}\\| {fmt_m(p['absmax'])} (layer {p['layer']})" for t, p in r.items()]
    worst = max(p["absmax"] for p in r.values())
    e4m3 = FP8_E4M3.max_value
    fit = f"fits at scale 1 (margin x{e4m3 / worst:.3g})" if worst < e4m3 else "needs k/v scales"
    return [("KV cache range (keys after RoPE)", f"{'; '.join(parts)}; FP8 E4M3 {fit}")]


def kv_card(view: RunView) -> dict | None:
    """`actscope quant --kv` verdicts per KV scheme (None without them)."""
    kv = (view.quant or {}).get("kv_cache")
    if not kv:
        return None
    return {
        name: {
            "verdict": r["verdict"],
            "worst_sqnr_db": r["worst"]["sqnr_db"],
            "ppl_change_pct": (r.get("e2e") or {}).get("ppl_change_pct"),
            "kl": (r.get("e2e") or {}).get("kl"),
        }
        for name, r in kv.items()
        if name != "float"
    }


def _yes_no(v) -> str:
    return "yes" if v else "no"


def _m_text(f: dict) -> str:
    """M, marked as a lower bound for an overflowed run and as partial for a partial merge."""
    text = f"{fmt_m(f['max_abs_activation'])} (signed {fmt_m(f['max_activation_signed'])})"
    if f["max_abs_activation_is_lower_bound"]:
        text = f"≥ {text}, a lower bound: inf/nan measured in {md_cell(f['measured_dtype'])}"
    if f["partial_merge"]:
        text += f"; partial: {md_cell(f['partial_merge'])} shards merged"
    return text


def card_markdown(view: RunView) -> str:
    f = card_fields(view)
    if f["max_abs_activation"] is None:
        return f"{BEGIN}\n_actscope measured no finite activation for {md_cell(f['model'])}._\n{END}"
    loc = f["location"]
    c = f["corpus"]
    fp8 = format_verdict(view, FP8_E4M3)
    head = f["fp16_headroom"]
    if f["fp16_safe"]:
        fp16_note = f"headroom x{head:.3g}" if head else "no activation measured"
    elif f["max_abs_activation"] >= FP16_MAX:
        fp16_note = f"M is {f['max_abs_activation'] / FP16_MAX:.3g}x fp16's largest finite value, 65,504"
    else:
        fp16_note = "inf or nan measured"
    channels = ", ".join(str(x) for x in f["massive_channels"][:12]) or "none"
    rows = [
        ("max \\|a\\| (M)", _m_text(f)),
        (
            "location",
            f"{md_cell(location(loc['kind'], loc['layer']))} ({md_code(loc['site'])}), channel {loc['channel']}",
        ),
        (
            "measured in",
            f"{md_cell(f['measured_dtype'])}, corpus {md_code(c['name'])}: {c['samples']} samples, {c['tokens']:,} tokens"
            if c["tokens"]
            else f"{md_cell(f['measured_dtype'])}, corpus {md_code(c['name'])}",
        ),
        ("fp16-safe", f"{_yes_no(f['fp16_safe'])} ({fp16_note})"),
        (
            "FP8-E4M3 per-tensor safe",
            f"{_yes_no(fp8['safe'])} ({_detail(fp8)})",
        ),
        (
            "INT8 per-tensor safe",
            f"{_yes_no(f['int8_per_tensor_safe'])} ({_detail(format_verdict(view, INT8))})",
        ),
        ("massive-activation channels (residual)", channels),
        *_kv_range_row(f["kv_range"]),
        *(
            (
                f"KV cache {md_code(name)}",
                f"{r['verdict']} (worst layer SQNR {_db(r['worst_sqnr_db'])}"
                + (
                    f", perplexity {r['ppl_change_pct']:+.2f}%, KL {r['kl']:.2e})"
                    if r["kl"] is not None
                    else ")"
                ),
            )
            for name, r in (f["kv_cache"] or {}).items()
        ),
        *_deploy_rows(view),
    ]
    lines = [
        BEGIN,
        "### Activation range",
        "",
        f"Measured with actscope {f['actscope_version']} "
        f"({human_params(f['parameters'])} parameters, {md_cell(f['model_type'])}).",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "<details><summary>machine-readable fields</summary>",
        "",
        md_fence(json.dumps(f, indent=2), "json"),
        "",
        "</details>",
        END,
    ]
    return "\n".join(lines)


def _deploy_rows(view: RunView) -> list[tuple[str, str]]:
    """The latest deployed recipe and audit, when `actscope deploy` / `audit` recorded them."""
    rows = []
    if view.deployments:
        d = view.deployments[-1]
        v = (d.get("verify") or {}).get("reload")
        fig = f"; reloaded: perplexity {v['ppl_change_pct']:+.2f}%, KL {v['kl']:.4f}" if v else ""
        clip = d.get("clip") or "dynamic"
        rows.append(
            (
                "deployed recipe",
                f"{md_code(d['scheme'])} ({md_cell(d['format'])}, {md_cell(clip)} scales){fig}",
            )
        )
    if view.audits:
        a = view.audits[-1]
        sat = len(a.get("saturating") or [])
        rows.append(
            ("audit", f"{md_cell(a['format'])} checkpoint: {sat} of {a['modules']} input scales saturate")
        )
    return rows


def _db(v) -> str:
    return "inf dB" if v is None else f"{v:.1f} dB"


def _detail(v: dict) -> str:
    """Worst SQNR and the largest fraction of values rounding to zero, over the verdict's scope."""
    zero = v["max_zero_fraction"]
    zero_text = f"; up to {fmt_pct(zero)} of values round to 0" if zero else ""
    return f"{v['scope']}: worst SQNR {_db(v['worst_sqnr_db'])}{zero_text}"
