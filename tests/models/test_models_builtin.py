"""Real built-in models: convert once, reload from the cache fast and bit-identically."""

from __future__ import annotations

import json
import time

import pytest
import torch

from actscope.models import load_model

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
EXPECTED = {
    # name: (model_type, architecture, GGUF quant mix, tokenizer adds BOS, BOS token)
    "gemma-3-270m": ("gemma3_text", "Gemma3ForCausalLM", "Q4_K_M", True, "<bos>"),
    "smollm2-135m": ("llama", "LlamaForCausalLM", "Q4_1", False, "<|im_start|>"),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def first_load(request, model_cache):
    """The first load in the session's fresh cache: converts the GGUF."""
    start = time.perf_counter()
    loaded = load_model(request.param, dtype="float32", device="cpu", cache_dir=model_cache)
    return request.param, loaded, time.perf_counter() - start


def logits(loaded) -> torch.Tensor:
    ids = loaded.tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return loaded.model(ids).logits


def test_info(first_load):
    name, loaded, seconds = first_load
    model_type, arch, quant, add_bos, bos = EXPECTED[name]
    info = loaded.info
    print(f"{name}: first load {seconds:.1f} s")
    assert info["kind"] == "builtin" and info["source"] == name
    assert (info["model_type"], info["architecture"], info["dequantized_from"]) == (model_type, arch, quant)
    assert "dequantized GGUF weights" in info["note"]
    assert info["hash_method"] == "sha256 of the GGUF file" and len(info["sha256"]) == 64
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert 100e6 < info["n_params"] < 300e6
    json.dumps(info)


def test_bos(first_load):
    name, loaded, _ = first_load
    _, _, _, add_bos, bos = EXPECTED[name]
    assert loaded.info["add_bos"] is add_bos and loaded.info["bos_token"] == bos
    ids = loaded.tokenizer("a")["input_ids"]
    assert (ids[0] == loaded.tokenizer.bos_token_id) is add_bos


def test_eval_no_grad_tied(first_load):
    _, loaded, _ = first_load
    model = loaded.model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # lm_head is tied to the embeddings in both GGUFs; the safetensors round trip must keep that.
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_cached_reload_does_not_convert_and_is_identical(first_load, model_cache, monkeypatch):
    """The second load reads the cached conversion (~1-4 s on two cores against 30-70 s to
    convert): the converter is not called at all, and the weights are bit-identical."""
    from actscope.models import gguf_convert

    def no_conversion(*args, **kwargs):
        raise AssertionError("a cached model was converted again")

    monkeypatch.setattr(gguf_convert, "convert", no_conversion)
    name, first, _ = first_load
    start = time.perf_counter()
    again = load_model(name, dtype="float32", device="cpu", cache_dir=model_cache)
    print(f"{name}: cached load {time.perf_counter() - start:.1f} s")
    assert again.info == first.info
    assert torch.equal(logits(first), logits(again))
    assert not list(model_cache.glob(".*.tmp"))  # no half-written cache entries left behind
