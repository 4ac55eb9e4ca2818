"""measure() end to end on tiny random models: once-per-forward, residual stream, logits."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from actscope.adapters import discover_sites
from actscope.config import MeasureConfig
from actscope.hooks import HookSet
from actscope.runner import measure
from tinylm import tiny_corpus, tiny_loaded


def run_tiny(tmp_path, model_type="llama", **cfg):
    loaded = tiny_loaded(model_type)
    out = measure(
        MeasureConfig(out=str(tmp_path / "run"), progress=False, **cfg), loaded=loaded, corpus=tiny_corpus()
    )
    return loaded, out


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_residual_sites_equal_output_hidden_states(tmp_path, model_type):
    loaded, out = run_tiny(tmp_path, model_type, max_batch=1)  # one sample per batch: no padding
    sites = {r["site"]: r for r in pq.read_table(out / "sites.parquet").to_pylist()}
    tok, model = loaded.tokenizer, loaded.model
    hs_all = []
    with torch.no_grad():
        for s in tiny_corpus().samples:
            ids = torch.tensor([tok(s.text)["input_ids"]])
            hs_all.append(model(input_ids=ids, output_hidden_states=True).hidden_states)
    L = model.config.num_hidden_layers
    # transformers: hidden_states[0] = embeddings, [i + 1] = layer i output, [L] = after the final norm
    names = ["embed.out"] + [f"layers.{i}.resid.out" for i in range(L - 1)] + ["final_norm.out"]
    for j, name in enumerate(names):
        x = torch.cat([h[j][0] for h in hs_all])
        assert sites[name]["max"] == x.max().item(), name
        assert sites[name]["min"] == x.min().item(), name
        assert sites[name]["tokens"] == x.shape[0]


def test_every_site_fires_once_and_check_catches_doubles(tmp_path):
    loaded = tiny_loaded("llama")
    plan = discover_sites(loaded.model)
    calls = []
    ids = torch.randint(0, 90, (2, 5))
    with HookSet(loaded.model, plan.bindings, lambda i, x: calls.append(i)) as hooks, torch.no_grad():
        loaded.model(input_ids=ids)
        assert all(n == 1 for n in hooks.fires)
        hooks.check_once()
        loaded.model(input_ids=ids)
        loaded.model(input_ids=ids)  # two forwards without a check: every site fired twice
        with pytest.raises(RuntimeError, match="fire once per forward"):
            hooks.check_once()


def test_measuring_leaves_logits_unchanged():
    loaded = tiny_loaded("gemma3_text")
    ids = torch.randint(0, 90, (2, 11))
    with torch.no_grad():
        ref = loaded.model(input_ids=ids).logits
        plan = discover_sites(loaded.model)
        from actscope.probe import probe_sites
        from actscope.stats.accumulator import Accumulator

        probe = probe_sites(loaded.model, plan.bindings, ids, torch.ones_like(ids))
        acc = Accumulator(
            probe.channels, 2, "cpu", ("extrema", "moments", "histogram", "topk", "massive", "samples")
        )
        from actscope.corpus import make_batches
        from actscope.corpus.tokenize import Sequence
        from actscope.engine import batch_context

        batch = make_batches(
            [Sequence(0, 0, tuple(ids[0].tolist())), Sequence(1, 0, tuple(ids[1].tolist()))]
        )[0]
        with HookSet(loaded.model, probe.bindings, acc.update):
            acc.begin_batch(batch_context(batch, "cpu"))
            got = loaded.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    order = batch.sample.tolist()
    assert torch.equal(got, ref[order])


def test_manifest_and_tables(tmp_path):
    _, out = run_tiny(tmp_path)
    man = json.loads((out / "run.json").read_text())
    assert man["status"] == "complete" and man["schema_version"] == 1
    assert man["tokens"]["samples"] == 8
    for t in ("sites", "channels", "hist", "topk", "samples"):
        assert (out / f"{t}.parquet").exists()
    s = man["summary"]
    top = pq.read_table(out / "topk.parquet").to_pylist()
    best = max(top, key=lambda r: r["absval"])
    assert best["absval"] == s["M"] and best["site"] == s["location"]["site"]
    assert s["location"]["token_text"] == best["token_text"]
    assert set(s["domains_by_kind"]["residual"]) == set(s["domains"])
    assert max(s["domains"].values()) == s["M"]


def test_show_prints_the_peak_and_domains(tmp_path, capsys):
    from actscope.cli import main

    _, out = run_tiny(tmp_path)
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    man = json.loads((out / "run.json").read_text())
    loc = man["summary"]["location"]
    assert loc["site"] in text and loc["sample_id"] in text and "per domain" in text and "bootstrap" in text
    assert main(["show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["M"] == man["summary"]["M"]


def test_padded_run_matches_unpadded_run(tmp_path):
    """The same samples measured in padded batches and one at a time. The model's own
    arithmetic differs by ~1e-7 between the two (attention kernels see other shapes),
    so values agree to float tolerance; that padding never enters the statistics is
    tested exactly in tests/stats/test_accumulator.py::test_padding_never_leaks."""
    loaded = tiny_loaded("llama")
    a = measure(
        MeasureConfig(out=str(tmp_path / "a"), progress=False, max_batch=8),
        loaded=loaded,
        corpus=tiny_corpus(),
    )
    b = measure(
        MeasureConfig(out=str(tmp_path / "b"), progress=False, max_batch=1),
        loaded=loaded,
        corpus=tiny_corpus(),
    )
    ja = json.loads((a / "run.json").read_text())
    jb = json.loads((b / "run.json").read_text())
    assert ja["tokens"]["padding_fraction"] > 0 and jb["tokens"]["padding_fraction"] == 0
    assert ja["tokens"]["measured"] == jb["tokens"]["measured"]
    ra = {r["site"]: r for r in pq.read_table(a / "sites.parquet").to_pylist()}
    rb = {r["site"]: r for r in pq.read_table(b / "sites.parquet").to_pylist()}
    for name in ra:
        assert ra[name]["elements"] == rb[name]["elements"]
        assert ra[name]["absmax"] == pytest.approx(rb[name]["absmax"], rel=1e-5)
        assert ra[name]["rms"] == pytest.approx(rb[name]["rms"], rel=1e-5)


def test_moe_summary_reports_expert_load(tmp_path):
    loaded = tiny_loaded("qwen3_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    out = measure(
        MeasureConfig(out=str(tmp_path / "moe"), progress=False), loaded=loaded, corpus=tiny_corpus()
    )
    man = json.loads((out / "run.json").read_text())
    ex = man["summary"]["experts"]
    assert len(ex["load"]) == 2  # one routing site per MoE layer
    for counts in ex["load"].values():
        assert sum(counts) == man["tokens"]["measured"] * 2  # every real token goes to top_k = 2 experts
    assert set(ex["idle"]) == set(ex["load"])
