"""The real SmolLM2 135M as a user loads it: the built-in's cached HF directory, read by transformers."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def smol_hf():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actscope.models import resolve_source

    directory = resolve_source("smollm2-135m").directory
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(directory)
