"""Corpus-seeded black-box search: an elitist population of the inputs that score highest.

The population starts as the top seeds (the corpus samples with the highest max|a| for the
kind, cut to the search length). Each step makes `batch` children: a parent drawn by a
two-way tournament, half the time recombined with a second one (one-point crossover, the
same length, so positions keep their meaning), then 1 or 2 tokens replaced by random
vocabulary tokens. Children that round-trip as text are scored exactly; the best
`population` of parents and children survive. No gradient: it works for any model.
"""

from __future__ import annotations

import torch

from .common import Found, Scorer, generator, pick, rng_state, set_rng_state


class CorpusSearch:
    def __init__(self, scorer: Scorer, allowed: torch.Tensor, seeds: list[Found], seed: int, *,
                 batch: int = 32, population: int = 16):  # fmt: skip
        self.scorer, self.allowed, self.batch, self.size = scorer, allowed, batch, population
        self.pop = sorted(seeds, key=lambda f: -f.value)[:population]
        self.g = generator(seed)
        self.steps = 0
        first, n_prefix = scorer.obj.first, len(scorer.prefix)
        self.positions = [j for j in range(len(self.pop[0].body)) if n_prefix + j >= first]

    @property
    def cost(self) -> int:
        return self.batch

    @property
    def best(self) -> Found:
        return self.pop[0]

    def step(self) -> None:
        self.steps += 1
        have = {tuple(f.body) for f in self.pop}
        cands: list[list[int]] = []
        for _ in range(4):  # children that do not round-trip are dropped: breed again, a few times
            kids = [self._child() for _ in range(self.batch - len(cands))]
            cands += [c for c in self.scorer.valid(kids) if tuple(c) not in have and c not in cands]
            if len(cands) >= self.batch:
                break
        merged = self.pop + self.scorer(cands[: self.batch], self.steps)
        # stable sort: on equal values the older input stays ahead
        self.pop = sorted(merged, key=lambda f: -f.value)[: self.size]

    def _parent(self) -> list[int]:
        a, b = pick(self.g, len(self.pop)), pick(self.g, len(self.pop))
        return list(self.pop[min(a, b)].body)  # the better of two (pop is sorted)

    def _child(self) -> list[int]:
        body = self._parent()
        if len(self.pop) > 1 and pick(self.g, 2):
            other, cut = self._parent(), 1 + pick(self.g, len(body) - 1)  # length >= 2 (StressConfig)
            body = body[:cut] + other[cut:]
        for _ in range(1 + pick(self.g, 2)):
            j = self.positions[pick(self.g, len(self.positions))]
            body[j] = int(self.allowed[pick(self.g, self.allowed.numel())])
        return body

    def state_dict(self) -> dict:
        return {"pop": [f.to_json() for f in self.pop], "steps": self.steps, "rng": rng_state(self.g)}

    def load_state_dict(self, s: dict) -> None:
        self.pop, self.steps = [Found(**f) for f in s["pop"]], s["steps"]
        set_rng_state(self.g, s["rng"])
