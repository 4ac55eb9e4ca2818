"""Bad input: one line naming the problem and the fix, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

GOOD_CORPUS = '{"text": "hello world"}\n'


def actscope(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "actscope", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
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
