"""actscope stress on a tiny model with a planted trigger: the searches find it, the gradient
search beats random search at equal budget, and measure reproduces what stress reports."""

from __future__ import annotations

import json

import pytest
import torch
from planted import planted, trigger_id, word_tokenizer

from actscope.cli import main
from actscope.stress import StressConfig, run_stress
from actscope.stress.common import Scorer
from actscope.stress.objective import Objective, frozen
from actscope.stress.search_grad import GradSearch
from actscope.stress.tokens import allowed_ids, bos_prefix


def stress(loaded, run, out, **kw):
    kw = {"length": 8, "budget": 1200, "batch": 16, "kinds": ("residual",), "progress": False} | kw
    return run_stress(StressConfig(model="tiny", out=str(out), from_run=str(run), **kw), loaded=loaded)


def test_both_searches_find_the_planted_trigger(planted_run, tmp_path):
    loaded, run = planted_run
    res = stress(loaded, run, tmp_path / "s")
    by = {(e["kind"], e["method"]): e for e in res["entries"]}
    for method in ("corpus", "grad"):
        e = by[("residual", method)]
        assert trigger_id() in e["token_ids"], method  # the corpus never holds the trigger word
        assert e["step"] > 0 and e["round_trip"]
    row = res["table"][0]
    assert row["kind"] == "residual" and row["ratio"] > 10  # the trigger is far above the corpus peak
    assert set(row["saturated_sites"]) >= {"layers.1.resid.out"}


def _best_after(search, budget: int) -> float:
    while search.scorer.passes + search.cost <= budget:
        search.step()
    return search.best.value


def test_gradient_search_beats_random_search_at_equal_budget():
    """Same start, same forward-pass budget (a gradient step counts 3), seeds 0-4: the ranked
    swaps reach the trigger in the first steps, uniform swaps rarely do (vocabulary 300)."""
    loaded = planted()
    model, tok = loaded.model, loaded.tokenizer
    from actscope.engine import resolve_sites

    prefix = bos_prefix(tok)
    start_ids = [4 + (7 * i) % 250 for i in range(8)]  # never the trigger
    _, probe = resolve_sites(model, "layers.1.resid.out", [type("S", (), {"ids": tuple(prefix + start_ids)})])
    obj = Objective(model, probe.bindings, first=1)
    allowed = allowed_ids(tok, model.get_input_embeddings().num_embeddings)
    ratios = []
    with frozen(model):
        start = Scorer(obj, tok, prefix, 0)([start_ids], 0)[0]
        for seed in range(5):
            grad = GradSearch(Scorer(obj, tok, prefix, 0), allowed, start, seed, batch=16, topk=8)
            rand = GradSearch(Scorer(obj, tok, prefix, 0), allowed, start, seed, batch=16, ranked=False)
            g, r = _best_after(grad, 57), _best_after(rand, 57)
            assert trigger_id() in grad.best.body
            ratios.append(g / r)
    print("gradient / random best at 57 passes:", [round(x, 2) for x in ratios])
    # stated margin: at 57 forward passes the gradient search is >= 5x higher on every seed
    assert min(ratios) >= 5.0, ratios


def test_scored_value_equals_a_plain_forward():
    model = planted(scale=1.0).model
    from actscope.engine import resolve_sites

    ids = torch.tensor([[0, 5, 9, 140, 33, 7], [0, 8, 8, 2 + 3, 77, 100]])
    _, probe = resolve_sites(model, "layers.0.resid.out", [type("S", (), {"ids": tuple(ids[0].tolist())})])
    obj = Objective(model, probe.bindings, first=1)
    values, _ = obj.score(ids)
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.equal(values[:, 0], hs[1][:, 1:].abs().amax((1, 2)))  # layer 0 output, BOS left out
    with frozen(model):
        step = obj.gradient(ids[:1], 0)
    assert step.peaks.abs().max().item() == values[0, 0].item()  # the gradient pass sees the same values
    assert step.grad.shape == (ids.shape[1] - 1, model.config.hidden_size) and step.grad.abs().sum() > 0
    assert all(p.requires_grad for p in model.parameters())  # the flags frozen() changed are restored


@pytest.fixture
def model_dir(tmp_path):
    """The planted model as a Hugging Face directory, so the CLI can load it."""
    loaded = planted()
    d = tmp_path / "planted-model"
    loaded.model.save_pretrained(d)
    word_tokenizer().save_pretrained(d)
    return d


def test_measure_of_worst_jsonl_reproduces_every_reported_value(model_dir, tmp_path, capsys):
    from planted import write_corpus

    corpus = write_corpus(tmp_path / "c.jsonl")
    assert (
        main(["measure", str(model_dir), "--corpus", corpus, "-o", str(tmp_path / "cr"), "--no-progress"])
        == 0
    )
    out = tmp_path / "s"
    args = ["stress", str(model_dir), "--from", str(tmp_path / "cr"), "-o", str(out), "--length", "8"]
    assert main([*args, "--budget", "1300", "--batch", "16", "--no-progress", "--json"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "run" / "stress.json").read_text())
    assert json.loads(printed[printed.index("{\n") :]) == res  # --json prints the stored result
    for e in res["entries"]:  # the search's exact score is what measure gives for the text
        if e["measured"] is not None:
            assert e["value"] == e["measured"], e["id"]
    assert sum(e["measured"] is not None for e in res["entries"]) >= len(res["table"])
    # an independent measure of the written corpus, all sites: the same table and entry values
    again = tmp_path / "again"
    assert (
        main(
            [
                "measure",
                str(model_dir),
                "--corpus",
                str(out / "worst.jsonl"),
                "-o",
                str(again),
                "--no-progress",
            ]
        )
        == 0
    )
    from actscope.rundir import RunView
    from actscope.stress.table import entry_value, kind_table

    view = RunView.measured(again)
    table = kind_table(RunView.measured(tmp_path / "cr"), view, res["kinds"], res["first_position"])
    for got, want in zip(table, res["table"], strict=True):
        for key in ("kind", "worst_M", "worst_M_searched", "corpus_M", "saturated_sites"):
            assert got[key] == want[key], (got["kind"], key)
    for i, e in enumerate(res["entries"]):
        assert entry_value(view, i, e["site"], res["first_position"]) == e["measured"], e["id"]
