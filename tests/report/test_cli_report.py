"""The report, compare, card and export subcommands through `actscope.cli.main` (no model loaded)."""

from __future__ import annotations

import json
import sys

import torch

from actscope.cli import main


def test_report_compare_card_export(run_gemma, run_llama, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(run_gemma), str(run_llama), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert f"wrote {out}" in capsys.readouterr().out

    assert (
        main(
            [
                "compare",
                str(run_gemma),
                str(run_llama),
                "--format",
                "json",
                "--chart",
                str(tmp_path / "c.svg"),
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in doc["rows"]] == ["tiny-gemma3", "Tiny-Llama"]
    assert (tmp_path / "c.svg").read_text().startswith("<svg")

    assert main(["compare", str(run_gemma), "--published", "--format", "markdown"]) == 0
    assert "gemma-3-27b-it" in capsys.readouterr().out

    assert main(["card", str(run_gemma), "--format", "json"]) == 0
    assert "fp8_e4m3_per_tensor_safe" in json.loads(capsys.readouterr().out)

    assert main(["export", str(run_llama), "--format", "smoothquant", "-o", str(tmp_path / "s.pt")]) == 0
    assert len(torch.load(tmp_path / "s.pt", weights_only=True)) == 21


def test_views_never_load_a_model(run_gemma, tmp_path, monkeypatch):
    """report/compare/card read only the run directory: model loading is not even importable."""
    monkeypatch.setitem(sys.modules, "actscope.models", None)
    monkeypatch.setitem(sys.modules, "actscope.runner", None)
    assert main(["report", str(run_gemma), "-o", str(tmp_path / "r.html")]) == 0
    assert main(["compare", str(run_gemma)]) == 0
    assert main(["card", str(run_gemma)]) == 0


def test_not_a_run_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "not an actscope run directory" in capsys.readouterr().err
