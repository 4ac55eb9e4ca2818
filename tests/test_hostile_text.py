"""Hostile corpus text (rich markup, terminal escapes, bidi overrides, Markdown and HTML) through
every view: measured with the real SmolLM2 135M, printed, carded and reported as plain text."""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt

from test_cli_errors import actscope

ESC_CLEAR = "\x1b[2J"
OSC8 = "\x1b]8;;http://evil.example\x07"
RLO = "\u202e"
LINK_DOMAIN = "[link=http://evil.example]click[/link]"
ROWS = [
    {"text": "The cat sat on the mat. " * 3, "domain": "[/]", "id": f"a{ESC_CLEAR}{OSC8}x"},
    {
        "text": f"Hello \x1b[31mred\x1b[0m world {RLO}txt.exe",
        "domain": LINK_DOMAIN,
        "id": "b|`<img src=x onerror=alert(1)>`",
    },
    {"text": "Plain news text here.", "domain": f"[news]{RLO}evil{ESC_CLEAR}", "id": f"c{RLO}abc"},
]
# A corpus file name that is Markdown and HTML: it is the corpus name in the card.
CORPUS_NAME = "c|`<img src=x onerror=alert(1)>`.jsonl"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    corpus = d / CORPUS_NAME
    corpus.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = d / "run"
    r = actscope(
        "measure", "smollm2-135m", "--corpus", str(corpus), "--sites", "layers.*.resid.out",
        "-o", str(out), "--no-progress",
    )  # fmt: skip
    return corpus, out, r


def _no_escapes(text: str) -> None:
    assert "\x1b" not in text and RLO not in text and "\x07" not in text, repr(text[:400])


def test_measure_and_show_print_corpus_text_as_text(hostile_run):
    corpus, out, r = hostile_run
    assert r.returncode == 0, r.stderr[-2000:]
    _no_escapes(r.stdout)
    for name in ("[news]", "[/]", LINK_DOMAIN):  # markup shown, not eaten or obeyed
        assert name in r.stdout
    shown = actscope("show", str(out), "--sites")
    assert shown.returncode == 0, shown.stderr[-2000:]
    _no_escapes(shown.stdout)
    assert "\\u202e" in shown.stdout and "\\x1b[2J" in shown.stdout  # visible, not dropped


def test_forced_colour_terminal_gets_no_foreign_sequences(hostile_run):
    corpus, out, _ = hostile_run
    shown = actscope("show", str(out), env={"FORCE_COLOR": "1"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    # rich's own colours are allowed; the corpus's clear-screen, links and bidi are not
    assert ESC_CLEAR not in shown.stdout and "\x1b]8;" not in shown.stdout and RLO not in shown.stdout


@pytest.mark.parametrize("command", ["show", "stats"])
def test_corpus_commands_print_text(hostile_run, command):
    corpus, _, _ = hostile_run
    r = actscope("corpus", command, str(corpus), *(("-n", "3") if command == "show" else ()))
    assert r.returncode == 0, r.stderr[-2000:]
    _no_escapes(r.stdout)
    assert LINK_DOMAIN in r.stdout and "[/]" in r.stdout


def test_card_table_keeps_its_shape_and_has_no_html(hostile_run):
    _, out, _ = hostile_run
    r = actscope("card", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(r.stdout)
    assert "<img" not in html  # the corpus name's tag is text (&lt;img or in <code>)
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 8  # header + 7 rows, none split by a '|' of the corpus name
    assert all(row.count("<td>") in (0, 2) for row in rows)
    assert any("c|`&lt;img src=x onerror=alert(1)&gt;`.jsonl" in row for row in rows)
    assert json.loads(re.search(r"`{3,}json\n(.*?)\n`{3,}", r.stdout, re.S).group(1))["corpus"]["name"]


def test_html_report_has_no_control_or_bidi_characters(hostile_run, tmp_path):
    _, out, _ = hostile_run
    page = tmp_path / "r.html"
    r = actscope("report", str(out), "-o", str(page))
    assert r.returncode == 0, r.stderr[-2000:]
    html = page.read_text()
    _no_escapes(html)
    svg = re.findall(r"<svg.*?</svg>", html, re.S)
    assert any("[news]\\u202eevil\\x1b[2J" in s for s in svg)  # the domain chart's label, made visible
