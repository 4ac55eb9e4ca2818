"""Fixtures for the architecture tests: a character tokenizer sized to the tiny
models, a tiny in-memory corpus, and one tiny model per family (built once)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from actscope.adapters.tiny import tiny_model
from actscope.corpus import Corpus, Sample

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'()-\n"
SPECIALS = ("<pad>", "<bos>", "<unk>")  # ids 0, 1, 2

TEXTS = (
    "the cat sat on the mat.",
    "def f(x): return x - 2",
    "article 1. all human beings are born free and equal.",
    "call me ishmael; some years ago, never mind how long.",
    "q: how do i sort a list? a: sorted(xs).",
)


def char_tokenizer():
    """A real PreTrainedTokenizerFast: one token per character, <bos> prepended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + tuple(ALPHABET))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def char_tok():
    return char_tokenizer()


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    """Five samples of different lengths: batches of two are right-padded."""
    return Corpus("tiny-adapters", tuple(Sample(f"s{i}", "test", "tests", t) for i, t in enumerate(TEXTS)))


@pytest.fixture(scope="session")
def family_model(char_tok):
    """family -> tiny random model with vocab_size = len(tokenizer), built once per session."""
    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = tiny_model(family, vocab_size=len(char_tok))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def as_loaded(char_tok):
    """model, family -> the LoadedModel fields measure() reads."""

    def make(model, family: str):
        info = {"source": f"tiny-{family}", "sha256": f"tiny-{family}", "model_type": family}
        return SimpleNamespace(model=model, tokenizer=char_tok, info=info)

    return make
