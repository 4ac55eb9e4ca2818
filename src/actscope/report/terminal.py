"""The terminal view of a run (`actscope show`, and what `measure` prints)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..textsafe import plain, term


def _console() -> Console:
    import sys

    # Tables need room; when piped (no terminal width) use a wide fixed width.
    # emoji=False: a ":name:" in a domain or sample id stays text.
    return Console(emoji=False) if sys.stdout.isatty() else Console(width=140, emoji=False)


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def print_summary(
    run: str | Path, manifest: dict, *, all_sites: bool = False, console: Console | None = None
) -> None:
    con = console or _console()
    s = manifest.get("summary") or {}
    model = manifest["model"]
    dtype = manifest["settings"]["dtype"]
    con.print(f"[bold]actscope[/] run [cyan]{term(run)}[/]  status: {term(manifest.get('status'))}")
    con.print(
        f"model {term(model.get('source'))} ({term(model.get('model_type'))}, {fmt(model.get('n_params'))} "
        f"params, {term(dtype)} on {term(manifest['environment']['device'])})"
    )
    if model.get("note"):
        con.print(f"[dim]{term(model['note'])}[/]")
    tokens = manifest.get("tokens", {})
    corpus = term(manifest["corpus"]["name"])
    con.print(
        f"corpus {corpus}: {tokens.get('samples', '?')} samples, {tokens.get('measured', '?'):,} tokens, "
        f"padding {100 * tokens.get('padding_fraction', 0):.1f}%, BOS policy {term(manifest['settings']['bos'])}"
        if tokens
        else f"corpus {corpus}"
    )
    _partial(con, manifest)
    if s.get("M") is None:
        con.print("[red]no finite activation measured[/]")
        return
    loc = s["location"]
    nf = s["nonfinite"]
    if nf["overflowed"]:
        con.print(
            f"[bold red]OVERFLOW[/]: {nf['nan']:,} nan, {nf['posinf']:,} +inf, {nf['neginf']:,} -inf values, first at "
            f"{term(nf['first_site'])} (layer {fmt(nf['first_layer'])}) in {term(dtype)}. M below covers finite "
            f"values only and is a lower bound: {_overflow_advice(dtype)}."
        )
    con.print()
    bound = " (finite values only: a lower bound)" if s.get("M_lower_bound") else ""
    con.print(
        f"[bold]M = max|a| = {fmt(s['M'], 6)}{bound}[/] (signed {fmt(s['M_signed'], 6)}) at [bold]{term(loc['site'])}[/] "
        f"(kind {term(loc['kind'])}, layer {fmt(loc['layer'])}, channel {loc['channel']})"
    )
    con.print(
        f"  token {term(repr(loc['token_text']))} (id {loc['token_id']}) at position {loc['position']} of sample "
        f"{term(loc['sample_id'])} \\[{term(loc['domain'])}]"
    )
    con.print(plain(f"  context: {loc['context']!r}"), highlight=False)
    con.print(
        f"  residual stream max {fmt(s['residual_max'], 6)}: "
        + (
            "carries M"
            if s["residual_carries_M"]
            else f"M is carried by {term(', '.join(s['carrier_kinds']))}"
        )
    )
    _safety(con, s)
    _per_kind(con, run, manifest)
    _domains(con, s)
    if all_sites:
        _sites(con, run)


def _overflow_advice(dtype: str) -> str:
    """Measuring in float32 only helps when the overflow came from a narrower float."""
    if dtype == "float32":
        return "this run is already float32, so the weights or the model's code produce them (check the checkpoint)"
    return "measure in float32 or bfloat16"


def _partial(con: Console, manifest: dict) -> None:
    if manifest.get("status") == "partial":
        con.print(
            f"[bold yellow]PARTIAL[/]: a merge of {term(str(manifest.get('shards_merged')))} shards "
            f"(missing {term(', '.join(manifest.get('shards_missing') or []))}): the numbers cover part of the corpus"
        )


def _safety(con: Console, s: dict) -> None:
    saf, nf, mas = s["safety"], s["nonfinite"], s["massive"]
    if nf["overflowed"]:
        fp16 = "[red]not safe[/]: nonfinite values appeared"
    elif saf["fp16_safe"]:
        fp16 = "[green]safe[/]"
    else:
        fp16 = f"[red]overflows[/] at {len(saf['sites_over_fp16'])} sites"
    con.print(f"  fp16 (max 65,504): {fp16}; headroom x{fmt(saf['fp16_headroom'], 3)}")
    con.print(
        f"  sites over FP8 E4M3 448 (unscaled): {saf['sites_over_fp8_e4m3']}; over E5M2 57,344: {saf['sites_over_fp8_e5m2']}"
    )
    pt = mas["per_token_median"]
    lw = mas["layer_median"]
    bound = " (lower bound)" if pt["lower_bound"] else ""
    con.print(
        f"  massive activations ({mas['criterion']}): {pt['elements']:,} elements in {pt['token_sites']:,} token-sites "
        f"with the per-token median{bound}; {lw['elements_lo']:,}-{lw['elements_hi']:,} with the layer-wide median"
    )
    ex = s.get("experts")
    if ex:
        idle = {k: v for k, v in ex["idle"].items() if v}
        con.print(
            f"  MoE routing: {len(ex['load'])} layers; experts that received no token: "
            + ("; ".join(f"{k}: {v}" for k, v in idle.items()) if idle else "none")
        )
    of = s["outlier_features"]
    chans = of["channels"]
    more = f" (+{len(chans) - 16} more)" if len(chans) > 16 else ""
    con.print(f"  outlier-feature channels (LLM.int8 criterion, linear inputs): {chans[:16] or 'none'}{more}")
    con.print(
        f"  [dim]quantiles are histogram bin midpoints, relative error <= {100 * s['quantile_rel_error']:.2f}%[/]"
    )


def _per_kind(con: Console, run, manifest: dict) -> None:
    from ..rundir import read_table

    rows = read_table(run, "sites").to_pylist()
    t = Table(title="max|a| by site kind", show_lines=False)
    for col in ("kind", "sites", "max|a|", "at", "median q0.5", "q0.999", "kurtosis (max)", "nonfinite"):
        t.add_column(col, justify="right" if col not in ("kind", "at") else "left")
    by_kind: dict[str, list[dict]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    for kind, rs in by_kind.items():
        finite = [r for r in rs if r["absmax"] is not None]
        top = max(finite, key=lambda r: r["absmax"]) if finite else None
        kurt = [r["kurtosis"] for r in rs if r["kurtosis"] is not None]
        t.add_row(
            term(kind),
            str(len(rs)),
            fmt(top["absmax"], 6) if top else "-",
            term(top["site"]) if top else "-",
            fmt(top["q0.5"]) if top else "-",
            fmt(top["q0.999"]) if top else "-",
            fmt(max(kurt)) if kurt else "-",
            str(sum(r["nan"] + r["posinf"] + r["neginf"] for r in rs)),
        )
    con.print(t)


def _domains(con: Console, s: dict) -> None:
    if s.get("domains"):
        by_kind = s.get("domains_by_kind") or {}
        kinds = [k for k in ("residual", "attention", "mlp", "linear_input", "norm") if k in by_kind]
        t = Table(title="peak max|a| per domain (all sites, and by site kind)")
        t.add_column("domain")
        t.add_column("all sites", justify="right")
        for k in kinds:
            t.add_column(k, justify="right")
        for d, v in sorted(s["domains"].items(), key=lambda kv: -kv[1]):
            t.add_row(term(d), fmt(v, 6), *(fmt(by_kind[k].get(d), 4) for k in kinds))
        con.print(t)
    for b in s.get("bootstrap", []):
        con.print(
            f"  bootstrap M over {b['resamples']} subsets of {b['n']} samples: 95% interval "
            f"[{fmt(b['lo95'], 6)}, {fmt(b['hi95'], 6)}], median {fmt(b['median'], 6)}, "
            f"reaches the full-corpus M in {100 * b['p_reach_full_M']:.0f}%"
        )


def _sites(con: Console, run) -> None:
    from ..rundir import read_table

    t = Table(title="sites")
    for col in ("site", "kind", "max|a|", "min", "max", "rms", "kurtosis", "q0.999", "massive"):
        t.add_column(col)
    for r in read_table(run, "sites").to_pylist():
        t.add_row(
            term(r["site"]),
            term(r["kind"]),
            fmt(r["absmax"]),
            fmt(r["min"]),
            fmt(r["max"]),
            fmt(r["rms"]),
            fmt(r["kurtosis"]),
            fmt(r["q0.999"]),
            str(r["massive_elements"]),
        )
    con.print(t)


def print_sites(plan, chosen, shapes: dict, *, coverage: bool = False, as_json: bool = False) -> None:
    """The sites table; `shapes` from engine.probe_shapes (a print function runs no forward pass)."""
    import json

    from ..sites import KINDS

    if as_json:
        print(
            json.dumps(
                {
                    "model_type": plan.model_type,
                    "adapter": plan.table_name,
                    "sites": [
                        {
                            "name": b.site.name,
                            "kind": b.site.kind,
                            "module": b.module_path,
                            "point": b.site.point,
                            "note": b.note,
                        }
                        for b in chosen
                    ],
                    "kinds_found": plan.kinds(),
                    "kinds_missing": plan.missing_kinds,
                    "kinds_absent": plan.absent_kinds,
                },
                indent=2,
            )
        )
        return
    con = _console()
    t = Table(title=f"{len(chosen)} sites of {term(plan.model_type)} (adapter: {term(plan.table_name)})")
    for col in ("name", "kind", "module", "point", "shape (probe)", "note"):
        t.add_column(col)
    for b in chosen:
        cells = (b.site.name, b.site.kind, b.module_path, b.site.point, shapes.get(b.site.name, "-"), b.note)
        t.add_row(*(term(c) for c in cells))
    con.print(t)
    if coverage:
        found = set(plan.kinds())
        c = Table(title="coverage of canonical site kinds")
        c.add_column("kind")
        c.add_column("status")
        for k in KINDS:
            st = "found" if k in found else "absent by design" if k in plan.absent_kinds else "not found"
            c.add_row(k, st)
        con.print(c)
