"""Shared fixtures: a real character-level tokenizer, tiny random models, tiny corpora.

Tiny random-initialised models cover structure; real models (Gemma 3 270M,
SmolLM2 135M) are loaded by the `slow` tests.
"""

from __future__ import annotations

import pytest

from tinylm import char_tokenizer


@pytest.fixture
def tok():
    return char_tokenizer()


@pytest.fixture(scope="session")
def gemma():
    """The embedded default model, Gemma 3 270M (dequantized GGUF), float32 on the CPU."""
    from actscope.models import load_model

    return load_model("gemma-3-270m", dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def smollm():
    from actscope.models import load_model

    return load_model("smollm2-135m", dtype="float32", device="cpu")
