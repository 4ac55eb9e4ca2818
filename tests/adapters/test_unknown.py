"""Families without a table: generic discovery measures what it finds and names
what is missing; a model with no decoder layers gets a clear error."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from actscope.adapters import ADAPTERS, discover_sites
from actscope.config import MeasureConfig
from actscope.errors import ModelError
from actscope.runner import measure

SMALL = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
# model type -> (config overrides, kinds generic discovery cannot find in it)
UNKNOWN = {
    "starcoder2": ({}, ["gate"]),  # c_fc -> gelu -> c_proj
    "lfm2": ({}, ["act"]),  # SwiGLU with F.silu inline: no activation module
    "mamba": (
        dict(
            state_size=4, expand=2, intermediate_size=None, num_attention_heads=None, num_key_value_heads=None
        ),
        ["mlp", "gate", "act", "query", "key", "value", "attn_logits"],
    ),  # mixer only: no MLP, and no attention function (no query/key/value/logits)
    "granitemoe": (dict(num_local_experts=4, num_experts_per_tok=2), ["gate", "act"]),  # MoE: experts found
}


def unknown_model(model_type: str, vocab_size: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    over, _ = UNKNOWN[model_type]
    kw = {k: v for k, v in {**SMALL, **over}.items() if v is not None}
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(
        AutoConfig.for_model(model_type, vocab_size=vocab_size, **kw)
    ).eval()


@pytest.mark.parametrize("model_type", sorted(UNKNOWN))
def test_unknown_family_is_measured_and_missing_kinds_are_named(
    model_type, as_loaded, char_tok, corpus, tmp_path
):
    assert model_type not in ADAPTERS
    model = unknown_model(model_type, len(char_tok))
    plan = discover_sites(model)
    assert plan.table_name == "default"
    assert plan.missing_kinds == UNKNOWN[model_type][1]
    cfg = MeasureConfig(
        model=model_type,
        out=str(tmp_path / "run"),
        progress=False,
        max_batch=2,
        max_length=64,
        token_budget=256,
    )
    out = measure(cfg, loaded=as_loaded(model, model_type), corpus=corpus)
    arch = json.loads((out / "run.json").read_text())["architecture"]
    assert arch["adapter"] == "default"
    assert arch["kinds_missing"] == UNKNOWN[model_type][1]
    assert {"embedding", "residual", "attention"} <= set(arch["kinds_found"])


def test_model_without_decoder_layers_is_a_clear_error():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10))
    with pytest.raises(ModelError, match="cannot find the decoder layers"):
        discover_sites(model)
