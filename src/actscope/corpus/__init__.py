"""Corpora: where texts come from, how they become token batches.

Sample, Corpus                              (types.py: the values)
load_corpus(spec) -> Corpus                 (sources.py: profiles and user files)
tokenize_corpus(corpus, tokenizer, ...) -> list[Sequence]   (tokenize.py)
make_batches(sequences, ...) -> list[Batch]                 (batching.py)
"""

from .batching import Batch, make_batches
from .sources import load_corpus
from .tokenize import Sequence, TokenizeConfig, tokenize_corpus
from .types import Corpus, Sample

__all__ = [
    "Batch",
    "Corpus",
    "Sample",
    "Sequence",
    "TokenizeConfig",
    "load_corpus",
    "make_batches",
    "tokenize_corpus",
]
