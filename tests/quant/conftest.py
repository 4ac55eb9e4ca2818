"""A tiny random Llama and a character tokenizer: the quant pipeline end to end in seconds."""

from __future__ import annotations

import pytest
import torch

from actscope.corpus import Corpus, Sample
from actscope.models import LoadedModel


class CharTokenizer:
    """ids: 1 = BOS, 0 = pad, 2.. = characters mod 60 (vocab 64)."""

    pad_token_id = 0
    bos_token_id = 1

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[1] * add_special_tokens + [2 + ord(c) % 60 for c in t] for t in texts]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


@pytest.fixture(scope="session")
def tiny_loaded() -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
    )
    model = AutoModelForCausalLM.from_config(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():  # a massive channel in the residual stream, as real models have
        model.model.embed_tokens.weight[1, 7] = 80.0
    return LoadedModel(model, CharTokenizer(), {"source": "tiny-llama", "model_type": "llama"})


@pytest.fixture(scope="session")
def tiny_corpus() -> Corpus:
    texts = [("hello world " * (2 + i % 6)) + f"sample {i}" for i in range(24)]
    return Corpus(
        "tiny", tuple(Sample(f"s{i}", f"d{i % 3}", "t", t) for i, t in enumerate(texts)), {"kind": "test"}
    )


@pytest.fixture(scope="session")
def tiny_olmo2() -> LoadedModel:
    """A tiny random Olmo2 (no input norms: q/k/v read the residual stream) with the same tokenizer."""
    from actscope.adapters.tiny import tiny_model

    return LoadedModel(tiny_model("olmo2", vocab_size=64), CharTokenizer(), {"source": "tiny-olmo2"})
