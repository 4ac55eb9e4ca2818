"""Where both searches start: the top samples of a corpus run, cut to the search length.

Samples are ranked by their measured max|a| at the kind's sites (samples.parquet, all
positions). Where the BOS peak ties every sample (Gemma's residual stream), that order
is the corpus order; the seeds are then scored exactly with the objective, which leaves
position 0 out, and each search keeps its own kind's best.
"""

from __future__ import annotations

import numpy as np

from ..corpus import load_corpus
from ..errors import RunDirError, UserError
from .table import kind_sites
from .tokens import round_trips


def run_corpus(view):
    """The corpus a run measured, checked to be the same text (by its hash)."""
    entry = view.manifest["corpus"]
    corpus = load_corpus(entry["name"])
    if corpus.hash != entry["hash"]:
        raise RunDirError(
            f"the corpus {entry['name']!r} of {view.path} has changed since it was measured",
            "measure the corpus again, or give another --from run",
        )
    return corpus


def seed_bodies(
    view, tok, prefix: list[int], kinds: list[str], length: int, per_kind: int
) -> list[list[int]]:
    """Bodies (ids after the prefix) of the top samples per kind: `length` tokens that round-trip."""
    corpus = run_corpus(view)
    sample_max = view.sample_max()  # hooked site -> (n_samples,)
    rows = view.samples.column("sample").to_numpy()
    order: list[int] = []
    for kind in kinds:
        cols = [sample_max[view.source(s)] for s in kind_sites(view, kind) if view.source(s) in sample_max]
        if not cols:
            raise UserError(
                f"the --from run {view.path} measured no {kind} site",
                f"measure it with those sites (e.g. --sites {kind}), or leave the kind out",
            )
        peak = np.max(np.stack(cols), 0)
        order += [int(rows[i]) for i in np.argsort(-peak, kind="stable")[: 4 * per_kind]]
    idx = list(dict.fromkeys(order))
    enc = tok([corpus.samples[i].text for i in idx], add_special_tokens=True)["input_ids"]
    n = len(prefix)
    bodies = [list(e[n : n + length]) for e in enc if list(e[:n]) == prefix and len(e) - n >= length]
    bodies = [b for b, ok in zip(bodies, round_trips(tok, prefix, bodies), strict=True) if ok]
    if not bodies:
        raise UserError(
            f"no top sample of {view.path} has {length} tokens that tokenize back to themselves",
            "lower --length",
        )
    return bodies
