"""discover_sites(model) -> SitePlan: generic discovery, one family table, every layer scanned.

The embedding, each decoder layer (layer.py; MoE blocks in moe.py) and the final
norm, in forward order. base.py holds the tables and the helpers this reads.
"""

from __future__ import annotations

import logging

from torch import nn

from ..sites import KINDS, Site, SiteBinding
from .base import (
    MOE_KINDS,
    FamilyTable,
    SitePlan,
    find_layers,
    is_moe_config,
    is_norm,
    path_of,
    resolve_table,
    shared_modules,
    text_config,
)
from .layer import LayerScan

log = logging.getLogger(__name__)


def discover_sites(model: nn.Module) -> SitePlan:
    """Bindings for every canonical site, in forward order."""
    model_type, text_type, table_name, table = resolve_table(model)
    layers_path, layers = find_layers(model, table)
    cfg = text_config(model)
    scan = LayerScan(table, shared_modules(model), getattr(cfg, "layer_types", None))
    out: list[SiteBinding] = []

    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(emb, nn.Module):
        out.append(
            SiteBinding(Site(None, "embed", "out", "embedding"), path_of(model, emb), table.embedding_note)
        )
    for i, layer in enumerate(layers):
        out += scan.layer(i, f"{layers_path}.{i}", layer)
    out += _final_norm(model, layers_path, table)

    found = {b.site.kind for b in out}
    absent = set(table.absent)
    if not is_moe_config(cfg) and not found & MOE_KINDS:
        absent |= MOE_KINDS  # a dense model: no router, routing or experts, by construction
    missing = [k for k in KINDS if k not in found and k not in absent]
    if missing:
        log.warning(
            "%s: discovery found no %s sites (adapter: %s)", model_type, ", ".join(missing), table_name
        )
    return SitePlan(
        model_type=model_type,
        table_name=table_name,
        bindings=out,
        layers_path=layers_path,
        n_layers=len(layers),
        text_model_type=text_type if text_type != model_type else "",
        missing_kinds=missing,
        absent_kinds=sorted(absent - found),
        skipped=scan.skipped,
        note=table.note,
    )


def _final_norm(model: nn.Module, layers_path: str, table: FamilyTable) -> list[SiteBinding]:
    parent_path = layers_path.rsplit(".", 1)[0] if "." in layers_path else ""
    parent = model.get_submodule(parent_path) if parent_path else model
    norms = [(n, m) for n, m in parent.named_children() if is_norm(m)]
    named = [(n, m) for n, m in norms if n in table.final_norm]
    # a name from the table, else the only norm beside the layers (e.g. LFM2's embedding_norm)
    chosen = named[:1] or (norms if len(norms) == 1 else [])
    note = "" if named else f"the only norm beside the decoder layers ({chosen[0][0]})" if chosen else ""
    return [
        SiteBinding(
            Site(None, "final_norm", "out", "final_norm"), f"{parent_path}.{n}" if parent_path else n, note
        )
        for n, _ in chosen
    ]
