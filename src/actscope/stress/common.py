"""What both searches share: the best input so far, seeded randomness that survives a resume,
and scoring a batch of candidate bodies (round trip checked first, so every kept input is text)."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass

import torch

from .objective import Objective
from .tokens import round_trips


@dataclass
class Found:
    body: list[int]  # token ids after the family's prefix (BOS)
    value: float  # the objective: max|a| over the kind's sites, positions >= first
    site: str  # the site that holds it
    step: int  # search step it was found at (0: a corpus seed)

    def to_json(self) -> dict:
        return asdict(self)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rng_state(g: torch.Generator) -> str:
    return base64.b64encode(g.get_state().numpy().tobytes()).decode()


def set_rng_state(g: torch.Generator, text: str) -> None:
    g.set_state(torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8))


def pick(g: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (1,), generator=g))


class Scorer:
    """Scores bodies exactly for one kind; counts every row it forwards (the budget's unit)."""

    def __init__(self, obj: Objective, tok, prefix: list[int], kind: int):
        self.obj, self.tok, self.prefix, self.kind = obj, tok, prefix, kind
        self.passes = 0

    def valid(self, bodies: list[list[int]]) -> list[list[int]]:
        """Distinct bodies whose text tokenizes back to them."""
        unique = list({tuple(b): list(b) for b in bodies}.values())
        return [b for b, ok in zip(unique, round_trips(self.tok, self.prefix, unique), strict=True) if ok]

    def __call__(self, bodies: list[list[int]], step: int, every_kind: bool = False):
        """Found per body for this kind; every_kind: one such list per kind (one forward for all)."""
        if not bodies:
            return []
        ids = torch.tensor([self.prefix + b for b in bodies], dtype=torch.long)
        values, sites = self.obj.score(ids)
        self.passes += len(bodies)

        def found(k: int) -> list[Found]:
            return [
                Found(b, float(values[r, k]), self.obj.site_name(int(sites[r, k])), step)
                for r, b in enumerate(bodies)
            ]

        return [found(k) for k in range(values.shape[1])] if every_kind else found(self.kind)
