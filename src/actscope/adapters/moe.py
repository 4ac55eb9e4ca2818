"""MoE blocks: router logits, tokens routed to each expert, activations inside
the fused experts, and shared experts.

In transformers 5 the routed experts are one module with 3-D weights
(gate_up_proj (E, 2I, H), down_proj (E, H, I), or transposed), called once per
layer as experts(hidden_states (T, H), top_k_index (T, k), top_k_weights (T, k))
with T = batch x seq tokens. Padding tokens are routed too, so every MoE site
here is token-aligned: one row per token, padding rows dropped downstream like
any other site. Sites of layer i:

    layers.i.mlp.router.out           router   (T, E) logits (per-family note: how obtained)
    layers.i.mlp.experts.routed.in    routing  (T, E) 1 where the token was routed to expert e:
                                               per-channel sums = tokens routed to each expert,
                                               channels never 1 = experts that received no tokens
    layers.i.mlp.experts.act.out      expert   (T, k*I) act_fn(gate) of each (token, slot) pair
    layers.i.mlp.experts.down_proj.in expert   (T, k*I) the experts' down-projection input
    layers.i.mlp.experts.out          expert   (T, H) weighted sum of the routed experts
    layers.i.mlp.shared_expert.*      expert / linear_input: the shared expert, a dense MLP

Expert-internal tensors do not exist outside the experts' forward, whose row
order depends on the experts implementation (eager loop, grouped_mm,
batched_mm, kernels). They are recomputed from the experts' own weights and
their own inputs, for every (token, slot) pair, and laid out token-major:
channel c of a token's row is unit c % I of the expert in its top-k slot c // I.
This costs one extra up-projection per routed pair and one host sync per MoE
layer (the per-expert row counts); results equal the model's tensors up to
matmul rounding (tests/adapters/test_moe.py).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..sites import Site, SiteBinding
from .base import LINEAR_TYPES, FamilyTable, is_norm

try:
    from transformers.integrations.moe import _default_apply_gate
except ImportError:  # pragma: no cover  (older transformers: no fused-experts layout flags)
    _default_apply_gate = None

_INDEX_KWARGS = ("top_k_index", "router_indices", "selected_experts", "topk_indices")


def is_moe_block(block: nn.Module, table: FamilyTable) -> bool:
    return any(isinstance(getattr(block, n, None), nn.Module) for n in table.experts)


def moe_sites(i: int, path: str, block: nn.Module, scan) -> list[SiteBinding]:
    """Sites inside the MoE block of layer i (scan: the LayerScan, for shared experts)."""
    t: FamilyTable = scan.table
    out: list[SiteBinding] = []
    for name, child in block.named_children():
        cpath = f"{path}.{name}"
        if name in t.router:
            out.append(router_binding(i, cpath, child, t))
        elif name in t.experts:
            out += expert_bindings(i, cpath, child, scan.skipped)
        elif name in t.shared_expert:
            out += scan.block(i, cpath, "mlp.shared_expert", child, kind_act="expert")
            out.append(
                SiteBinding(Site(i, "mlp.shared_expert", "out", "expert"), cpath, "shared expert output")
            )
        elif isinstance(child, LINEAR_TYPES):
            out.append(SiteBinding(Site(i, f"mlp.{name}", "in", "linear_input"), cpath))
        elif is_norm(child):
            out.append(SiteBinding(Site(i, f"mlp.{name}", "out", "norm"), cpath))
        else:
            scan.skipped.append(f"{cpath} ({type(child).__name__}: no known role inside an MoE block)")
    return out


# --- router -----------------------------------------------------------------------------------


def router_binding(i: int, path: str, router: nn.Module, t: FamilyTable) -> SiteBinding:
    site = Site(i, "mlp.router", "out", "router")
    weight = getattr(router, "weight", None)
    can_recompute = isinstance(weight, torch.Tensor) and weight.dim() == 2
    if t.router_logits == "recompute" or (t.router_logits == "auto" and can_recompute):
        return SiteBinding(
            site, path, "router logits recomputed: input @ weight.T (+ bias)", tap=recomputed_logits
        )
    if t.router_logits == "auto":
        return SiteBinding(
            site, path, "router output[0]: assumed to be the logits (not checked for this family)"
        )
    return SiteBinding(site, path, t.router_note)


def recomputed_logits(module, args, kwargs, output) -> torch.Tensor:
    """Tap: (T, E) logits from the router's input and its (E, H) weight; the router's
    own output may be scores or indices in families we have no table for."""
    x = _arg(args, kwargs, 0, ("hidden_states", "x", "input"))
    x = x.reshape(-1, x.shape[-1])  # (T, H)
    return F.linear(x.to(module.weight.dtype), module.weight, getattr(module, "bias", None))


# --- routed experts ---------------------------------------------------------------------------


def expert_bindings(i: int, path: str, experts: nn.Module, skipped: list[str]) -> list[SiteBinding]:
    n = num_experts(experts)
    note = f"{n} experts; multi-hot (T, E) from the experts' top_k_index input; channel e = expert e"
    out = [SiteBinding(Site(i, "mlp.experts.routed", "in", "routing"), path, note, tap=routed_onehot)]
    layout = fused_layout(experts)
    if layout is None:
        skipped.append(f"{path} internals ({type(experts).__name__}: not a fused-weight experts module)")
    else:
        rec = ExpertRecompute(act=layout == "default_gate")
        why = "(token, slot) rows recomputed from the experts' weights; channel = slot * I + unit"
        if layout != "custom_gate":
            note = "act_fn(gate)" if layout == "default_gate" else "act_fn(up) (no gate)"
            out.append(
                SiteBinding(
                    Site(i, "mlp.experts.act", "out", "expert"), path, f"{note}; {why}", tap=rec.act_tap
                )
            )
        else:
            skipped.append(
                f"{path} act ({type(experts).__name__} gates inline in _apply_gate: no act_fn output)"
            )
        out.append(
            SiteBinding(
                Site(i, "mlp.experts.down_proj", "in", "expert"),
                path,
                f"down_proj input; {why}",
                tap=rec.down_tap,
            )
        )
    out.append(
        SiteBinding(
            Site(i, "mlp.experts", "out", "expert"), path, "routing-weighted sum of the routed experts"
        )
    )
    return out


def num_experts(experts: nn.Module) -> int:
    n = getattr(experts, "num_experts", None)
    if isinstance(n, int):
        return n
    for p in experts.parameters(recurse=False):
        if p.dim() == 3:
            return p.shape[0]
    raise ValueError(f"cannot tell how many experts {type(experts).__name__} has")


def fused_layout(m: nn.Module) -> str | None:
    """How the fused experts compute down_proj's input, from transformers'
    use_experts_implementation flags: "default_gate" (act_fn(gate) * up),
    "custom_gate" (a family _apply_gate, e.g. GPT-OSS's clamped GLU), "no_gate"
    (act_fn(up)); None when the module has no such layout."""
    if not hasattr(m, "has_gate") or not isinstance(getattr(m, "down_proj", None), torch.Tensor):
        return None
    if not m.has_gate:
        return "no_gate" if hasattr(m, "act_fn") else None
    default = getattr(type(m), "_apply_gate", None) is _default_apply_gate and getattr(
        m, "is_concatenated", True
    )
    return "default_gate" if default and hasattr(m, "act_fn") else "custom_gate"


def routing_index(args, kwargs) -> torch.Tensor:
    """(T, k) expert indices: the experts' second input in every transformers 5 family."""
    return _arg(args, kwargs, 1, _INDEX_KWARGS)


def routed_onehot(module, args, kwargs, output) -> torch.Tensor:
    """Tap: (T, E) float32, 1 where token t was routed to expert e (k ones per row).
    Index E (the expert-parallel "not on this rank" sentinel) is dropped."""
    idx = routing_index(args, kwargs)
    idx = idx.reshape(-1, idx.shape[-1])
    n = num_experts(module)
    hot = torch.zeros(idx.shape[0], n + 1, dtype=torch.float32, device=idx.device)
    return hot.scatter_(1, idx.clamp(0, n), 1.0)[:, :n]


class ExpertRecompute:
    """The act_fn output and down_proj input of every (token, slot) pair of one
    experts module, computed once per forward for both taps.

    The result is kept only while the experts' input tensor lives (a weak
    reference with a callback), so no batch's tensors outlive the MoE block.
    """

    def __init__(self, act: bool):
        self.act = act
        self._key: weakref.ref | None = None
        self._out: dict[str, torch.Tensor | None] = {}

    def act_tap(self, module, args, kwargs, output):
        return self._get(module, args, kwargs)["act"]

    def down_tap(self, module, args, kwargs, output):
        return self._get(module, args, kwargs)["down"]

    def _get(self, module, args, kwargs) -> dict[str, torch.Tensor | None]:
        x = _arg(args, kwargs, 0, ("hidden_states",))
        if self._key is not None and self._key() is x:
            return self._out
        self._out = recompute_experts(module, x, routing_index(args, kwargs), self.act)
        self._key = weakref.ref(x, self._drop)
        return self._out

    def _drop(self, _ref) -> None:
        self._key, self._out = None, {}


def recompute_experts(m: nn.Module, x: torch.Tensor, idx: torch.Tensor, with_act: bool) -> dict:
    """x (T, H), idx (T, k) -> {"act": (T, k*I) or None, "down": (T, k*I)}, token-major."""
    T, k = idx.shape
    E = num_experts(m)
    w_up = m.gate_up_proj if m.has_gate else m.up_proj  # (E, 2I, H), or (E, H, 2I) if transposed
    if w_up.device.type == "meta":  # offloaded (accelerate): the weights are gone after the forward
        return {"act": None, "down": None}
    x, idx = x.to(w_up.device), idx.to(w_up.device)
    b_up = getattr(m, "gate_up_proj_bias" if m.has_gate else "up_proj_bias", None) if m.has_bias else None
    inter = m.down_proj.shape[1] if m.is_transposed else m.down_proj.shape[2]
    flat = idx.reshape(-1)  # (T*k,) pair p: token p // k, slot p % k
    order = torch.argsort(flat, stable=True)  # pairs grouped by expert
    counts = torch.bincount(flat, minlength=E + 1)[:E].tolist()  # the one host sync per MoE layer
    down = x.new_zeros(T * k, inter)
    act = x.new_zeros(T * k, inter) if with_act else None
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        pairs = order[start : start + n]
        start += n
        h = x.index_select(0, pairs // k)  # (n, H)
        gu = h @ w_up[e] if m.is_transposed else F.linear(h, w_up[e])  # (n, 2I) or (n, I)
        if b_up is not None:
            gu = gu + b_up[e]
        if not m.has_gate:
            down[pairs] = m.act_fn(gu)
            continue
        down[pairs] = m._apply_gate(gu)
        if act is not None:
            act[pairs] = m.act_fn(gu.chunk(2, dim=-1)[0])
    down = down.view(T, k * inter)
    if not m.has_gate:
        return {"act": down, "down": down}  # act_fn(up) is the down_proj input: one tensor, aliased
    return {"act": act.view(T, k * inter) if act is not None else None, "down": down}


def _arg(args, kwargs, pos: int, names: tuple[str, ...]):
    if len(args) > pos:
        return args[pos]
    for n in names:
        if n in kwargs:
            return kwargs[n]
    raise ValueError(f"expected argument {pos} ({' or '.join(names)}) in this call")
