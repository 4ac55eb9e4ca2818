"""Sites inside one decoder layer: mixer (attention or linear attention), MLP or
MoE block, norms, and the inputs of every Linear/Conv1D.

A child is classified by its attribute name from the FamilyTable, then by its
class name (ATTENTION_CLASS_HINTS, MLP_CLASS_HINTS) so that unknown families
are covered where their naming is conventional.
"""

from __future__ import annotations

from torch import nn

from .. import attention
from ..sites import Site, SiteBinding
from .base import ATTENTION_CLASS_HINTS, LINEAR_TYPES, MLP_CLASS_HINTS, FamilyTable, is_norm
from .moe import is_moe_block, moe_sites

# Class names of activation modules, for MLPs whose activation attribute is not in the table.
ACT_CLASS_HINTS = ("Activation", "GELU", "Gelu", "SiLU", "ReLU", "Tanh", "Sigmoid")

_NORM_SUFFIXES = ("_layernorm", "layernorm", "_layer_norm", "_norm", "norm")


def norm_short(name: str) -> str:
    """post_attention_layernorm -> post_attention, ln_1 -> ln_1, norm -> norm."""
    for suf in _NORM_SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)].rstrip("_")
    return name


def is_activation(mod: nn.Module) -> bool:
    return any(h in type(mod).__name__ for h in ACT_CLASS_HINTS)


def first_input(module, args, kwargs, output):
    """Tap: the module's first positional input (named like an output site)."""
    return args[0] if args else next(iter(kwargs.values()), None)


def heads_to_tokens(module, args, kwargs, output):
    """Tap for heads-first tensors: the output of a norm, or the input of a Linear,
    (B, heads, S, d) -> (B, S, heads, d), token-aligned."""
    x = output if not isinstance(module, LINEAR_TYPES) else first_input(module, args, kwargs, output)
    x = x[0] if isinstance(x, tuple) else x
    return x.transpose(1, 2)


def attention_sites(i: int, path: str, mixer: nn.Module, layer_type: str) -> list[SiteBinding]:
    """query, key, value and attn_logits of a mixer that calls a transformers attention
    function (attention.py); linear-attention mixers have no KV cache and get none. A mixer
    whose call never reaches the function is dropped by the probe ("never fired")."""
    if attention.implementation(mixer) is None or "linear" in layer_type:
        return []
    note = "as attention receives it: after RoPE and q/k norms, per head (batch, seq, heads, head_dim)"
    logit_note = "per query and head: [max, min] of the pre-softmax scores over attended keys"
    return [
        SiteBinding(
            Site(i, attention.COMPONENTS[k], "logits" if k == "attn_logits" else "out", k),
            path,
            logit_note if k == "attn_logits" else note,
            attention_tap=attention.TAPS[k],
        )
        for k in ("query", "key", "value", "attn_logits")
    ]


class LayerScan:
    """Classifies the children of each decoder layer; collects what it had to skip."""

    def __init__(self, table: FamilyTable, shared: set[int], layer_types=None):
        self.table = table
        self.shared = shared  # ids of modules reachable under several paths
        self.layer_types = layer_types  # config.layer_types (hybrid and sliding-window models)
        self.skipped: list[str] = []

    def role(self, name: str, child: nn.Module) -> str | None:
        t = self.table
        if name in t.attention:
            return "attn"
        if name in t.mlp:
            return "mlp"
        cls = type(child).__name__
        if is_norm(child) or isinstance(child, LINEAR_TYPES):
            return None
        if any(h in cls for h in ATTENTION_CLASS_HINTS):
            return "attn"
        if any(h in cls for h in MLP_CLASS_HINTS):
            return "mlp"
        return None

    def layer(self, i: int, prefix: str, layer: nn.Module) -> list[SiteBinding]:
        """Sites of decoder layer i, in module order, ending with its residual output."""

        out: list[SiteBinding] = []
        ltype = self.layer_type(i)
        for name, child in layer.named_children():
            path = f"{prefix}.{name}"
            role = self.role(name, child)
            if role == "attn":
                out += self.block(i, path, "attn", child)
                out += attention_sites(i, path, child, ltype) if self.table.attention_fn else []
                note = f"mixer {name} ({type(child).__name__}), layer_type={ltype}" if ltype else ""
                out.append(SiteBinding(Site(i, "attn", "out", "attention"), path, note))
            elif role == "mlp" and is_moe_block(child, self.table):
                out += moe_sites(i, path, child, self)
                out.append(
                    SiteBinding(
                        Site(i, "mlp", "out", "mlp"), path, "MoE block output (routed + shared experts)"
                    )
                )
            elif role == "mlp":
                out += self.block(i, path, "mlp", child)
                out.append(SiteBinding(Site(i, "mlp", "out", "mlp"), path))
            elif is_norm(child):
                out.append(SiteBinding(Site(i, f"norm.{norm_short(name)}", "out", "norm"), path))
            elif isinstance(child, LINEAR_TYPES):
                out.append(SiteBinding(Site(i, name, "in", "linear_input"), path))
        out.append(
            SiteBinding(Site(i, "resid", "out", "residual"), prefix, f"layer_type={ltype}" if ltype else "")
        )
        return out

    def layer_type(self, i: int) -> str:
        types = self.layer_types
        return str(types[i]) if types and i < len(types) else ""

    def block(
        self, i: int, block_path: str, canon: str, block: nn.Module, kind_act: str = "act"
    ) -> list[SiteBinding]:
        """Linear inputs, norms, gate and activation inside an attention or dense MLP block.

        `canon` is the site-name prefix ("attn", "mlp", "mlp.shared_expert"); gate and
        activation sites are made for MLP blocks only. The shared expert of an MoE block
        uses this too, with its activation as kind "expert" and no gate site.
        """
        t = self.table
        is_mlp = canon.startswith("mlp")
        out: list[SiteBinding] = []
        for rel, mod in block.named_modules():
            if not rel:
                continue
            path = f"{block_path}.{rel}"
            leaf = rel.rsplit(".", 1)[-1]
            if id(mod) in self.shared:
                self.skipped.append(f"{path} (module shared between several places)")
                continue
            heads = {"tap": heads_to_tokens, "note": "(batch, heads, seq, dim) -> (batch, seq, heads*dim)"}
            heads = heads if leaf in t.heads_first else {}
            if isinstance(mod, LINEAR_TYPES):
                out.append(SiteBinding(Site(i, f"{canon}.{rel}", "in", "linear_input"), path, **heads))
                if is_mlp and kind_act == "act" and leaf in t.gate and not t.gate_from_act_input:
                    out.append(
                        SiteBinding(
                            Site(i, f"{canon}.gate", "out", "gate"), path, f"{leaf} output, pre-activation"
                        )
                    )
            elif is_norm(mod):
                out.append(SiteBinding(Site(i, f"{canon}.{rel}", "out", "norm"), path, **heads))
            elif is_mlp and "." not in rel and (leaf in t.act or is_activation(mod)):
                if kind_act == "act" and t.gate_from_act_input:
                    note = f"{leaf} input: the gate half of the fused gate_up_proj, pre-activation"
                    out.append(
                        SiteBinding(Site(i, f"{canon}.gate", "out", "gate"), path, note, tap=first_input)
                    )
                out.append(SiteBinding(Site(i, f"{canon}.act", "out", kind_act), path, f"{leaf} output"))
        return out
