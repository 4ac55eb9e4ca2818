"""Sites: the tensors actscope watches, as values.

A Site is (layer, component, point) with a stable dotted name and a kind used
to group and compare sites across families:

    Site(None, "embed", "out")            embed.out                  embedding
    Site(12, "resid", "out")              layers.12.resid.out        residual
    Site(12, "attn", "out")               layers.12.attn.out         attention
    Site(12, "mlp.down_proj", "in")       layers.12.mlp.down_proj.in linear_input
    Site(None, "final_norm", "out")       final_norm.out             final_norm
    Site(12, "attn.key", "out")           layers.12.attn.key.out     key (as cached)
    Site(12, "attn", "logits")            layers.12.attn.logits      attn_logits

query, key and value are the tensors attention receives (after RoPE and q/k norms,
key and value per KV head, as cached); attn_logits the range of the pre-softmax
scores per query token and head (attention.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import UserError

KINDS = (
    "embedding",
    "residual",
    "attention",
    "mlp",
    "gate",
    "act",
    "linear_input",
    "router",
    "routing",
    "expert",
    "norm",
    "final_norm",
    "query",
    "key",
    "value",
    "attn_logits",
)

# Kinds a plain measurement (no --sites) leaves out, for what they cost: attn_logits, about as
# much as attention itself (make bench, Gemma 3 270M on the CPU: its taps and statistics take 7% of
# a bare forward; query, key and value together 1.3-1.7%). `--sites all` and naming the kind select it.
OPT_IN_KINDS = ("attn_logits",)

# The paper's site set (MA): embeddings, hidden states, attention and MLP outputs,
# SwiGLU gate, router and final norm. `--sites paper` selects it.
PAPER_KINDS = ("embedding", "residual", "attention", "mlp", "gate", "router", "final_norm")

# Site sets a user can name with --sites instead of listing kinds.
PRESETS = {"all": KINDS, "paper": PAPER_KINDS, "kv": ("key", "value")}


@dataclass(frozen=True, order=True)
class Site:
    layer: int | None
    component: str  # e.g. "resid", "attn", "mlp.gate", "attn.q_proj", "norm.input"
    point: str  # "out" (module output) or "in" (module input)
    kind: str = "residual"

    def __post_init__(self):
        assert self.kind in KINDS, self.kind
        assert self.point in ("in", "out", "logits"), self.point

    @property
    def name(self) -> str:
        base = f"{self.component}.{self.point}"
        return base if self.layer is None else f"layers.{self.layer}.{base}"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class SiteBinding:
    """Where a site lives in the model: a module path and which tensor of it.

    point "out" hooks the module output (first element of a tuple);
    point "in" hooks its first positional input. `attention_tap`, where set, replaces
    the module hook: it sees each call of the module's attention function
    (attention.py) and returns the site's (batch, seq, heads, dim) tensor. `note` records how the site was
    obtained when that matters (e.g. router output meaning, layer type).

    `tap`, where set, replaces both: a forward hook calls tap(module, args, kwargs,
    output) and measures the token-aligned tensor it returns, (B*S, C) or
    (B, S, C). MoE sites use it to read the experts' routing inputs
    (adapters/moe.py).
    """

    site: Site
    module_path: str
    note: str = ""
    tap: Callable | None = field(default=None, compare=False, repr=False)
    attention_tap: Callable | None = field(default=None, compare=False, repr=False)


def select_sites(bindings: list[SiteBinding], spec: str | None) -> list[SiteBinding]:
    """`spec`: comma-separated kinds, preset names (all, paper) or globs on site names.

    e.g. "residual,attention", "paper", "layers.1*.resid.out", "*.down_proj.in".
    None: every site except the OPT_IN_KINDS.
    """
    if spec is None:
        return [b for b in bindings if b.site.kind not in OPT_IN_KINDS]
    if spec == "all":
        return list(bindings)
    wanted_kinds: set[str] = set()
    globs: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in PRESETS:
            wanted_kinds.update(PRESETS[part])
        elif part in KINDS:
            wanted_kinds.add(part)
        elif any(c in part for c in "*?[") or "." in part:
            globs.append(part)
        else:
            raise UserError(
                f"--sites part {part!r} is neither a site kind, a preset nor a glob",
                f"use kinds ({', '.join(KINDS)}), presets ({', '.join(PRESETS)}) or globs like 'layers.*.resid.out'",
            )
    chosen = [
        b
        for b in bindings
        if b.site.kind in wanted_kinds or any(fnmatch.fnmatchcase(b.site.name, g) for g in globs)
    ]
    if not chosen:
        raise UserError(
            f"--sites {spec!r} matches no site of this model", "run `actscope sites MODEL` to list them"
        )
    return chosen
