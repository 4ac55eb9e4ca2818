"""`compare` and `card`: the paper-style table, ratios, published values, model-card block."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from actscope.errors import UserError
from actscope.report import compare
from actscope.report.card import BEGIN, END, card_fields, card_markdown
from actscope.report.rundata import RunView


def test_published_table_is_the_papers():
    pub = compare.published()
    assert "2605.15572" in pub["citation"]
    rows = {r["checkpoint"]: r for r in pub["rows"]}
    assert len(rows) == 27
    assert rows["gemma-3-27b-it"]["M"] == 696320 and rows["gemma-3-27b-it"]["layer"] == 46
    assert rows["Qwen2.5-1.5B"]["M_signed"] == -7968 and rows["Qwen2.5-1.5B"]["kind"] == "residual"
    assert rows["Qwen3.5-0.8B"]["kind"] == "final_norm" and rows["Qwen3.5-0.8B"]["layer"] is None
    assert rows["gpt-oss-20b"]["kind"] == "mlp" and rows["gpt-oss-20b"]["moe"]
    # the paper's MoE ratios follow from the table
    assert rows["Qwen3-32B"]["M"] / rows["Qwen3-30B-A3B"]["M"] == pytest.approx(23.4, abs=0.05)
    assert rows["Qwen3.5-27B"]["M"] / rows["Qwen3.5-35B-A3B"]["M"] == pytest.approx(14.0, abs=0.05)


def test_compare_rows_and_default_ratio(run_gemma, run_llama):
    views = [RunView(run_gemma), RunView(run_llama)]
    res = compare.build(views)
    g, ll = res["rows"]
    assert (g["model"], g["family"], g["arch"], g["dtype"]) == ("tiny-gemma3", "gemma3", "dense", "float32")
    assert ll["model"] == "Tiny-Llama" and ll["family"] == "llama"
    assert g["M"] == views[0].summary["M"]
    assert g["log10_M"] == pytest.approx(math.log10(g["M"]), abs=1e-3)
    assert g["location"].startswith("layer ") or g["location"] in ("embedding", "final_norm")
    assert res["ratios"] == [
        {
            "a": "Tiny-Llama",
            "b": "tiny-gemma3",
            "ratio": ll["M"] / g["M"],
            "log10_ratio": round(math.log10(ll["M"] / g["M"]), 3),
        }
    ]


def test_compare_formats(run_gemma, run_llama):
    res = compare.build([RunView(run_gemma), RunView(run_llama)], pairs=["1:2", "tiny-gemma3:Tiny-Llama"])
    md = compare.to_markdown(res)
    assert md.splitlines()[0].startswith("| model | family | parameters | dense/MoE | dtype | M = max\\|a\\|")
    assert "| tiny-gemma3 / Tiny-Llama |" in md
    rows = list(csv.DictReader(io.StringIO(compare.to_csv(res))))
    assert [r["model"] for r in rows] == ["tiny-gemma3", "Tiny-Llama"]
    assert float(rows[0]["M"]) == res["rows"][0]["M"]
    doc = json.loads(compare.to_json(res))
    assert len(doc["ratios"]) == 2 and doc["ratios"][0]["ratio"] == pytest.approx(doc["ratios"][1]["ratio"])


def test_bad_pair_names_the_choices(run_gemma):
    with pytest.raises(UserError, match="tiny-gemma3"):
        compare.build([RunView(run_gemma)], pairs=["nope:1"])
    with pytest.raises(UserError, match="A:B"):
        compare.build([RunView(run_gemma)], pairs=["1"])


def test_published_beside_matching_model(run_copy):
    run = run_copy(lambda m: m["model"].update(source="Qwen/Qwen2.5-1.5B"))
    res = compare.build([RunView(run)], with_published=True, pairs=["Qwen2.5-1.5B:Qwen3-1.7B"])
    measured = res["rows"][0]
    assert measured["model"] == "Qwen2.5-1.5B" and measured["published_M"] == 7968
    assert measured["measured_over_published"] == pytest.approx(measured["M"] / 7968, rel=1e-3)
    assert len(res["rows"]) == 1 + 27
    assert res["ratios"][0]["b"] == "Qwen3-1.7B"  # a pair may name a published checkpoint
    md = compare.to_markdown(res)
    assert "published M" in md and "arXiv 2605.15572" in md


def test_card(run_gemma):
    view = RunView(run_gemma)
    f = card_fields(view)
    s = view.summary
    assert f["max_abs_activation"] == s["M"] and f["location"]["site"] == s["location"]["site"]
    assert f["measured_dtype"] == "float32" and f["corpus"]["name"] == "hostile"
    assert f["fp16_safe"] is True  # a tiny random model stays far below 65,504
    assert isinstance(f["fp8_e4m3_per_tensor_safe"], bool) and isinstance(f["massive_channels"], list)
    md = card_markdown(view)
    assert md.startswith(BEGIN) and md.endswith(END)
    assert "| fp16-safe | yes" in md and "FP8-E4M3 per-tensor safe" in md
    block = md.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == json.loads(json.dumps(f))
