"""Per-expert imatrix entries of MoE layers, from the sites adapters/moe.py records.

For MoE layer i, in firing order:
    layers.i.norm.*.out                the block's input x (T, H): the layer's last norm
                                       before the router; router and experts both read it
    layers.i.mlp.router.out            router (T, E), its module is llama.cpp's ffn_gate_inp
    layers.i.mlp.experts.routed.in     routing (T, E) 0/1: per-channel sum x^2 = the exact
                                       number of tokens routed to each expert
    layers.i.mlp.experts.down_proj.in  expert (T, k*I): channel s*I + u = unit u of the
                                       expert in top-k slot s

Entries written:
    blk.i.ffn_gate_inp.weight                   dense, x over all tokens: exact
    blk.i.ffn_{gate,up,gate_up}_exps.weight     n_mat = E, input x (names the arch has)
    blk.i.ffn_down_exps.weight                  n_mat = E, input down_proj.in

Counts are exact per expert. The run's per-channel moments are over all tokens (x) or
all (token, slot) pairs (down_proj.in), not per expert, so each expert's sums are its
count times the pooled per-column mean: E[x^2] per column is the same for every expert
that saw tokens, and llama.cpp's own imatrix would tell experts apart. An expert no
token reached gets count 0 and zero sums, which llama-quantize reads as "no data".
"""

from __future__ import annotations

import logging

import numpy as np

from .imatrix_names import Entry, dense_entry, tensor_map, weight_name
from .rundata import RunView

log = logging.getLogger(__name__)
X_WEIGHTS = ("gate_proj", "up_proj", "gate_up_proj")  # experts' weights that read the block input


def moe_entries(view: RunView) -> list[Entry]:
    sites = view.manifest.get("sites", [])
    routing = [j for j, s in enumerate(sites) if s["kind"] == "routing" and not s.get("alias_of")]
    if not routing:
        return []
    tmap = tensor_map(view)
    out: list[Entry] = []
    for j in routing:
        out += layer_entries(view, tmap, sites, j)
    return out


def layer_entries(view: RunView, tmap, sites: list[dict], j: int) -> list[Entry]:
    """The entries of the MoE layer whose routing site is sites[j]."""
    route = sites[j]
    layer, experts = route.get("layer"), route["module"]
    counts = expert_counts(view, route["name"])
    x_site = block_input(sites, j, layer)
    x = view.channels(x_site["name"]) if x_site else None
    if x is None or counts is None:
        log.warning("layer %s: no per-channel data for the MoE input or routing; experts skipped", layer)
        return []
    n_tok = token_count(view, x_site["name"])
    out = []
    router = next((s for s in sites if s["kind"] == "router" and s.get("layer") == layer), None)
    if router and (name := weight_name(tmap, router["module"])):
        out.append(dense_entry(name, x, n_tok))
    for w in X_WEIGHTS:
        if name := weight_name(tmap, f"{experts}.{w}"):
            out.append(per_expert(name, x, n_tok, counts, slots=1))
    down = next(
        (s for s in sites if s["kind"] == "expert" and s["module"] == experts and s["point"] == "in"), None
    )
    d = view.channels(down["name"]) if down else None
    name = weight_name(tmap, f"{experts}.down_proj")
    if d is not None and name:
        k = max(1, round(int(counts.sum()) / max(n_tok, 1)))  # top-k: pairs per token
        out.append(per_expert(name, d, token_count(view, down["name"]), counts, slots=k))
    elif name:
        log.warning("layer %s: no down_proj input of the experts in this run; %s skipped", layer, name)
    return out


def expert_counts(view: RunView, routing_site: str) -> np.ndarray | None:
    """(E,) tokens routed to each expert: the 0/1 routing site's per-channel sum x^2 (exact)."""
    ch = view.channels(routing_site)
    return None if ch is None else np.rint(np.asarray(ch["sum_sq"], dtype=np.float64)).astype(np.int64)


def block_input(sites: list[dict], j: int, layer) -> dict | None:
    """The layer's last decoder-level norm site (layers.i.norm.*) firing before sites[j]."""
    prefix = f"layers.{layer}.norm."
    return next(
        (s for s in reversed(sites[:j]) if s["kind"] == "norm" and s["name"].startswith(prefix)), None
    )


def token_count(view: RunView, site: str) -> int:
    row = next((r for r in view.sites if r["site"] == site), None)
    return int((row or {}).get("tokens") or 0)


def per_expert(name: str, ch: dict, n_rows: int, counts: np.ndarray, slots: int) -> Entry:
    """(E, n_in) sums: count_e x the per-column mean over all rows and top-k slots.

    ch holds per-channel data of a (T, slots * n_in) site; channel s * n_in + u is
    column u seen through slot s, so the pooled mean over all (token, slot) pairs is
    the slot-summed total over n_rows * slots."""
    pairs = max(n_rows * slots, 1)
    sq = np.asarray(ch["sum_sq"], dtype=np.float64).reshape(slots, -1).sum(0)
    s = (np.asarray(ch["mean"], dtype=np.float64) * n_rows).reshape(slots, -1).sum(0)
    c = counts.astype(np.float64)[:, None]
    return Entry(
        name=name,
        sum_sq=c * (sq / pairs),
        sums=c * (s / pairs),
        counts=counts.copy(),
        absmax=np.asarray(ch["absmax"], dtype=np.float64).reshape(slots, -1).max(0),
    )
