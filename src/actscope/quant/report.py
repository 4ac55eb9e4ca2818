"""Terminal tables for `actscope quant`: per-scheme SQNR and end-to-end change, correlations, verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..textsafe import term

# Correlations shown in the terminal (all are saved): the paper's scheme and the deployment ones.
SHOWN_CORR = (
    "int8:tensor:absmax",
    "int8:tensor:mse",
    "int8:token",
    "fp8_e4m3:tensor:absmax",
    "fp8_e4m3:token",
)


def _f(v, digits: int = 1, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v  # "inf" / "nan" from the manifest
    if pct:
        return f"{100 * v:.{digits}f}%"
    return f"{v:+.{digits}f}" if digits == 2 else f"{v:.{digits}f}"


def _console(console: Console | None) -> Console:
    """Rich assumes 80 columns when stdout is not a terminal (pipes, logs): give tables room."""
    if console is not None:
        return console
    con = Console(emoji=False)
    return con if con.is_terminal else Console(width=160, emoji=False)


def _short(site: str | None) -> str:
    """layers.9.mlp.down_proj.in -> 9.mlp.down_proj"""
    if not site:
        return "-"
    return site.removeprefix("layers.").removesuffix(".in").removesuffix(".out")


def print_quant(out, section: dict, console: Console | None = None) -> None:
    con = _console(console)
    tok, split = section["tokens"], section["split"]
    con.print(
        f"[bold]actscope quant[/] [cyan]{term(out)}[/]: calibrated on {len(split['calibration'])} samples "
        f"({tok['calibration']:,} tokens), evaluated on {len(split['evaluation'])} held-out samples ({tok['evaluation']:,} tokens)"
    )
    schemes = section["schemes"]
    floor = section["settings"]["budget"]["min_sqnr_db"]
    peak = next(iter(schemes.values()))["peak_residual_site"]
    t = Table(title=f"SQNR dB on held-out tokens (peak residual site {peak}); end to end on linear inputs")
    cols = (
        "scheme",
        "bits",
        "peak resid",
        "clip@peak",
        "linear min",
        "linear median",
        f"<{floor:g} dB",
        "worst linear input",
        "ppl change",
        "KL",
    )
    for col in cols:
        t.add_column(col, justify="left" if col in ("scheme", "worst linear input") else "right")
    for name, s in schemes.items():
        e = s.get("e2e") or {}
        t.add_row(
            name,
            f"{s['bits']:g}",
            _f(s["peak_residual_sqnr_db"]),
            _f(s["peak_residual_clip_rate"], 3, pct=True),
            _f(s["linear_min_sqnr_db"]),
            _f(s["linear_median_sqnr_db"]),
            f"{s['linear_below_budget']}/{s['linear_sites']}",
            _short(s["linear_worst_site"]),
            _f(e.get("ppl_change_pct"), 2) + ("%" if e else ""),
            f"{e['kl']:.2e}" if e else "-",
        )
    con.print(t)
    print_correlations(section["correlation"], con)
    print_recommendation(section.get("recommendation"), section["settings"]["budget"], con)
    print_kv(section.get("kv_cache"), con)


def print_kv(kv: dict | None, con: Console) -> None:
    """KV-cache schemes: worst layer SQNR, end-to-end change and the verdict."""
    if not kv:
        return
    t = Table(
        title="KV cache (K and V fake-quantized where they enter attention, static scales from the run)"
    )
    for col in ("scheme", "worst layer", "worst SQNR dB", "ppl change", "KL", "verdict"):
        t.add_column(col, justify="left" if col in ("scheme", "verdict") else "right")
    for name, r in kv.items():
        if name == "float":
            continue
        e, w = r.get("e2e") or {}, r["worst"]
        t.add_row(
            name,
            f"{w['layer']} {w['tensor'].upper()}",
            _f(w["sqnr_db"]),
            _f(e.get("ppl_change_pct"), 2) + ("%" if e else ""),
            f"{e['kl']:.2e}" if e else "-",
            ("[green]pass[/]" if r["verdict"] == "pass" else "[red]fail[/]"),
        )
    con.print(t)


def print_correlations(
    corr: list[dict], con: Console, group: str = "scheme", title: str = "correlation with SQNR across sites"
) -> None:
    con = _console(con)
    t = Table(title=title)
    for col in (group, "sites", "feature", "n", "pearson", "spearman"):
        t.add_column(col, justify="right" if col in ("n", "pearson", "spearman") else "left")
    for r in corr:
        if r[group] in SHOWN_CORR and r["n"] >= 3:
            t.add_row(
                str(r[group]),
                r["sites"],
                r["feature"],
                str(r["n"]),
                _f(r["pearson"], 2),
                _f(r["spearman"], 2),
            )
    con.print(t)


def print_recommendation(rec: dict | None, budget: dict, con: Console) -> None:
    if rec is None:
        return
    floor = f"SQNR >= {budget['min_sqnr_db']:g} dB at every quantized linear input, perplexity +{budget['max_ppl_increase_pct']:g}% at most"
    if rec.get("scheme") is None:
        con.print(f"[red]no recommendation[/] within the budget ({floor}): {rec['reason']}")
        if rec.get("closest"):
            c = rec["closest"]
            con.print(
                f"closest end to end: {c['scheme']}, perplexity {c['ppl_change_pct']:+.2f}%, KL {c['kl']:.2e}"
            )
        return
    keep = rec["keep_high_precision"]
    kept = f"; keep in 16 bits: {', '.join(keep)}" if keep else ""
    e = rec["e2e"]
    con.print(
        f"[green]recommended[/] {rec['scheme']} ({rec['mean_bits']:.2f} bits per linear-input element{kept}): perplexity {e['ppl_change_pct']:+.2f}%, KL {e['kl']:.2e} ({floor})"
    )


def print_peaks(peaks: list[dict], con: Console | None = None) -> None:
    """One row per model: the peak residual site's max|a| and its SQNR under the shown schemes."""
    con = _console(con)
    t = Table(title="peak residual site per model (the paper's one point per model)")
    for col in ("model", "site", "max|a|", *SHOWN_CORR):
        t.add_column(col, justify="left" if col in ("model", "site") else "right")
    for model in sorted({p["model"] for p in peaks}):
        mine = {p["scheme"]: p for p in peaks if p["model"] == model}
        first = next(iter(mine.values()))
        t.add_row(
            term(model),
            term(first["site"]),
            f"{first['absmax']:.4g}",
            *(_f(mine[s]["sqnr_db"]) if s in mine else "-" for s in SHOWN_CORR),
        )
    con.print(t)
