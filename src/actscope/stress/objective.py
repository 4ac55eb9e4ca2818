"""The search objective: max|a| over the target sites of each kind, read by hooks.

    obj = Objective(model, bindings, first=1)   # first=1: position 0 (BOS) left out
    values, site = obj.score(ids)               # (B, K) per row and kind; (B, K) index of the site
    step = obj.gradient(ids, kind)              # one row: per-position peaks and d peak / d embedding

The hooks are the engine's (HookSet: every site once per forward). Scoring runs
under inference_mode; the gradient pass does not, and instead of a one-hot input
it takes the gradient at the embedding module's output: d/d onehot[q, v] equals
g[q] . E[v] with E[v] that module's output for token v, so the family's own
embedding scaling (Gemma multiplies by sqrt(hidden)) is part of E, and the
forward is the very same input_ids forward that scoring and measuring run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..engine import forward_fn, input_device
from ..hooks import HookSet


@dataclass
class GradStep:
    peaks: torch.Tensor  # (S',) signed peak element of each position (over the kind's sites, channels)
    grad: torch.Tensor  # (S', H) d sum(peaks) / d embedding output, positions >= first


class Objective:
    def __init__(self, model: nn.Module, bindings, first: int):
        self.model, self.bindings, self.first = model, list(bindings), first
        self.kinds = list(dict.fromkeys(b.site.kind for b in self.bindings))
        self.sites_of = [
            [i for i, b in enumerate(self.bindings) if b.site.kind == k] for k in self.kinds
        ]  # kind index -> binding indices
        self.device = input_device(model)
        self._run = forward_fn(model)
        self._peaks: dict[int, torch.Tensor] = {}
        self._shape = (0, 0)
        self._signed = False

    def _sink(self, i: int, x: torch.Tensor) -> None:
        B, S = self._shape
        x = x.reshape(B, S, -1)[:, self.first :]  # (B, S', C): (B*S, C) tap outputs too
        if self._signed:  # keep the graph: the peak element of each position, with its sign
            idx = x.detach().abs().argmax(-1, keepdim=True)
            self._peaks[i] = x.gather(-1, idx).squeeze(-1).float()
        else:
            self._peaks[i] = x.abs().amax(-1).float()  # (B, S'), exact in any dtype

    def _forward(self, ids: torch.Tensor) -> None:
        self._peaks.clear()
        self._shape = tuple(ids.shape)
        with HookSet(self.model, self.bindings, self._sink) as hooks:
            self._run(ids.to(self.device), torch.ones_like(ids, device=self.device))
            hooks.check_once()

    def score(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, S) unpadded rows -> (values (B, K), site (B, K)): per kind, the max|a| of each row
        over its sites, positions >= first and channels, and the binding index that holds it."""
        self._signed = False
        with torch.inference_mode():
            self._forward(ids)
            values, sites = [], []
            for idx in self.sites_of:
                per_site = torch.stack([self._peaks[i].amax(-1) for i in idx])  # (n, B)
                v, j = per_site.max(0)
                values.append(v)
                sites.append(torch.tensor(idx, device=j.device)[j])
        return torch.stack(values, 1).cpu(), torch.stack(sites, 1).cpu()

    def gradient(self, ids: torch.Tensor, kind: int) -> GradStep:
        """One row (1, S): the signed peak of each position at the kind's sites, and the gradient
        of their sum at the embedding output (the linear model search_grad ranks swaps with)."""
        self._signed = True
        emb = self.model.get_input_embeddings()
        with _grad_leaf(emb) as leaf, torch.enable_grad():
            self._forward(ids)
            per_site = torch.stack([self._peaks[i][0] for i in self.sites_of[kind]])  # (n, S')
            pick = per_site.detach().abs().argmax(0, keepdim=True)
            peaks = per_site.gather(0, pick).squeeze(0)  # (S',)
            peaks.sum().backward()
        self._peaks.clear()
        return GradStep(peaks.detach().cpu(), leaf[0].grad[0, self.first :].float().cpu())

    def site_name(self, index: int) -> str:
        return self.bindings[index].site.name


@contextmanager
def _grad_leaf(emb: nn.Module) -> Iterator[list]:
    """Make the embedding module's output a leaf that collects its gradient (same values)."""
    held: list[torch.Tensor] = []

    def hook(module, args, out):
        leaf = out.detach().requires_grad_(True)
        held.append(leaf)
        return leaf

    # prepend: the site hooks (embed.out) must see the leaf, not the detached original
    handle = emb.register_forward_hook(hook, prepend=True)
    try:
        yield held
    finally:
        handle.remove()


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Weights need no gradient for the search; restore exactly the flags that were changed."""
    changed = [p for p in model.parameters() if p.requires_grad]
    for p in changed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in changed:
            p.requires_grad_(True)


def token_embeddings(emb: nn.Module, ids: torch.Tensor, chunk: int = 32768) -> Iterator[torch.Tensor]:
    """The embedding module's own output for ids, in chunks of (n, H) float32 (no full V x H copy)."""
    device = emb.weight.device if hasattr(emb, "weight") else ids.device
    with torch.inference_mode():
        for lo in range(0, ids.numel(), chunk):
            yield emb(ids[lo : lo + chunk].to(device)[None])[0].float()
