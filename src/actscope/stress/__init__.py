"""`actscope stress`: search for the inputs that drive activations highest.

objective.py      max|a| at the target sites of each kind, from hooks (gradients allowed)
tokens.py         the searchable vocabulary, the family's BOS prefix, the tokenization round trip
search_corpus.py  black-box: mutate and recombine the top samples of a corpus run
search_grad.py    GCG-style: the embedding gradient ranks token swaps, a batch is scored exactly
table.py          the per-kind table, from the re-measured run only
run.py            budget, resumable state, progress, worst.jsonl, the re-measure
"""

from .run import StressConfig, run_stress

__all__ = ["StressConfig", "run_stress"]
