"""All statistics of all sites of a run: update from hooks, merge, save, restore."""

from __future__ import annotations

import torch

from . import STATISTICS
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
        self.ctx: BatchContext | None = None
        self.sample_tokens = torch.zeros(n_samples, dtype=torch.int64, device=self.device)  # tokens seen
        self.batches_done = 0

    def begin_batch(self, ctx: BatchContext) -> None:
        self.ctx = ctx
        self.sample_tokens.index_add_(0, ctx.sample, torch.ones_like(ctx.sample))

    def end_batch(self) -> None:
        self.ctx = None
        self.batches_done += 1

    def update(self, index: int, x: torch.Tensor) -> None:
        """Hook sink: site `index` produced `x` for the current batch."""
        v = SiteView(x.detach(), self.ctx)
        for s in self._by_index[index]:
            s.update(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {"_run/sample_tokens": self.sample_tokens, "_run/batches_done": torch.tensor(self.batches_done)}
        for name, stats in self.stats.items():
            for s in stats:
                for f, t in s.state_dict().items():
                    out[f"{name}/{s.name}/{f}"] = t
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
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
