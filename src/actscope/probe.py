"""One small forward pass before measuring: which sites fire, their shapes, and
which sites see the very same tensor (aliases: hooked once, reported for both).

e.g. q_proj.in, k_proj.in and v_proj.in are all the input-norm output: hooking
one of them and reporting it under every name saves two thirds of that work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from .hooks import HookSet
from .sites import SiteBinding

log = logging.getLogger(__name__)


@dataclass
class ProbeResult:
    bindings: list[SiteBinding]  # sites to hook, in firing order (aliases excluded)
    channels: dict[str, int]  # hooked site name -> channels C of its (N, C) view
    shapes: dict[str, tuple[int, ...]]  # every usable site (aliases too) -> probe shape
    usable: dict[str, SiteBinding] = field(default_factory=dict)  # hooked and aliases, firing order
    aliases: dict[str, str] = field(default_factory=dict)  # alias name -> hooked site name
    dropped: dict[str, str] = field(default_factory=dict)  # site name -> reason
    heads: dict[str, int] = field(default_factory=dict)  # attention sites -> heads (channels = heads x dim)


def probe_sites(model: nn.Module, bindings: list[SiteBinding], input_ids, attention_mask) -> ProbeResult:
    B, S = input_ids.shape
    seen: dict[int, list] = {}  # binding index -> [(tensor, version, call order)]
    order = [0]

    def record(i: int, x: torch.Tensor) -> None:
        seen.setdefault(i, []).append((x, x._version, order[0]))
        order[0] += 1

    with HookSet(model, bindings, record) as hooks, torch.no_grad():  # no_grad: versions are tracked
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        fires = list(hooks.fires)

    res = ProbeResult([], {}, {})
    first_of: list[tuple[torch.Tensor, int, str]] = []
    for i in sorted(seen, key=lambda i: seen[i][0][2]):
        b = bindings[i]
        name = b.site.name
        x, version, _ = seen[i][0]
        if fires[i] != 1:
            res.dropped[name] = f"fired {fires[i]} times in one forward"
            continue
        if not (x.shape[:2] == (B, S) or (x.dim() == 2 and x.shape[0] == B * S)):
            res.dropped[name] = f"output shape {tuple(x.shape)} is not token-aligned"
            continue
        res.shapes[name] = tuple(x.shape)
        res.usable[name] = b
        if b.attention_tap is not None:
            res.heads[name] = x.shape[2]  # (batch, seq, heads, dim)
        twin = next((n for t, v, n in first_of if t is x and v == version), None)
        if twin is not None:
            res.aliases[name] = twin
            continue
        first_of.append((x, version, name))
        res.bindings.append(b)
        res.channels[name] = x.numel() // (B * S)
    for i, b in enumerate(bindings):
        if i not in seen and b.site.name not in res.dropped:
            res.dropped[b.site.name] = "never fired"
    for name, why in res.dropped.items():
        log.info("site %s skipped: %s", name, why)
    return res
