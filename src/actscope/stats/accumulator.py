"""All statistics of all sites of a run: update from hooks, merge, save, restore.

On the CPU a site's batch costs one native call (native.c site_update) that folds it
into the state of every statistic declaring `native_slots`; the others (and every
statistic elsewhere, or without the kernel) update from a SiteView.
"""

from __future__ import annotations

import torch

from ..errors import RunDirError
from . import STATISTICS, kernels, native
from .base import BatchContext, SiteView, Statistic


class Accumulator:
    """{site name -> [Statistic, ...]}, plus the run-level token and sample counters."""

    def __init__(self, channels: dict[str, int], n_samples: int, device, stat_names):
        self.device = torch.device(device)
        self.stat_names = tuple(stat_names)
        self.names = list(channels)
        self.stats: dict[str, list[Statistic]] = {
            name: [STATISTICS.get(s)(c, n_samples, self.device) for s in self.stat_names]
            for name, c in channels.items()
        }
        self._by_index = [self.stats[n] for n in self.names]
        self._channels = list(channels.values())
        self.n_samples = n_samples
        self.ctx: BatchContext | None = None
        self.sample_tokens = torch.zeros(n_samples, dtype=torch.int64, device=self.device)  # tokens seen
        self.batches_done = 0
        self._native = self.device.type == "cpu" and kernels.choice() in ("auto", "native")
        self._rest = [[s for s in stats if not s.native_slots] for stats in self._by_index]
        self._slots = [
            [(s, f, slot) for s in st for f, slot in s.native_slots.items()] for st in self._by_index
        ]
        self._folds: list[native.FoldTable | None] = [None] * len(self.names)
        self._batch: native.BatchTable | None = None

    def begin_batch(self, ctx: BatchContext) -> None:
        self.ctx = ctx
        self.sample_tokens.index_add_(0, ctx.sample, torch.ones_like(ctx.sample))
        if self._native and native.library() is not None:  # built on first use
            self._batch = native.BatchTable(ctx, self.n_samples)

    def end_batch(self) -> None:
        self.ctx = None
        self._batch = None
        self.batches_done += 1

    def update(self, index: int, x: torch.Tensor) -> None:
        """Hook sink: site `index` produced `x` for the current batch."""
        x = x.detach()
        todo = self._by_index[index]
        if self._batch is not None and self._slots[index] and self._update_native(index, x):
            todo = self._rest[index]
        if todo:
            v = SiteView(x, self.ctx)
            for s in todo:
                s.update(v)

    def _update_native(self, index: int, x: torch.Tensor) -> bool:
        """One native call for the statistics with native slots; False: it could not run."""
        full = x.reshape(self.ctx.batch * self.ctx.seq, -1)  # the layouts SiteView takes
        if full.shape[1] != self._channels[index]:
            return False
        if full.dtype != torch.float32:
            full = full.float()  # bf16/fp16 on a CPU: one upcast copy
        return native.site_update(full, self._batch, self._fold_table(index))

    def _fold_table(self, index: int) -> native.FoldTable:
        """The site's fold table, rebuilt when a statistic has replaced a state tensor
        (merge, load_state_dict and the torch path may)."""
        slots, table = self._slots[index], self._folds[index]
        if table is None or any(getattr(s, f) is not t for (s, f, _), t in zip(slots, table.tensors)):
            pairs = [(slot, getattr(s, f)) for s, f, slot in slots]
            table = native.FoldTable(native.library(), self._channels[index], self.n_samples, pairs)
            self._folds[index] = table
        return table

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {"_run/sample_tokens": self.sample_tokens, "_run/batches_done": torch.tensor(self.batches_done)}
        for name, stats in self.stats.items():
            for s in stats:
                for f, t in s.state_dict().items():
                    out[f"{name}/{s.name}/{f}"] = t
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.state_dict()) - set(state))
        if missing:  # a checkpoint of another state layout (an older actscope): no silent mix
            raise RunDirError(
                f"the saved statistics state lacks {missing[0]} (and {len(missing) - 1} more): "
                "it was written by another version of actscope",
                "measure again without --resume",
            )
        self.sample_tokens = state["_run/sample_tokens"].to(self.device, copy=True)  # updated in place
        self.batches_done = int(state["_run/batches_done"])
        for name, stats in self.stats.items():
            for s in stats:
                s.load_state_dict({f: state[f"{name}/{s.name}/{f}"] for f in s.merge_rules})

    def merge(self, other: Accumulator) -> None:
        assert self.names == other.names and self.stat_names == other.stat_names
        self.sample_tokens += other.sample_tokens.to(self.device)
        self.batches_done += other.batches_done
        for mine, theirs in zip(self._by_index, other._by_index):
            for a, b in zip(mine, theirs):
                a.merge(b)

    def stat(self, site: str, name: str) -> Statistic:
        for s in self.stats[site]:
            if s.name == name:
                return s
        raise KeyError(name)
