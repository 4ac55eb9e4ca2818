"""Data parallelism with torchrun: which rank am I, and merging accumulator states.

Each rank measures a disjoint share of the batches (batches[rank::world]); at the
end the states are combined with collectives by each field's merge rule (sum,
max, min via all_reduce; top-k via all_gather and a deterministic re-selection),
and rank 0 writes the run directory. gloo on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> Rank:
    """This process's place under torchrun (env WORLD_SIZE/RANK/LOCAL_RANK), else rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    return Rank(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(rank: Rank, device: torch.device) -> None:
    if rank.world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def reduce_accumulator(acc) -> None:
    """Combine every rank's accumulator in place (every rank ends with the total)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    dist.all_reduce(acc.sample_tokens, op=dist.ReduceOp.SUM)
    done = torch.tensor([acc.batches_done], dtype=torch.int64, device=acc.device)
    dist.all_reduce(done, op=dist.ReduceOp.SUM)
    acc.batches_done = int(done)
    for stats in acc.stats.values():
        for s in stats:
            if all(r in _OPS for r in s.merge_rules.values()):
                for f, rule in s.merge_rules.items():
                    dist.all_reduce(getattr(s, f), op=_OPS[rule])
            else:
                _gather_merge(s, world)


def _gather_merge(stat, world: int) -> None:
    """For statistics without an elementwise rule (top-k): gather all ranks' states
    and merge them in rank order."""
    gathered = []
    for f in stat.merge_rules:
        t = getattr(stat, f).contiguous()
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t)
        gathered.append(parts)
    others = []
    for r in range(world):
        clone = _clone(stat)
        for f, parts in zip(stat.merge_rules, gathered):
            setattr(clone, f, parts[r])
        others.append(clone)
    base = others[0]
    for o in others[1:]:
        base.merge(o)
    for f in stat.merge_rules:
        setattr(stat, f, getattr(base, f))


def _clone(stat):
    import copy

    return copy.copy(stat)
