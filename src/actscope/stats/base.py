"""The statistic protocol and the per-batch views statistics read.

A statistic owns a few state tensors on the model's device and declares how
each one merges across batches, ranks and shards ("sum", "max" or "min"; a
statistic with another rule overrides `merge`). update() is called from a
forward hook: it must not loop over samples or tokens in Python and must not
sync with the host (.item(), bool(tensor), nonzero).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

REDUCE = {"sum": torch.add, "max": torch.maximum, "min": torch.minimum}


@dataclass
class BatchContext:
    """Provenance of the real (unpadded) tokens of one batch, computed once per batch.

    Rows of a site's (N, C) view are the real tokens in row-major (batch, seq) order.
    """

    batch: int  # B
    seq: int  # S
    rows: torch.Tensor | None  # (N,) flat indices of real tokens into B*S; None: no padding
    sample: torch.Tensor  # (N,) corpus sample index of each row
    pos: torch.Tensor  # (N,) token position within its sample
    token: torch.Tensor  # (N,) token id

    @property
    def n_rows(self) -> int:
        return self.sample.shape[0]


class SiteView:
    """One site's activations for one batch as (N, C) rows of real tokens, with
    the per-token reductions that several statistics share (computed once)."""

    def __init__(self, x: torch.Tensor, ctx: BatchContext):
        # (B, S, ...) and tokens-first (B*S, ...) layouts (router logits) -> (B*S, C);
        # the probe forward checked that every hooked site has one of these layouts.
        x = x.reshape(ctx.batch * ctx.seq, -1)
        if ctx.rows is not None:
            x = x.index_select(0, ctx.rows)  # drop padding: (N, C)
        self.raw = x  # model dtype, for exact extremes and histogram bits
        self.ctx = ctx

    @cached_property
    def x(self) -> torch.Tensor:
        """float32 rows for sums (bf16/fp16 models are upcast once per site)."""
        return self.raw if self.raw.dtype == torch.float32 else self.raw.float()

    @cached_property
    def tok_minmax(self) -> tuple[torch.Tensor, torch.Tensor]:
        mn, mx = torch.aminmax(self.raw, dim=1)
        return mn.float(), mx.float()

    @cached_property
    def tok_abs(self) -> torch.Tensor:
        """(N,) max|a| of each token; -1 where the token holds inf or nan, so that
        extremes, top-k and per-sample maxima are over finite values only."""
        mn, mx = self.tok_minmax
        a = torch.maximum(mx, -mn)
        return torch.where(torch.isfinite(a), a, torch.full_like(a, -1.0))


class Statistic:
    """update(view) from hooks; merge(other) and state_dict() for resume and scale-out."""

    name = "statistic"
    merge_rules: dict[str, str] = {}

    def __init__(self, channels: int, n_samples: int, device: torch.device):
        self.channels = channels
        self.n_samples = n_samples
        self.device = device

    def update(self, v: SiteView) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f: getattr(self, f) for f in self.merge_rules}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for f in self.merge_rules:
            cur = getattr(self, f)
            setattr(self, f, state[f].to(device=cur.device, dtype=cur.dtype))

    def merge(self, other: Statistic) -> None:
        for f, rule in self.merge_rules.items():
            setattr(self, f, REDUCE[rule](getattr(self, f), getattr(other, f).to(self.device)))

    def result(self) -> dict:
        """Scalars for the sites table (host values; called once at the end)."""
        return {}
