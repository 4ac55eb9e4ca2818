"""Find the canonical sites of a causal LM.

Discovery is generic first: find the decoder-layer list, then classify each
layer's children by role from their names and types. A family whose modules
are named differently registers a FamilyTable (families.py); unknown families
use DEFAULT_TABLE and get told which kinds were not found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from torch import nn

from ..errors import ModelError
from ..registry import Registry
from ..sites import KINDS, Site, SiteBinding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyTable:
    """Names of the modules that play each role, relative to their parent."""

    layers: str | None = None  # dotted path of the decoder-layer ModuleList; None: discover
    attention: tuple[str, ...] = ("self_attn", "attn", "attention", "self_attention", "linear_attn", "mixer")
    mlp: tuple[str, ...] = ("mlp", "feed_forward", "block_sparse_moe", "moe", "ffn")
    gate: tuple[str, ...] = ("gate_proj", "w1")  # Linear under the MLP whose output is the SwiGLU gate
    act: tuple[str, ...] = ("act_fn", "act", "activation_fn")
    router: tuple[str, ...] = ("router",)  # under the MLP/MoE block
    router_note: str = "router module output"
    final_norm: tuple[str, ...] = ("norm", "final_layernorm", "ln_f", "norm_f", "final_norm")
    absent: frozenset[str] = frozenset()  # kinds this family does not have, by design
    note: str = ""


DEFAULT_TABLE = FamilyTable()
ADAPTERS: Registry[FamilyTable] = Registry("architecture adapter")

LINEAR_TYPES: tuple[type, ...] = (nn.Linear,)
try:  # GPT-2 style Conv1D is a linear layer with transposed weights
    from transformers.pytorch_utils import Conv1D

    LINEAR_TYPES = (nn.Linear, Conv1D)
except ImportError:  # pragma: no cover
    pass

_NORM_SUFFIXES = ("_layernorm", "layernorm", "_layer_norm", "_norm", "norm")


@dataclass
class SitePlan:
    """Every site found in a model, with what discovery could not find."""

    model_type: str
    table_name: str
    bindings: list[SiteBinding]
    layers_path: str
    n_layers: int
    missing_kinds: list[str] = field(default_factory=list)  # expected but not found
    absent_kinds: list[str] = field(default_factory=list)  # declared absent for the family
    skipped: list[str] = field(default_factory=list)  # modules not hookable per site (shared)

    def kinds(self) -> list[str]:
        found = {b.site.kind for b in self.bindings}
        return [k for k in KINDS if k in found]


def is_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return "Norm" in name or isinstance(module, (nn.LayerNorm, nn.GroupNorm))


def _text_config(model: nn.Module):
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    get = getattr(cfg, "get_text_config", None)
    return get() if callable(get) else cfg


def find_layers(model: nn.Module, table: FamilyTable) -> tuple[str, nn.ModuleList]:
    if table.layers is not None:
        return table.layers, model.get_submodule(table.layers)
    cfg = _text_config(model)
    want = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    candidates = []
    for path, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if any(w in path for w in ("vision", "visual", "audio", "image", "mtp")):
            continue  # vision-language wrappers: measure the text backbone
        if want is not None and len(mod) != want:
            continue
        candidates.append((path.count("."), path, mod))
    if not candidates:
        raise ModelError(
            f"cannot find the decoder layers of this {type(model).__name__}",
            "it may not be a decoder-only causal LM; file an issue with its config",
        )
    _, path, mod = min(candidates, key=lambda c: (c[0], c[1]))
    return path, mod


def _module_paths(model: nn.Module) -> dict[int, list[str]]:
    paths: dict[int, list[str]] = {}
    for path, mod in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(mod), []).append(path)
    return paths


def _norm_short(name: str) -> str:
    for suf in _NORM_SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)].rstrip("_")
    return name


def discover_sites(model: nn.Module) -> SitePlan:
    """Bindings for every canonical site, in forward order."""
    cfg = _text_config(model)
    model_type = getattr(cfg, "model_type", type(model).__name__)
    table_name = model_type if model_type in ADAPTERS else "default"
    table = ADAPTERS.get(model_type) if model_type in ADAPTERS else DEFAULT_TABLE
    layers_path, layers = find_layers(model, table)
    shared = {i for i, ps in _module_paths(model).items() if len(ps) > 1}
    skipped: list[str] = []
    out: list[SiteBinding] = []

    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None:
        out.append(SiteBinding(Site(None, "embed", "out", "embedding"), _path_of(model, emb)))
    for i, layer in enumerate(layers):
        prefix = f"{layers_path}.{i}"
        out.extend(_layer_sites(i, prefix, layer, table, shared, skipped))
        out.append(SiteBinding(Site(i, "resid", "out", "residual"), prefix, _layer_note(model, i)))
    parent_path = layers_path.rsplit(".", 1)[0] if "." in layers_path else ""
    parent = model.get_submodule(parent_path) if parent_path else model
    for name in table.final_norm:
        mod = getattr(parent, name, None)
        if isinstance(mod, nn.Module) and is_norm(mod):
            path = f"{parent_path}.{name}" if parent_path else name
            out.append(SiteBinding(Site(None, "final_norm", "out", "final_norm"), path))
            break

    found = {b.site.kind for b in out}
    expected = ("embedding", "residual", "attention", "mlp", "gate", "act", "linear_input", "norm", "final_norm")
    missing = [k for k in expected if k not in found and k not in table.absent]
    if missing and table_name == "default":
        log.warning("%s: generic discovery found no %s sites", model_type, ", ".join(missing))
    return SitePlan(
        model_type=model_type,
        table_name=table_name,
        bindings=out,
        layers_path=layers_path,
        n_layers=len(layers),
        missing_kinds=missing,
        absent_kinds=sorted(table.absent),
        skipped=skipped,
    )


def _layer_note(model: nn.Module, i: int) -> str:
    types = getattr(_text_config(model), "layer_types", None)
    return f"layer_type={types[i]}" if types and i < len(types) else ""


def _path_of(model: nn.Module, target: nn.Module) -> str:
    for path, mod in model.named_modules():
        if mod is target:
            return path
    raise AssertionError("module not in model")


def _layer_sites(i, prefix, layer, table: FamilyTable, shared, skipped) -> list[SiteBinding]:
    """Sites inside one decoder layer, in module order."""
    out: list[SiteBinding] = []
    for name, child in layer.named_children():
        path = f"{prefix}.{name}"
        if name in table.attention:
            out += _block_internals(i, path, "attn", child, table, shared, skipped)
            out.append(SiteBinding(Site(i, "attn", "out", "attention"), path))
        elif name in table.mlp:
            out += _block_internals(i, path, "mlp", child, table, shared, skipped)
            out.append(SiteBinding(Site(i, "mlp", "out", "mlp"), path))
        elif is_norm(child):
            out.append(SiteBinding(Site(i, f"norm.{_norm_short(name)}", "out", "norm"), path))
        elif isinstance(child, LINEAR_TYPES):
            out.append(SiteBinding(Site(i, name, "in", "linear_input"), path))
    return out


def _block_internals(i, block_path, canon, block, table: FamilyTable, shared, skipped) -> list[SiteBinding]:
    """Linear inputs, norms, gate, activation and router inside an attention or MLP block."""
    out: list[SiteBinding] = []
    for rel, mod in block.named_modules():
        if not rel:
            continue
        path = f"{block_path}.{rel}"
        comp = f"{canon}.{rel}"
        leaf = rel.rsplit(".", 1)[-1]
        if id(mod) in shared:
            skipped.append(f"{path} (module shared between several places)")
            continue
        if isinstance(mod, LINEAR_TYPES):
            out.append(SiteBinding(Site(i, comp, "in", "linear_input"), path))
            if canon == "mlp" and leaf in table.gate:
                out.append(SiteBinding(Site(i, "mlp.gate", "out", "gate"), path, f"{leaf} output, pre-activation"))
            if canon == "mlp" and leaf in table.router:
                out.append(SiteBinding(Site(i, "mlp.router", "out", "router"), path, table.router_note))
        elif is_norm(mod):
            out.append(SiteBinding(Site(i, comp, "out", "norm"), path))
        elif canon == "mlp" and leaf in table.act and "." not in rel:
            out.append(SiteBinding(Site(i, "mlp.act", "out", "act"), path))
        elif canon == "mlp" and leaf in table.router and "." not in rel:
            out.append(SiteBinding(Site(i, "mlp.router", "out", "router"), path, table.router_note))
    return out


def with_table(**kw) -> FamilyTable:
    return replace(DEFAULT_TABLE, **kw)

