"""The stress result in the terminal: the per-kind table and where the worst inputs are."""

from __future__ import annotations

from rich.table import Table

from ..report.terminal import _console, fmt


def print_stress(result: dict, console=None) -> None:
    con = console or _console()
    first = result["first_position"]
    t = Table(title=f"actscope stress {result['model']}: corpus M vs worst found (re-measured)")
    for col in ("kind", "corpus M", "worst M", "worst M, pos >= 1" if first else None, "ratio",
                "fp16 headroom", "E4M3 headroom", "corpus scales saturated"):  # fmt: skip
        if col:
            t.add_column(col, justify="left" if col == "kind" else "right")
    for r in result["table"]:
        bos = " (BOS peak)" if r["corpus_bos_peak"] else ""
        sat = r["saturated_sites"]
        worst_sat = f"{len(sat)}, up to x{max(r['saturation'].values()):.3g}" if sat else "0"
        cells = [r["kind"], fmt(r["corpus_M"]) + bos, fmt(r["worst_M"])]
        cells += [fmt(r["worst_M_searched"])] if first else []
        cells += [fmt(r["ratio"], 3), _x(r["fp16_headroom"]), _x(r["e4m3_headroom"]), worst_sat]
        t.add_row(*cells)
    con.print(t)
    if first:
        con.print("position 0 (the BOS) is left out of the search: its peak is the same for every input;"
                  " ratio = worst M at positions >= 1 / corpus M")  # fmt: skip
    for c in result.get("scales", []):
        sat = c["saturating"]
        worst = f": worst {sat[0]['module']} x{sat[0]['over']:.3g} over its scale" if sat else ""
        con.print(f"static scales of {c['checkpoint']} ({c['format']}): {len(sat)} of {c['measured']} "
                  f"modules saturate under the worst inputs{worst}")  # fmt: skip
    con.print(f"worst inputs: {result['from_run']} seeds -> worst.jsonl; re-measured run in run/ "
              "(actscope measure --corpus OUT/worst.jsonl gives the same numbers)")  # fmt: skip


def _x(v) -> str:
    return "-" if v is None else f"x{v:.3g}"
