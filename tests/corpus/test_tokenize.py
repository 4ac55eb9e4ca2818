"""Family-specific tokenization: BOS policies on both real tokenizers, truncation and windows."""

from __future__ import annotations

import pytest

from actscope.corpus import Corpus, Sample, TokenizeConfig, make_batches, tokenize_corpus
from actscope.corpus.batching import padding_fraction
from actscope.errors import UserError
from tinylm import char_tokenizer, tiny_corpus


@pytest.fixture(scope="module")
def real_tokenizers():
    from actscope.models import load_tokenizer

    return {"gemma": load_tokenizer("gemma-3-270m"), "smollm": load_tokenizer("smollm2-135m")}


ONE = Corpus("one", (Sample("a", "news", "t", "The committee met on Tuesday."),))


@pytest.mark.slow
@pytest.mark.parametrize(
    "which,policy,starts_with_bos",
    [
        ("gemma", "auto", True),  # Gemma's tokenizer adds <bos> by default
        ("gemma", "always", True),
        ("gemma", "never", False),
        ("smollm", "auto", False),  # SmolLM2's adds none
        ("smollm", "always", True),
        ("smollm", "never", False),
    ],
)
def test_bos_policy_on_real_tokenizers(real_tokenizers, which, policy, starts_with_bos):
    tok = real_tokenizers[which]
    (seq,) = tokenize_corpus(ONE, tok, TokenizeConfig(bos=policy))
    assert (seq.ids[0] == tok.bos_token_id) is starts_with_bos
    assert seq.ids.count(tok.bos_token_id) == int(starts_with_bos)  # never doubled
    plain = tok("The committee met on Tuesday.", add_special_tokens=False)["input_ids"]
    assert list(seq.ids[int(starts_with_bos) :]) == plain


@pytest.mark.slow
def test_chat_template_wraps_a_user_turn(real_tokenizers):
    tok = real_tokenizers["smollm"]
    (seq,) = tokenize_corpus(ONE, tok, TokenizeConfig(chat_template=True))
    text = tok.decode(list(seq.ids))
    assert "user" in text and "The committee met on Tuesday." in text and len(seq.ids) > 8


def long_corpus():
    return Corpus("long", tuple(Sample(f"s{i}", "d", "t", "abcdefghij" * (i + 1)) for i in range(6)))


def test_truncate_keeps_a_prefix():
    tok = char_tokenizer()
    seqs = tokenize_corpus(long_corpus(), tok, TokenizeConfig(max_length=16))
    assert [len(s.ids) for s in seqs] == [11, 16, 16, 16, 16, 16]
    full = tok(long_corpus().samples[3].text)["input_ids"]
    assert list(seqs[3].ids) == full[:16]


def test_windows_keep_every_token_exactly_once():
    tok = char_tokenizer()
    seqs = tokenize_corpus(long_corpus(), tok, TokenizeConfig(max_length=16, overflow="window"))
    for i, s in enumerate(long_corpus().samples):
        full = tok(s.text)["input_ids"]
        parts = [q for q in seqs if q.sample == i]
        assert [q.offset for q in parts] == list(range(0, len(full), 16))
        assert [t for q in parts for t in q.ids] == full
        assert all(len(q.ids) <= 16 for q in parts)


def test_batches_respect_the_budget_and_cover_every_sequence():
    tok = char_tokenizer()
    seqs = tokenize_corpus(tiny_corpus(8), tok, TokenizeConfig())
    batches = make_batches(seqs, token_budget=120, max_batch=3, pad_id=tok.pad_token_id)
    assert sum(b.n_tokens for b in batches) == sum(len(s.ids) for s in seqs)
    assert sorted(x for b in batches for x in b.sample.tolist()) == list(range(8))
    for b in batches:
        B, S = b.input_ids.shape
        assert B <= 3 and (B * S <= 120 or B == 1)
        assert int(b.attention_mask.sum()) == b.n_tokens
    assert 0 <= padding_fraction(batches) < 0.5


def test_bad_tokenize_options():
    with pytest.raises(UserError, match="--bos"):
        TokenizeConfig(bos="sometimes")
    with pytest.raises(UserError, match="max-length"):
        TokenizeConfig(max_length=1)


# -- tokenize only what is measured (issue 15, item 13) ----------------------------------------------


class _Recording:
    """The real tokenizer, noting the longest text it was given."""

    def __init__(self, tok):
        self.tok, self.longest = tok, 0

    def __call__(self, texts, **kwargs):
        self.longest = max([self.longest, *(len(t) for t in texts)])
        return self.tok(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gemma", "smollm"])
def test_truncation_tokenizes_a_prefix_only(real_tokenizers, which):
    from actscope.corpus import load_corpus

    paragraphs = "\n\n".join(s.text for s in load_corpus("quick").samples)
    huge = Corpus("huge", (Sample("h", "web", "t", paragraphs * (4_000_000 // len(paragraphs) + 1)),))
    tok = _Recording(real_tokenizers[which])
    (seq,) = tokenize_corpus(huge, tok, TokenizeConfig(max_length=32))
    assert tok.longest < 10_000  # of 4 MB: (32 + margin) tokens' worth of characters
    whole = real_tokenizers[which](huge.samples[0].text[:100_000], add_special_tokens=True)["input_ids"]
    assert seq.ids == tuple(whole[:32])


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gemma", "smollm"])
@pytest.mark.parametrize("max_length", [16, 200])
def test_prefix_tokenization_equals_whole_text_on_the_standard_corpus(real_tokenizers, which, max_length):
    """Every sample of the standard corpus (12 domains, long documents) gives the very tokens
    that tokenizing it whole gives."""
    from actscope.corpus import load_corpus

    corpus = load_corpus("standard")
    tok = real_tokenizers[which]
    seqs = tokenize_corpus(corpus, tok, TokenizeConfig(max_length=max_length))
    whole = tok([s.text for s in corpus.samples], add_special_tokens=True)["input_ids"]
    assert [s.ids for s in seqs] == [tuple(ids[:max_length]) for ids in whole if ids]


@pytest.mark.slow
def test_prefix_tokenization_with_the_chat_template(real_tokenizers):
    from actscope.corpus import load_corpus

    corpus = Corpus("q", load_corpus("standard").samples[:200])
    tok = real_tokenizers["smollm"]
    seqs = tokenize_corpus(corpus, tok, TokenizeConfig(max_length=24, chat_template=True))
    for s, seq in zip(corpus.samples, seqs, strict=True):
        whole = tok.apply_chat_template([{"role": "user", "content": s.text}], tokenize=True)["input_ids"]
        assert seq.ids == tuple(whole[:24])


@pytest.mark.slow
def test_max_length_beyond_the_context_warns(caplog):
    from actscope.models import load_model

    loaded = load_model("smollm2-135m")  # context 8,192 (max_position_embeddings)
    with caplog.at_level("WARNING", logger="actscope"):
        tokenize_corpus(ONE, loaded.tokenizer, TokenizeConfig(max_length=10_000))
    assert "--max-length 10000 exceeds the model's context of 8192 tokens" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="actscope"):
        tokenize_corpus(ONE, loaded.tokenizer, TokenizeConfig(max_length=8192))
    assert "exceeds" not in caplog.text
