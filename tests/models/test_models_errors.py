"""Every way a model source can be wrong gets a one-line ModelError/UserError that names the
bad value and the fix. None of these tests loads real weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actscope.errors import ModelError, UserError
from actscope.models import ZOO, load_model, load_tokenizer, resolve_device, resolve_dtype


def save_tiny(directory: Path, model, tokenizer=None) -> Path:
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def test_zoo_names():
    assert ZOO.names() == ["gemma-3-270m", "smollm2-135m"]


@pytest.mark.parametrize(
    "name, device, expected",
    [
        (None, "cpu", torch.float32),
        (None, "cuda", torch.bfloat16),
        ("bf16", "cpu", torch.bfloat16),
        ("float16", "cpu", torch.float16),
        ("FLOAT32", "cuda", torch.float32),
    ],
)
def test_resolve_dtype(name, device, expected):
    assert resolve_dtype(name, device) is expected


def test_invalid_dtype():
    with pytest.raises(UserError, match=r"invalid --dtype 'float8'; choose float32, bfloat16 or float16"):
        resolve_dtype("float8", "cpu")
    with pytest.raises(UserError, match="invalid --dtype 'x'"):
        load_model("smollm2-135m", dtype="x")  # checked before anything is loaded


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="invalid --device 'toaster'"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")


def test_unknown_builtin_suggests(tmp_path):
    with pytest.raises(ModelError, match="unknown built-in model 'gemma-3-27m'") as err:
        load_model("gemma-3-27m", cache_dir=tmp_path)
    assert "did you mean gemma-3-270m" in str(err.value)
    assert "smollm2-135m" in str(err.value)  # the allowed set is named


def test_nonexistent_path(tmp_path):
    with pytest.raises(ModelError) as err:
        load_model(str(tmp_path / "nope"), cache_dir=tmp_path)
    assert str(err.value) == (
        f"model '{tmp_path / 'nope'}' is neither a built-in name nor an existing path; "
        "use gemma-3-270m, smollm2-135m, a model directory or a .gguf file"
    )


def test_hub_name_not_cached(tmp_path):
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_model("actscope-test/no-such-model", cache_dir=tmp_path)


def test_truncated_gguf(tmp_path, smollm2_gguf):
    bad = tmp_path / "short.gguf"
    bad.write_bytes(smollm2_gguf.read_bytes()[:1000])
    with pytest.raises(ModelError, match=r"short.gguf is truncated or not a GGUF file; re-download it"):
        load_model(str(bad), cache_dir=tmp_path / "cache")


def test_gguf_suffix_without_magic(tmp_path):
    bad = tmp_path / "empty.gguf"
    bad.write_bytes(b"")
    with pytest.raises(ModelError, match="truncated or not a GGUF file"):
        load_model(str(bad), cache_dir=tmp_path / "cache")


def test_other_file(tmp_path):
    (tmp_path / "weights.txt").write_text("hello")
    with pytest.raises(ModelError, match="is a file but not a GGUF file"):
        load_model(str(tmp_path / "weights.txt"))


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        load_model(str(tmp_path))


def test_directory_without_weights(tmp_path, tiny_llama):
    tiny_llama(16).config.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=f"no weights in {tmp_path}; expected model.safetensors"):
        load_model(str(tmp_path))


def test_pickle_only_refused_then_allowed(tmp_path, tiny_llama, tiny_tokenizer):
    model = tiny_llama(len(tiny_tokenizer))
    model.config.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError, match="only pickled weights") as err:
        load_model(str(tmp_path))
    assert "--allow-pickle only if the files are trusted" in str(err.value)
    loaded = load_model(str(tmp_path), allow_pickle=True)
    assert torch.equal(loaded.model.lm_head.weight, model.lm_head.weight)


def test_not_a_causal_lm(tmp_path):
    from transformers import AutoConfig

    AutoConfig.for_model("bert", hidden_size=64, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(ModelError, match="holds a 'bert' model, which is not a causal LM"):
        load_model(str(tmp_path))


def test_remote_code_needs_flag(tmp_path):
    config = {"model_type": "mystery", "auto_map": {"AutoConfig": "c.C", "AutoModelForCausalLM": "m.M"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="--trust-remote-code"):
        load_model(str(tmp_path))


def test_model_without_tokenizer(tmp_path, tiny_llama):
    save_tiny(tmp_path, tiny_llama(16))
    with pytest.raises(ModelError, match=f"no tokenizer files in {tmp_path}; copy the tokenizer"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError, match="no tokenizer files"):
        load_tokenizer(str(tmp_path))


def test_max_memory_needs_device_map(tmp_path):
    with pytest.raises(UserError, match="--max-memory needs --device-map"):
        load_model(str(tmp_path), max_memory={"cpu": "1GiB"})


# -- damaged or mismatched weights (issue 15, items 2 and 7) -----------------------------------------


def _rewrite(path: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    save_file(edit(tensors), path, metadata={"format": "pt"})


@pytest.fixture
def tiny_dir(tmp_path, tiny_llama, tiny_tokenizer) -> Path:
    return save_tiny(tmp_path / "m", tiny_llama(len(tiny_tokenizer)), tiny_tokenizer)


def test_missing_layer_is_an_error(tiny_dir):
    _rewrite(tiny_dir / "model.safetensors", lambda t: {k: v for k, v in t.items() if ".layers.1." not in k})
    with pytest.raises(ModelError, match=r"do not match its config: missing 9 tensors \(model\.layers\.1\."):
        load_model(str(tiny_dir))


def test_unexpected_tensor_is_an_error(tiny_dir):
    _rewrite(
        tiny_dir / "model.safetensors", lambda t: {**t, "model.layers.7.mlp.gate_proj.weight": torch.ones(2)}
    )
    with pytest.raises(ModelError, match=r"unexpected 1 tensor \(model\.layers\.7\.mlp\.gate_proj\.weight\)"):
        load_model(str(tiny_dir))


def test_config_whose_shapes_disagree_with_the_weights(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    cfg["intermediate_size"] = 96  # the weights were saved with 128
    (tiny_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ModelError,
        match=r"shape mismatch 6 tensors \(model\.layers\.0\.mlp\.down_proj\.weight \(64, 128\) vs \(64, 96\)",
    ):
        load_model(str(tiny_dir))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b[: len(b) // 2], "incomplete metadata"),
        (lambda b: b"\xff" * 8 + b[8:], "header too large"),
        (lambda b: b"", "header too small"),
    ],
)
def test_damaged_safetensors_file(tiny_dir, damage, reason):
    f = tiny_dir / "model.safetensors"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(ModelError, match=f"model.safetensors is truncated or corrupt .*{reason}"):
        load_model(str(tiny_dir))


def test_nan_weights_are_an_error(tiny_dir):
    def poison(t):
        t["model.layers.0.mlp.up_proj.weight"][3, 5] = float("nan")
        return t

    _rewrite(tiny_dir / "model.safetensors", poison)
    with pytest.raises(
        ModelError, match=r"hold nan or inf: 1 tensor \(model\.layers\.0\.mlp\.up_proj\.weight\)"
    ):
        load_model(str(tiny_dir))


@pytest.mark.parametrize(
    "max_memory, needle",
    [({"cpu": "lots"}, "invalid --max-memory size 'lots' for cpu"), ({"gpu0": "1GiB"}, "device 'gpu0'")],
)
def test_invalid_max_memory(tiny_dir, max_memory, needle):
    with pytest.raises(UserError, match=needle):
        load_model(str(tiny_dir), device_map="auto", max_memory=max_memory)


def test_unknown_model_type_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-arch", "hidden_size": 8}')
    with pytest.raises(ModelError, match="cannot read the config") as err:
        load_model(str(tmp_path))
    assert "\n" not in str(err.value) and "no-such-arch" in str(err.value)


# -- names that are not models, said as such (issue 15, unclear messages) -----------------------------


def test_fifo_as_model(tmp_path):
    import os

    os.mkfifo(tmp_path / "model")
    with pytest.raises(ModelError, match="is a FIFO, not a model directory or file"):
        load_model(str(tmp_path / "model"))


def test_symlink_loop_as_model(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ModelError, match="'.*loop' is a symlink loop"):
        load_model(str(tmp_path / "loop"))


def test_dangling_symlink_as_model(tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="is a dangling symlink"):
        load_model(str(tmp_path / "gone"))


def test_typo_in_a_local_path_is_not_a_hub_name(tmp_path, monkeypatch, tiny_dir):
    monkeypatch.chdir(tmp_path)  # "m" is the saved model: "models/x" style relative paths
    (tmp_path / "models").mkdir()
    (tiny_dir).rename(tmp_path / "models" / "smollm2")
    with pytest.raises(
        ModelError, match=r"model path 'models/smolm2' does not exist.*did you mean models/smollm2\?"
    ):
        load_model("models/smolm2")
