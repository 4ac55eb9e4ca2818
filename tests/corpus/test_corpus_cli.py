"""`actscope corpus` subcommands through argparse, without the main CLI."""

from __future__ import annotations

import argparse

import pytest

from actscope import cli_corpus


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="actscope")
    cli_corpus.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_list(capsys):
    assert _run(["corpus", "list"]) == 0
    out = capsys.readouterr().out
    assert "encyclopedia" in out and "5,000" in out


def test_show_profile_domain(capsys):
    assert _run(["corpus", "show", "quick", "--domain", "code", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("[code /") == 2


def test_show_unknown_domain(capsys):
    assert _run(["corpus", "show", "quick", "--domain", "poetry"]) == 2


def test_stats_file(tmp_path, capsys):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "hello", "domain": "a"}\n{"text": "world!", "domain": "b"}\n')
    assert _run(["corpus", "stats", str(p)]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "11" in out


def test_stats_with_tokenizer(monkeypatch, capsys, tok):
    monkeypatch.setattr(cli_corpus, "_tokenizer", lambda source: tok)
    assert _run(["corpus", "stats", "quick", "--model", "x"]) == 0
    assert "tokens" in capsys.readouterr().out


def test_build_needs_a_flag(capsys):
    assert _run(["corpus", "build"]) == 2


def test_profile_choices():
    with pytest.raises(SystemExit):
        _run(["corpus", "build", "--profile", "huge"])


def test_stats_profile_option_lists_the_full_corpus(capsys):
    assert _run(["corpus", "stats", "--profile", "full"]) == 0
    out = capsys.readouterr().out
    domains = ["code", "dialogue_qa", "encyclopedia", "fiction", "legal", "math", "multilingual", "news"]
    domains += ["scientific", "speech", "tech_docs", "web_email"]
    assert all(f"│ {d} " in out for d in domains) and "│ total        │   5,000 │" in out


@pytest.mark.parametrize("argv", [["corpus", "stats"], ["corpus", "show", "quick", "--profile", "full"]])
def test_one_corpus_is_required(argv):
    from actscope.errors import UserError

    with pytest.raises(UserError, match="give one corpus"):
        _run(argv)
