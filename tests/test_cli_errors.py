"""Bad input: one line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from signalling import SignalInDestructor

GOOD_CORPUS = '{"text": "hello world"}\n'


def actscope(*args, cwd=None, env=None, **kwargs):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "actscope", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
        **kwargs,
    )


def assert_clean_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("actscope: error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def corpus_file(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(GOOD_CORPUS)
    return p


def test_nonexistent_model_path(tmp_path, corpus_file):
    r = actscope("measure", str(tmp_path / "nope"), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "nope", "neither a built-in name nor an existing path")


def test_directory_without_weights(tmp_path, corpus_file):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama"}')
    r = actscope("measure", str(d), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, str(d))


def test_truncated_gguf(tmp_path, corpus_file):
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 100)
    r = actscope("measure", str(f), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "broken.gguf")


def test_unknown_builtin_name(tmp_path, corpus_file):
    r = actscope("measure", "gemma-3-27m", "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "gemma-3-27m")


def test_empty_corpus(tmp_path):
    c = tmp_path / "empty.jsonl"
    c.write_text("")
    r = actscope("measure", "--corpus", str(c), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "empty.jsonl")


def test_corpus_line_without_text(tmp_path):
    c = tmp_path / "bad.jsonl"
    c.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    r = actscope("measure", "--corpus", str(c), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "bad.jsonl", "text")


def test_invalid_dtype(tmp_path, corpus_file):
    r = actscope("measure", "--corpus", str(corpus_file), "--dtype", "float8", "-o", str(tmp_path / "o"))
    assert_clean_error(r, "float8")


def test_max_length_below_two(tmp_path, corpus_file):
    r = actscope("measure", "--corpus", str(corpus_file), "--max-length", "1", "-o", str(tmp_path / "o"))
    assert_clean_error(r, "max-length")


def test_unwritable_output_directory(tmp_path, corpus_file):
    # A path below a regular file cannot be created, even by root.
    f = tmp_path / "file"
    f.write_text("x")
    r = actscope("measure", "--corpus", str(corpus_file), "-o", str(f / "run"))
    assert_clean_error(r, "cannot write")


def test_existing_output_without_overwrite(tmp_path, corpus_file):
    o = tmp_path / "o"
    o.mkdir()
    (o / "run.json").write_text("{}")
    r = actscope("measure", "--corpus", str(corpus_file), "-o", str(o))
    assert_clean_error(r, "already exists", "--overwrite")


def test_show_on_a_non_run(tmp_path):
    r = actscope("show", str(tmp_path))
    assert_clean_error(r, "not an actscope run")


def test_unknown_site_selector(tmp_path, corpus_file):
    r = actscope("measure", "--corpus", str(corpus_file), "--sites", "bogus", "-o", str(tmp_path / "o"))
    assert_clean_error(r, "bogus")


def test_zero_or_negative_limit(tmp_path, corpus_file):
    for n in ("0", "-3"):
        r = actscope("measure", "--corpus", str(corpus_file), "--limit", n, "-o", str(tmp_path / "o"))
        assert_clean_error(r, "--limit")
    assert not (tmp_path / "o").exists()


def test_sites_matching_nothing(tmp_path, corpus_file):
    r = actscope(
        "measure",
        "smollm2-135m",
        "--corpus",
        str(corpus_file),
        "--sites",
        "layers.999.*",
        "-o",
        str(tmp_path / "o"),
    )
    assert_clean_error(r, "matches no site")
    assert not (tmp_path / "o" / "run.json").exists()


def test_model_that_is_not_a_causal_lm(tmp_path, corpus_file):
    from transformers import AutoConfig

    d = tmp_path / "bert"
    AutoConfig.for_model(
        "bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(d)
    (d / "model.safetensors").write_bytes(b"")
    r = actscope("measure", str(d), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "causal")


def test_tokenizer_without_the_model(tmp_path, corpus_file):
    from tinylm import char_tokenizer

    d = tmp_path / "tok-only"
    char_tokenizer().save_pretrained(d)
    r = actscope("measure", str(d), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, str(d))


def test_corpus_with_invalid_utf8(tmp_path):
    c = tmp_path / "latin1.jsonl"
    c.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    r = actscope("measure", "--corpus", str(c), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "UTF-8")


def test_non_jsonl_file_given_as_jsonl(tmp_path):
    c = tmp_path / "notes.jsonl"
    c.write_text("just some prose, not JSON\n")
    r = actscope("measure", "--corpus", str(c), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "notes.jsonl")


def test_run_directory_from_a_newer_schema(tmp_path):
    (tmp_path / "run.json").write_text('{"schema_version": 99}')
    r = actscope("show", str(tmp_path))
    assert_clean_error(r, "99", "upgrade")


def test_pickled_weights_refused_by_default(tmp_path, corpus_file):
    import torch

    from tinylm import char_tokenizer, tiny_model

    d = tmp_path / "pickled"
    m = tiny_model("llama")
    m.config.save_pretrained(d)
    torch.save(m.state_dict(), d / "pytorch_model.bin")
    char_tokenizer().save_pretrained(d)
    r = actscope("measure", str(d), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "--allow-pickle")


def test_real_checkpoint_missing_a_layer(tmp_path, corpus_file):
    """SmolLM2's converted safetensors with layer 3 deleted: random weights would be measured."""
    import shutil

    from safetensors.torch import load_file, save_file

    from actscope.models import resolve_source

    d = tmp_path / "smollm2"
    shutil.copytree(resolve_source("smollm2-135m").directory, d)
    tensors = {k: v for k, v in load_file(d / "model.safetensors").items() if ".layers.3." not in k}
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    r = actscope("measure", str(d), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "do not match its config: missing 9 tensors (model.layers.3.")
    assert not (tmp_path / "o" / "run.json").exists()


def test_max_memory_that_is_not_a_size(tmp_path, corpus_file):
    r = actscope(
        "measure", "smollm2-135m", "--corpus", str(corpus_file), "--device-map", "auto",
        "--max-memory", "cpu=lots", "-o", str(tmp_path / "o"),
    )  # fmt: skip
    assert_clean_error(r, "invalid --max-memory size 'lots' for cpu")


def test_negative_shard_reaches_the_range_check(tmp_path, corpus_file):
    r = actscope("measure", "--corpus", str(corpus_file), "--shard", "-1/2", "-o", str(tmp_path / "o"))
    assert_clean_error(r, "--shard -1/2 is out of range", "0 <= I < N")


@pytest.mark.parametrize("dropped", [False, True], ids=["raised", "dropped-by-a-destructor"])
def test_interrupt_while_writing_the_final_tables_says_resume(
    tmp_path, corpus_file, monkeypatch, capsys, dropped
):
    """A real SIGINT after the last batch, as the result tables are written: the state is
    saved, so the message says how to finish, and --resume does. Also when the interrupt
    lands in a destructor, which drops its exception: the run is not marked complete."""
    from actscope import cli, finish

    real = finish.write_table

    def interrupted_write(*args, **kwargs):
        if dropped:
            monkeypatch.setattr(sys, "unraisablehook", lambda u: None)
            SignalInDestructor(signal.SIGINT)  # collected at once: the handler runs in __del__
        else:
            signal.raise_signal(signal.SIGINT)  # delivered to this thread before it returns
        return real(*args, **kwargs)

    out = tmp_path / "o"
    argv = ["measure", "smollm2-135m", "--corpus", str(corpus_file), "--sites", "embed.out", "-o", str(out)]
    monkeypatch.setattr(finish, "write_table", interrupted_write)
    assert cli.main([*argv, "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "state saved in" in err and "--resume" in err, err
    assert '"status": "complete"' not in (out / "run.json").read_text()
    monkeypatch.setattr(finish, "write_table", real)
    assert cli.main([*argv, "--no-progress", "--resume"]) == 0
    assert '"status": "complete"' in (out / "run.json").read_text()


def test_library_error_with_paragraphs_is_one_line(tmp_path, corpus_file):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "no-such-arch"}')
    r = actscope("measure", str(d), "--corpus", str(corpus_file), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "cannot read the config", "no-such-arch")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_text_column_for_measure(tmp_path):
    c = tmp_path / "c.jsonl"
    c.write_text('{"body": "The cat sat on the mat."}\n{"body": "A dog ran."}\n')
    r = actscope("measure", "smollm2-135m", "--corpus", str(c), "-o", str(tmp_path / "o"))
    assert_clean_error(r, "has no column 'text'", "--text-column")  # the hint names a real flag
    out = tmp_path / "o"
    r = actscope(
        "measure", "smollm2-135m", "--corpus", str(c), "--text-column", "body", "--sites", "embed.out",
        "-o", str(out), "--no-progress",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["corpus"]["text_column"] == "body" and manifest["tokens"]["samples"] == 2


def test_text_column_for_quant(tmp_path):
    c = tmp_path / "c.jsonl"
    c.write_text('{"body": "The cat sat on the mat."}\n')
    r = actscope(
        "quant", "smollm2-135m", "--corpus", str(c), "--text-column", "nosuch", "-o", str(tmp_path / "o")
    )
    assert_clean_error(r, "has no column 'nosuch'")
