"""Length-sorted batches under a token budget, right-padded, with provenance.

Everything a hook needs to map a row of activations back to (sample, position,
token) is computed here, on the host, once per batch; hooks never sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenize import Sequence


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, S) int64, right-padded
    attention_mask: torch.Tensor  # (B, S) int64, 1 = real token
    sample: torch.Tensor  # (B,) int64 corpus sample index of each row
    offset: torch.Tensor  # (B,) int64 position of column 0 within the sample
    n_tokens: int  # real (unpadded) tokens

    @property
    def padded(self) -> bool:
        return self.n_tokens < self.input_ids.numel()

    def to(self, device) -> Batch:
        return Batch(
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.sample.to(device, non_blocking=True),
            self.offset.to(device, non_blocking=True),
            self.n_tokens,
        )


def make_batches(
    seqs: list[Sequence], *, token_budget: int = 4096, max_batch: int = 64, pad_id: int = 0
) -> list[Batch]:
    """Sort by length (longest first) and cut into batches whose padded size fits the budget.

    A batch is B x S_max padded tokens; sorting keeps S_max close to every row's
    length, so padding stays small. A sequence longer than the budget gets a
    batch of its own.
    """
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i].ids), i))
    batches: list[Batch] = []
    group: list[Sequence] = []
    for i in order:
        s = seqs[i]
        width = len(group[0].ids) if group else len(s.ids)  # longest first: row 0 sets S
        if group and (width * (len(group) + 1) > token_budget or len(group) >= max_batch):
            batches.append(_collate(group, pad_id))
            group = []
        group.append(s)
    if group:
        batches.append(_collate(group, pad_id))
    return batches


def _collate(group: list[Sequence], pad_id: int) -> Batch:
    S = max(len(s.ids) for s in group)
    ids = torch.full((len(group), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(group), S), dtype=torch.long)
    for r, s in enumerate(group):
        ids[r, : len(s.ids)] = torch.tensor(s.ids)
        mask[r, : len(s.ids)] = 1
    return Batch(
        input_ids=ids,
        attention_mask=mask,
        sample=torch.tensor([s.sample for s in group], dtype=torch.long),
        offset=torch.tensor([s.offset for s in group], dtype=torch.long),
        n_tokens=sum(len(s.ids) for s in group),
    )


def padding_fraction(batches: list[Batch]) -> float:
    total = sum(b.input_ids.numel() for b in batches)
    return 1.0 - sum(b.n_tokens for b in batches) / total if total else 0.0
