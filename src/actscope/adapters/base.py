"""Find the canonical sites of a causal LM.

Discovery is generic first: find the decoder-layer list, then classify each
layer's children by role from their names (and, failing that, their class
names). A family whose modules are named differently, or that lacks a kind by
design, registers a FamilyTable (families.py); unknown families use
DEFAULT_TABLE and are told which kinds were not found.

    plan = discover_sites(model)      # SitePlan: bindings + found/missing/absent kinds
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from torch import nn

from ..errors import ModelError
from ..registry import Registry
from ..sites import KINDS, SiteBinding

log = logging.getLogger(__name__)

MOE_KINDS = frozenset({"router", "routing", "expert"})

LINEAR_TYPES: tuple[type, ...] = (nn.Linear,)
try:  # GPT-2 style Conv1D is a linear layer with transposed weights
    from transformers.pytorch_utils import Conv1D

    LINEAR_TYPES = (nn.Linear, Conv1D)
except ImportError:  # pragma: no cover
    pass


@dataclass(frozen=True)
class FamilyTable:
    """Names of the modules that play each role, relative to their parent, and
    what the family lacks by design. Every field has a generic default."""

    layers: str | None = None  # dotted path of the decoder-layer ModuleList; None: discover
    attention: tuple[str, ...] = ("self_attn", "attn", "attention", "self_attention", "linear_attn", "mixer")
    mlp: tuple[str, ...] = ("mlp", "feed_forward", "block_sparse_moe", "moe", "ffn")
    gate: tuple[str, ...] = ("gate_proj", "w1")  # Linear under the MLP whose output is the SwiGLU gate
    gate_from_act_input: bool = False  # fused gate_up_proj: the gate is the activation's input
    act: tuple[str, ...] = ("act_fn", "act", "activation_fn")
    # MoE blocks are MLP blocks with an experts child; the router sits beside it.
    experts: tuple[str, ...] = ("experts",)
    router: tuple[str, ...] = ("router", "gate")
    # "output": router output[0] is the logits; "recompute": input @ W.T + b; "auto": recompute when
    # the router has an (E, H) weight (unknown families), else output[0]
    router_logits: str = "auto"
    router_note: str = "router output[0]: assumed to be the logits (not checked for this family)"
    shared_expert: tuple[str, ...] = ("shared_expert", "shared_experts")
    # modules whose tensor is (batch, heads, seq, dim): q/k norms applied after the head
    # transpose (Gemma 3), DeepSeek's latent kv_b_proj input; measured as (batch, seq, heads*dim)
    heads_first: tuple[str, ...] = ()
    final_norm: tuple[str, ...] = (
        "norm",
        "final_layernorm",
        "ln_f",
        "norm_f",
        "final_norm",
        "final_layer_norm",
    )
    # whether attention goes through transformers' attention functions (attention.py): the
    # query, key, value and attn_logits sites need it
    attention_fn: bool = True
    embedding_note: str = ""
    absent: frozenset[str] = frozenset()  # kinds this family does not have, by design
    note: str = ""  # one line for docs/architectures.md


DEFAULT_TABLE = FamilyTable()
ADAPTERS: Registry[FamilyTable] = Registry("architecture adapter")

# Class-name hints for children whose attribute name is not in the table (unknown families).
ATTENTION_CLASS_HINTS = ("Attention", "DeltaNet", "Mamba", "Mixer", "Retention")
MLP_CLASS_HINTS = ("MLP", "Moe", "MoE", "FeedForward", "Ffn", "FFN")


def with_table(**kw) -> FamilyTable:
    return replace(DEFAULT_TABLE, **kw)


@dataclass
class SitePlan:
    """Every site found in a model, with what discovery could not find."""

    model_type: str  # the top-level config's model type (e.g. gemma3 for the VL wrapper)
    table_name: str  # the FamilyTable used ("default" for unknown families)
    bindings: list[SiteBinding]
    layers_path: str
    n_layers: int
    text_model_type: str = ""  # the text backbone's type when it differs (gemma3 -> gemma3_text)
    missing_kinds: list[str] = field(default_factory=list)  # expected but not found
    absent_kinds: list[str] = field(default_factory=list)  # declared absent for the family
    skipped: list[str] = field(default_factory=list)  # modules found but not measurable, with why
    note: str = ""

    def kinds(self) -> list[str]:
        found = {b.site.kind for b in self.bindings}
        return [k for k in KINDS if k in found]

    def coverage(self) -> dict[str, str]:
        """kind -> "found" | "absent" (by design) | "missing" (expected, not found)."""
        found = set(self.kinds())
        return {
            k: "found" if k in found else "absent" if k in self.absent_kinds else "missing" for k in KINDS
        }


def is_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return "Norm" in name or isinstance(module, (nn.LayerNorm, nn.GroupNorm))


def text_config(model: nn.Module):
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    get = getattr(cfg, "get_text_config", None)
    return get() if callable(get) else cfg


def is_moe_config(cfg) -> bool:
    """Whether the config declares routed experts (the name differs by family)."""
    keys = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
    return any(isinstance(getattr(cfg, k, None), int) and getattr(cfg, k) > 1 for k in keys)


def resolve_table(model: nn.Module) -> tuple[str, str, str, FamilyTable]:
    """(model type, text model type, table name, table): the wrapper's type is looked
    up first, then its text backbone's, then the default table."""
    top = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
    text = getattr(text_config(model), "model_type", None) or top
    for name in (top, text):
        if name in ADAPTERS:
            return top, text, name, ADAPTERS.get(name)
    return top, text, "default", DEFAULT_TABLE


def find_layers(model: nn.Module, table: FamilyTable) -> tuple[str, nn.ModuleList]:
    """The decoder-layer list: the shallowest ModuleList with num_hidden_layers
    entries outside vision/audio towers and multi-token-prediction heads."""
    if table.layers is not None:
        return table.layers, model.get_submodule(table.layers)
    cfg = text_config(model)
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


def path_of(model: nn.Module, target: nn.Module) -> str:
    for path, mod in model.named_modules():
        if mod is target:
            return path
    raise AssertionError("module not in model")


def shared_modules(model: nn.Module) -> set[int]:
    """ids of modules reachable under several paths (hooking them would fire twice)."""
    seen: dict[int, int] = {}
    for _, mod in model.named_modules(remove_duplicate=False):
        seen[id(mod)] = seen.get(id(mod), 0) + 1
    return {i for i, n in seen.items() if n > 1}
