"""Top-k activations with provenance: value, sample, position, channel, token id.

Candidates come from per-token maxima: the k tokens of a batch with the largest
max|a| (each with its argmax channel), so no top-k over the flattened tensor is
needed. Every entry is a distinct token. Ties (e.g. the BOS token, whose
activations are identical in every sample) are broken by (sample, position),
so the selection does not depend on how samples were batched or sharded.

On the CPU the native kernel merges a batch in one scan (native.c topk_merge,
inside the site's one site_update call; TopK.update is not called then).
Without it, on the CPU (where reading a value costs no device sync), a batch is
skipped when none of its tokens can enter: its largest per-token max|a| is below
the k-th entry, or equal to it (the BOS token of every sample, in Gemma) with no
such token ahead of the k-th entry in (sample, position) order.
"""

from __future__ import annotations

import torch

from .base import SiteView, Statistic

K = 32
_FIELDS = ("absval", "value", "sample", "pos", "channel", "token")


def select_top(cols: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The k largest `absval` rows, ties by ascending (sample, pos); deterministic."""
    order = torch.argsort(cols["pos"], stable=True)
    order = order[torch.argsort(cols["sample"][order], stable=True)]
    order = order[torch.argsort(cols["absval"][order], descending=True, stable=True)][:k]
    return {f: t[order] for f, t in cols.items()}


def batch_top(absval: torch.Tensor, rank: torch.Tensor, k: int) -> torch.Tensor:
    """Rows of the k largest `absval` (>= -1), ties by ascending `rank` (the row's place in
    (sample, pos) order): select_top's order from one top-k over a single int64 key,
    (float bits + 1) * 2**32 + (2**32 - 1 - rank); the bits of a float >= 0 are monotonic."""
    a = absval + 0.0  # -0.0 -> +0.0
    hi = torch.where(a >= 0, a.view(torch.int32).long() + 1, 0)
    key = hi * 2**32 + (2**32 - 1 - rank)
    return key.topk(min(k, key.shape[0])).indices


def row_peaks(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(channel, float32 value) of the first max finite |a| of each of the given rows of
    x (R, C): the element that holds the row's tok_abs (native.c row_argmax)."""
    r = x.index_select(0, rows).float()  # (k, C)
    a = r.abs()
    ch = torch.where(torch.isfinite(a), a, -1.0).argmax(1)
    return ch, r.gather(1, ch[:, None]).squeeze(1)


class TopK(Statistic):
    name = "topk"
    merge_rules = dict.fromkeys(_FIELDS, "topk")
    native_slots = {f: f"topk_{f}" for f in _FIELDS}
    table = "topk"

    def __init__(self, channels, n_samples, device, k: int = K):
        super().__init__(channels, n_samples, device)
        self.k = k
        self.absval = torch.full((k,), -1.0, device=device)  # -1: empty slot
        self.value = torch.zeros(k, device=device)
        for f in ("sample", "pos", "channel", "token"):
            setattr(self, f, torch.full((k,), -1, dtype=torch.int64, device=device))

    def _set(self, cols: dict[str, torch.Tensor]) -> None:
        for f, t in select_top(cols, self.k).items():
            setattr(self, f, t)

    def _nothing_enters(self, v: SiteView) -> bool:
        """No token of the batch can displace the k-th entry (host reads: CPU only)."""
        floor = float(self.absval[-1])  # -1 while a slot is empty
        top = float(v.p.tok_abs.max())  # padding rows are -1: the max is over real tokens
        if top != floor:
            return top < floor
        s, p = int(self.sample[-1]), int(self.pos[-1])
        ctx = v.ctx
        ahead = (ctx.sample < s) | ((ctx.sample == s) & (ctx.pos < p))
        return not bool(((v.tok_abs == top) & ahead).any())

    def update(self, v: SiteView) -> None:
        ctx = v.ctx
        if v.full.device.type == "cpu" and self._nothing_enters(v):
            return
        rows = batch_top(v.tok_abs, ctx.rank, self.k)  # (k,) indices into the view's rows
        ch, value = row_peaks(v.full, v.flat(rows))
        new = {
            "absval": v.tok_abs.index_select(0, rows),
            "value": value,
            "sample": ctx.sample.index_select(0, rows),
            "pos": ctx.pos.index_select(0, rows),
            "channel": ch,
            "token": ctx.token.index_select(0, rows),
        }
        self._set({f: torch.cat([getattr(self, f), new[f]]) for f in _FIELDS})

    def merge(self, other: Statistic) -> None:
        self._set({f: torch.cat([getattr(self, f), getattr(other, f).to(self.device)]) for f in _FIELDS})

    def entries(self) -> list[dict]:
        """Filled entries, largest first, as host values."""
        cols = {f: getattr(self, f).cpu().tolist() for f in _FIELDS}
        return [
            {f: cols[f][i] for f in _FIELDS}
            for i in range(self.k)
            if cols["absval"][i] >= 0 and cols["sample"][i] >= 0
        ]

    def table_data(self):
        return self.entries()
