"""The statistic protocol and the per-batch views statistics read.

A statistic owns a few state tensors on the model's device and declares how
each one merges across batches, ranks and shards ("sum", "max" or "min"; a
statistic with another rule overrides `merge`). update() is called from a
forward hook: it must not loop over samples or tokens in Python and must not
sync with the host (.item(), bool(tensor), nonzero).

On the CPU the native kernel folds a batch into the state itself, one call per
site for all statistics (accumulator.py): a statistic whose update() is one of
the kernel's folds says so in `native_slots` (state field -> slot of native.c,
whose fold is the one update() does). Tests hold the two paths equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .kernels import Partials, site_partials

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

    @cached_property
    def rank(self) -> torch.Tensor:
        """(N,) int64 place of each row in (sample, pos) order: the tie-break of top-k."""
        order = torch.argsort(self.pos, stable=True)
        order = order[torch.argsort(self.sample[order], stable=True)]
        return torch.empty_like(order).index_copy_(0, order, torch.arange(len(order), device=order.device))

    @cached_property
    def keep(self) -> torch.Tensor | None:
        """(B*S,) uint8, 1 = real token; None without padding (kernels skip masking then)."""
        if self.rows is None:
            return None
        keep = torch.zeros(self.batch * self.seq, dtype=torch.uint8, device=self.rows.device)
        return keep.index_fill_(0, self.rows, 1)


class SiteView:
    """One site's activations for one batch, and the partials every statistic folds.

    `full` is the (B*S, C) view of the hooked tensor, padding rows included (no
    copy); `p` holds the fused per-batch partials (kernels.py), computed on first
    use and shared by all statistics. `raw` / `x` drop padding with a copy and are
    kept for users that need the rows themselves (quantization error sums).
    """

    def __init__(self, x: torch.Tensor, ctx: BatchContext):
        # (B, S, ...) and tokens-first (B*S, ...) layouts (router logits) -> (B*S, C);
        # the probe forward checked that every hooked site has one of these layouts.
        self.full = x.reshape(ctx.batch * ctx.seq, -1)
        self.ctx = ctx

    @cached_property
    def p(self) -> Partials:
        return site_partials(self.full, self.ctx.keep)

    def real(self, t: torch.Tensor) -> torch.Tensor:
        """Rows of a (B*S, ...) tensor that are real tokens: (N, ...)."""
        return t if self.ctx.rows is None else t.index_select(0, self.ctx.rows)

    def flat(self, i: torch.Tensor) -> torch.Tensor:
        """Indices into real rows -> indices into the B*S rows of `full`."""
        return i if self.ctx.rows is None else self.ctx.rows.index_select(0, i)

    @cached_property
    def raw(self) -> torch.Tensor:
        """(N, C) real rows in the model dtype (a copy when the batch has padding)."""
        return self.real(self.full)

    @cached_property
    def x(self) -> torch.Tensor:
        """float32 real rows (bf16/fp16 models are upcast once per site)."""
        return self.raw if self.raw.dtype == torch.float32 else self.raw.float()

    @cached_property
    def tok_abs(self) -> torch.Tensor:
        """(N,) max finite |a| of each token (-1 where it has no finite element): extremes,
        top-k and per-sample maxima are all over the finite elements (kernels.py)."""
        return self.real(self.p.tok_abs)


class Statistic:
    """update(view) from hooks; merge(other) and state_dict() for resume and scale-out."""

    name = "statistic"
    merge_rules: dict[str, str] = {}
    native_slots: dict[str, str] = {}  # state field -> native.c slot; empty: update() only
    # What the statistic contributes to the run directory (rundir/schema.py builds the
    # tables' schemas from these): sites.parquet columns of result(), channels.parquet
    # columns of channel_result(), and the one table that table_data() feeds, if any.
    columns: dict[str, str] = {}  # column -> Arrow type name ("int64", "float64", "bool")
    channel_columns: dict[str, str] = {}
    table: str | None = None  # "hist", "topk" or "samples"

    def __init__(self, channels: int, n_samples: int, device: torch.device):
        self.channels = channels
        self.n_samples = n_samples
        self.device = device

    def update(self, v: SiteView) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f: getattr(self, f) for f in self.merge_rules}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copies: updates work in place, so held state never aliases the caller's tensors."""
        for f in self.merge_rules:
            cur = getattr(self, f)
            setattr(self, f, state[f].to(device=cur.device, dtype=cur.dtype, copy=True))

    def merge(self, other: Statistic) -> None:
        for f, rule in self.merge_rules.items():
            setattr(self, f, REDUCE[rule](getattr(self, f), getattr(other, f).to(self.device)))

    def result(self) -> dict:
        """Scalars for the sites table (host values; called once at the end): `columns`."""
        return {}

    def channel_result(self, site: dict) -> dict:
        """Per-channel numpy arrays (C,) for the channels table: `channel_columns`; `site` holds
        the site's scalar results (every statistic's result()), e.g. its token count."""
        return {}

    def table_data(self):
        """What this statistic contributes to its own table (`table`), as host data."""
        return None
