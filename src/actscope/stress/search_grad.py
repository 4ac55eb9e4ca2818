"""Gradient-guided token substitution (GCG, Zou et al. 2023), maximising max|a| instead of a loss.

Per step, from the current best input x:
  1. one forward + backward: the signed peak a[q] of each position q (over the kind's sites
     and channels) and g[q] = d sum(a) / d e[q] at the embedding output;
  2. a swap q -> v is predicted to give |a[q] + g[q] . (E[v] - E[x_q])| (first order in the
     signed peak: |a| is even, so a large move either way raises it); the top-k tokens of each
     position by that prediction are the candidates;
  3. `batch` random (position, top-k token) swaps that round-trip as text are scored exactly;
  4. the best is kept when it beats x.
`ranked=False` draws the tokens uniformly instead: the random-search baseline at equal budget.
"""

from __future__ import annotations

import torch

from .common import Found, Scorer, generator, pick, rng_state, set_rng_state
from .objective import token_embeddings

GRAD_COST = 3  # a forward and a backward counted as three forward passes (backward ~ 2 forwards)


class GradSearch:
    def __init__(self, scorer: Scorer, allowed: torch.Tensor, start: Found, seed: int, *,
                 batch: int = 32, topk: int = 64, ranked: bool = True):  # fmt: skip
        self.scorer, self.allowed, self.best = scorer, allowed, start
        self.batch, self.topk, self.ranked = batch, min(topk, allowed.numel()), ranked
        self.g = generator(seed)
        self.steps = 0
        first, n_prefix = scorer.obj.first, len(scorer.prefix)
        # body positions the objective sees (a position before `first` has no peak to rank by)
        self.positions = [j for j in range(len(start.body)) if n_prefix + j >= first]

    @property
    def cost(self) -> int:
        return self.batch + (GRAD_COST if self.ranked else 0)

    def step(self) -> None:
        self.steps += 1
        choices = self._ranked_tokens() if self.ranked else None
        cands: list[list[int]] = []
        for _ in range(4):  # swaps that do not round-trip are dropped: draw again, a few times
            draw = [self._swap(choices) for _ in range(self.batch - len(cands))]
            cands += [c for c in self.scorer.valid(draw) if c != self.best.body and c not in cands]
            if len(cands) >= self.batch:
                break
        found = self.scorer(cands[: self.batch], self.steps)
        top = max(found, key=lambda f: f.value, default=None)
        if top is not None and top.value > self.best.value:
            self.best = top

    def _swap(self, choices) -> list[int]:
        j = self.positions[pick(self.g, len(self.positions))]
        row = choices[j] if choices is not None else self.allowed
        body = list(self.best.body)
        body[j] = int(row[pick(self.g, row.numel())])
        return body

    def _ranked_tokens(self) -> dict[int, torch.Tensor]:
        """Body position -> its top-k tokens by the first-order prediction of |peak|."""
        sc = self.scorer
        ids = torch.tensor([sc.prefix + self.best.body])
        step = sc.obj.gradient(ids, sc.kind)
        sc.passes += GRAD_COST
        emb = sc.obj.model.get_input_embeddings()
        cur = next(token_embeddings(emb, ids[0, sc.obj.first :]))  # (S', H)
        base = step.peaks - (step.grad * cur).sum(-1)  # (S',): the prediction without the swap term
        best_v = torch.full((len(base), 0), -1.0)
        best_i = torch.zeros((len(base), 0), dtype=torch.long)
        lo = 0
        for e in token_embeddings(emb, self.allowed):  # (n, H) chunks of the allowed vocabulary
            pred = (base[:, None] + step.grad @ e.T).abs()  # (S', n)
            v = torch.cat([best_v, pred], 1)
            i = torch.cat([best_i, self.allowed[lo : lo + e.shape[0]].expand(len(base), -1)], 1)
            best_v, top = v.topk(min(self.topk, v.shape[1]), dim=1)
            best_i = i.gather(1, top)
            lo += e.shape[0]
        shift = len(sc.prefix) - sc.obj.first  # body position j is row j + shift
        return {j: best_i[j + shift] for j in self.positions}

    def state_dict(self) -> dict:
        return {"best": self.best.to_json(), "steps": self.steps, "rng": rng_state(self.g)}

    def load_state_dict(self, s: dict) -> None:
        self.best, self.steps = Found(**s["best"]), s["steps"]
        set_rng_state(self.g, s["rng"])
