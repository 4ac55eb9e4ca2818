"""Loading Hugging Face model directories: tiny random llamas saved with a tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from actscope.models import load_model, load_tokenizer


def test_tiny_llama_directory(tmp_path, tiny_llama, tiny_tokenizer):
    model = tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    ids = torch.tensor([[1, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, model.eval()(ids).logits)
    info = loaded.info
    assert info["kind"] == "hf_dir" and info["source"] == str(tmp_path)
    assert info["model_type"] == "llama" and info["architecture"] == "LlamaForCausalLM"
    assert info["n_params"] == sum(p.numel() for p in model.parameters())
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["hash_method"].startswith("sha256 over the sorted weight-file names")
    assert len(info["sha256"]) == 64
    json.dumps(info)  # goes into run.json as is


def test_dtype_and_device_map(tmp_path, tiny_llama, tiny_tokenizer):
    tiny_llama(len(tiny_tokenizer)).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), dtype="bfloat16", device_map="cpu")
    assert next(loaded.model.parameters()).dtype is torch.bfloat16
    assert loaded.info["dtype"] == "bfloat16" and loaded.info["device"] == "device_map"
    json.dumps(loaded.info)


def test_hash_tracks_weights(tmp_path, tiny_llama, tiny_tokenizer):
    infos = []
    for seed in (0, 1):
        directory = tmp_path / str(seed)
        torch.manual_seed(seed)
        model = tiny_llama(len(tiny_tokenizer))
        with torch.no_grad():
            model.lm_head.weight.normal_(generator=torch.Generator().manual_seed(seed))
        model.save_pretrained(directory)
        tiny_tokenizer.save_pretrained(directory)
        infos.append(load_model(str(directory)).info)
    assert infos[0]["sha256"] != infos[1]["sha256"]


@pytest.mark.slow
def test_tiny_llama_with_real_tokenizer(tmp_path, model_cache, tiny_llama):
    """The brief's directory case: random weights, the SmolLM2 tokenizer from the converted cache."""
    tokenizer = load_tokenizer("smollm2-135m", cache_dir=model_cache)
    tiny_llama(len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    ids = loaded.tokenizer("The cat sat on the mat", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = loaded.model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert loaded.info["add_bos"] is False and loaded.info["bos_token"] == "<|im_start|>"
