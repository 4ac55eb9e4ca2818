"""The report's "KV cache and attention" section: per layer, the measured max|a| of the
queries, keys and values as attention receives them (keys after RoPE and k-norm, as cached)
and the range of the attention logits, FP8 E4M3's headroom for K and V at scale 1 (what a
runtime uses when a checkpoint carries no k_scale / v_scale), and, after
`actscope quant RUN --kv`, each KV scheme's verdict with its SQNR per layer (quant_kv.parquet).
Absent: no section (a run measured without the attention-internal sites)."""

from __future__ import annotations

from ..quant.formats import FP8_E4M3

KINDS = ("query", "key", "value", "attn_logits")


def kv_context(view) -> dict | None:
    layers: dict[int, dict] = {}
    for r in view.sites:
        if r["kind"] not in KINDS or r["layer"] is None or r["absmax"] is None:
            continue
        e = layers.setdefault(r["layer"], {"layer": r["layer"]})
        if r["kind"] == "attn_logits":
            e["logits_min"], e["logits_max"] = r.get("min"), r.get("max")
        else:
            e[r["kind"]] = float(r["absmax"])
    if not layers:
        return None
    rows = [layers[i] for i in sorted(layers)]
    for e in rows:
        for t in ("key", "value"):
            if e.get(t):
                e[f"{t}_e4m3_headroom"] = FP8_E4M3.max_value / e[t]
    peaks = {t: max(rows, key=lambda e: e.get(t, -1.0)) for t in ("query", "key", "value") if _has(rows, t)}
    return {
        "rows": rows,
        "peaks": {t: {"layer": e["layer"], "absmax": e[t]} for t, e in peaks.items()},
        "has": {t: _has(rows, t) for t in ("query", "key", "value", "logits_max")},
        "e4m3_max": FP8_E4M3.max_value,
        "schemes": (schemes := scheme_rows(view)),
        "sqnr_layers": sqnr_layers(schemes),
    }


def sqnr_layers(schemes: list[dict]) -> list[dict]:
    """[{layer, cells: [K SQNR, V SQNR] per scheme, in order}] for one table over the schemes."""
    layers = sorted({x["layer"] for s in schemes for x in s["layers"]})
    by = [{x["layer"]: x for x in s["layers"]} for s in schemes]
    cells = lambda i: [(b.get(i) or {}).get(t) for b in by for t in ("k", "v")]  # noqa: E731
    return [{"layer": i, "cells": cells(i)} for i in layers]


def _has(rows: list[dict], key: str) -> bool:
    return any(e.get(key) is not None for e in rows)


def scheme_rows(view) -> list[dict]:
    """One row per `quant --kv` scheme: verdict, worst layer, end-to-end change and the SQNR of
    K and V per layer (all heads) from quant_kv.parquet."""
    kv = (view.quant or {}).get("kv_cache") or {}
    per: dict[str, dict[int, dict]] = {}
    if kv and view.has_table("quant_kv"):
        for r in view.table("quant_kv").to_pylist():
            if r["head"] == -1:
                per.setdefault(r["scheme"], {}).setdefault(r["layer"], {})[r["tensor"]] = r["sqnr_db"]
    out = []
    for name, r in kv.items():
        if name == "float" or not isinstance(r, dict):
            continue
        e = r.get("e2e") or {}
        out.append(
            {
                "scheme": name,
                "verdict": r.get("verdict"),
                "criterion": r.get("criterion"),
                "worst": r.get("worst") or {},
                "ppl_change_pct": e.get("ppl_change_pct"),
                "kl": e.get("kl"),
                "layers": [{"layer": i, **v} for i, v in sorted(per.get(name, {}).items())],
            }
        )
    return out
