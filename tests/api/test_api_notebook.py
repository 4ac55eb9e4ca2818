"""What a notebook shows for a Run (_repr_html_), as HTML and rendered by headless Chromium."""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import actscope
from actscope.report.compare import fmt_m
from tinylm import TEXTS, char_tokenizer, tiny_model

HOSTILE = "<script>alert(1)</script>"


def _browser():
    """The Chromium helpers of the report's browser test (one place for how it is driven)."""
    path = Path(__file__).parents[1] / "report" / "test_report_browser.py"
    spec = importlib.util.spec_from_file_location("_report_browser", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run():
    return actscope.measure(tiny_model("llama"), char_tokenizer(), corpus=[HOSTILE, *TEXTS])


def test_repr_html_shows_the_summary_escaped(run):
    page = run._repr_html_()
    s = run.summary
    assert fmt_m(s["M"]) in page and html.escape(s["location"]["site"]) in page
    assert f"x{s['safety']['fp16_headroom']:.3g}" in page  # fp16 headroom
    for kind in run.kind_maxima():
        assert f"M {kind}" in page
    assert "<script" not in page  # token text from the corpus stays text


def test_repr_html_in_headless_chromium(run, tmp_path):
    b = _browser()
    doc = tmp_path / "notebook.html"
    doc.write_text(f"<!doctype html><meta charset='utf-8'><body>{run._repr_html_()}</body>", encoding="utf-8")
    shot = tmp_path / "repr_html.png"
    res = b.run_chromium(doc.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=800,600")
    assert res.returncode == 0, res.stderr[-2000:]
    assert b.console_messages(res.stderr) == []
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (600, 800)
    assert 0.002 < (img < 128).mean() < 0.5, "the summary table did not render"
    dom = b.run_chromium(doc.as_uri(), tmp_path / "profile", "--dump-dom").stdout
    assert "actscope run" in dom and "<script>alert" not in dom
