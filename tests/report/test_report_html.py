"""The HTML report as a file: self-contained, escaped, every section present."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq

from actscope.report.html import render_report


def test_report_is_self_contained(run_gemma, tmp_path):
    html = render_report([run_gemma], tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    # no script, no external resource of any kind: it opens offline and prints as shown
    assert not re.search(r"<script|<link|<iframe|<img|@import", html, re.I)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", html, re.I)
    assert not re.search(r"url\((?!#)", html)  # only in-page references (SVG clip paths)
    assert html.count("<svg") >= 6  # layer curves, heatmap, channels, CCDF, domains, bootstrap


def test_corpus_text_is_escaped(run_gemma, hostile, tmp_path):
    html = render_report([run_gemma], tmp_path / "r.html").read_text()
    assert hostile.script not in html and hostile.img not in html and hostile.domain not in html
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;web&lt;/b&gt;" in html  # the domain name, in the table and in the SVG chart


def test_sections(run_gemma, tmp_path):
    html = render_report([run_gemma], tmp_path / "r.html").read_text()
    for needle in (
        "Summary",
        "M = max |a|",
        "FP8 E4M3 per-tensor",
        "INT8 per-tensor",
        "fp16",
        "Massive activations",
        "Outlier features",
        "max |a| per layer",
        "Channels at the peak site",
        "Tails of |a|",
        "Top activations",
        "Domains and bootstrap",
        "Run metadata",
        "log10 max |a|",
        "P(|a| ≥ x)",
    ):
        assert needle in html, needle
    assert "Quantization results" not in html  # no quant section without `actscope quant` results


def test_partial_quant_section_renders(run_copy, tmp_path):
    """Only the keys present are shown; inf written as a string by `actscope quant` reads back."""
    schemes = {"<i>int8</i>": {"bits": 8, "linear_min_sqnr_db": "inf", "linear_median_sqnr_db": 30.0}}
    run = run_copy(lambda m: m.update(quant={"schemes": schemes}))
    table = {"site": ["layers.0.resid.out"], "kind": ["residual"], "scheme": ["int8"], "sqnr_db": [31.5]}
    pq.write_table(pa.table(table), run / "quant.parquet")
    html = render_report([run], tmp_path / "r.html").read_text()
    assert "Quantization results" in html and "31.5 dB" in html and "∞ dB" in html
    assert "&lt;i&gt;int8&lt;/i&gt;" in html and "<i>int8</i>" not in html


def test_quant_section_from_actscope_quant(run_quant_llama, tmp_path):
    html = render_report([run_quant_llama], tmp_path / "r.html").read_text()
    assert 'id="run1-quant"' in html
    for needle in (
        "int8:tensor:absmax",
        "int8:token",
        "fp8_e4m3:tensor:absmax",
        "SQNR per quantization scheme",
    ):
        assert needle in html, needle
    assert "ppl change" in html and "Spearman" in html


def test_two_runs_get_a_comparison(run_gemma, run_llama, tmp_path):
    html = render_report([run_gemma, run_llama], tmp_path / "r.html").read_text()
    assert 'id="comparison"' in html
    assert "tiny-gemma3" in html and "Tiny-Llama" in html
    assert html.count('class="run"') == 2
