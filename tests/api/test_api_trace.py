"""actscope.trace: every forward inside the block, generate's KV-cache decode steps included."""

from __future__ import annotations

import pytest
import torch

import actscope
from tinylm import TEXTS, char_tokenizer, tiny_model

PROMPTS = ["The capital of France is", "Write a short poem about the sea and the wind, please:"]
NEW = 6


def _hook_count(model) -> int:
    """actscope's hooks on the model (transformers installs output-capturing hooks of its own)."""
    hooks = [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]
    return sum(h.__module__.startswith("actscope") for h in hooks)


@pytest.mark.slow
def test_generate_records_prompt_and_new_tokens_once(smol_hf):
    model, tok = smol_hf
    tok.padding_side = "left"  # batched generation: prompts end where decoding starts
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()  # the shorter prompt is padded
    with actscope.trace(model, tokenizer=tok, sites="embedding,residual,final_norm") as t:
        assert _hook_count(model) > 0
        out = model.generate(
            **enc, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
            output_hidden_states=True, return_dict_in_generate=True,
        )  # fmt: skip
    assert _hook_count(model) == 0
    run = t.run()
    assert run.manifest["trace"] == {"forwards": NEW, "samples": 2}  # prefill + NEW-1 decode steps

    # Real tokens of each row: prompt (no left padding) + the new tokens fed back (all but the last).
    mask = torch.cat([enc["attention_mask"], torch.ones(2, NEW - 1, dtype=torch.long)], 1).bool()
    seqs = [out.sequences[b, : mask.shape[1]][mask[b]].tolist() for b in range(2)]
    assert run.table("samples").column("tokens").to_pylist() == [len(s) for s in seqs]
    assert run.manifest["tokens"]["measured"] == int(mask.sum())

    # Residual sites equal output_hidden_states over all steps, padding left out.
    L = model.config.num_hidden_layers
    names = ["embed.out"] + [f"layers.{i}.resid.out" for i in range(L - 1)] + ["final_norm.out"]
    sites = {r["site"]: r for r in run.table("sites").to_pylist()}
    for j, name in enumerate(names):
        steps = [h[j] for h in out.hidden_states]  # (B, S_step, C) per generation step
        x = torch.cat(steps, 1)[mask]  # (real tokens, C)
        assert (sites[name]["min"], sites[name]["max"]) == (x.min().item(), x.max().item()), name
        assert sites[name]["tokens"] == int(mask.sum()), name

    # Provenance: every top-k entry points at the token at that position of its row.
    for r in run.table("topk").to_pylist():
        assert seqs[r["sample"]][r["pos"]] == r["token"], r
    loc = run.summary["location"]
    hs = torch.cat([h[names.index(loc["site"])] for h in out.hidden_states], 1)
    row = hs[loc["sample"]][mask[loc["sample"]]]
    assert row[loc["position"], loc["channel"]].item() == run.summary["M_signed"]


def test_forward_trace_equals_measure_on_the_same_texts():
    model, tok = tiny_model("llama"), char_tokenizer()
    enc = tok(TEXTS, return_tensors="pt", padding=True)  # right padding
    with actscope.trace(model, tokenizer=tok) as t:
        with torch.no_grad():
            model(**enc)
    traced, measured = t.run(), actscope.measure(model, tok, corpus=TEXTS)
    a, b = traced.table("sites"), measured.table("sites")
    for col in ("site", "absmax", "min", "max", "tokens", "elements", "nan", "massive_elements"):
        assert a.column(col).equals(b.column(col)), col
    sa, sb = traced.table("samples"), measured.table("samples")
    for col in sa.schema.names:
        if col not in ("sample_id", "domain", "source"):
            assert sa.column(col).equals(sb.column(col)), col
    ta, tb = traced.table("topk"), measured.table("topk")
    for col in ("site", "value", "sample", "pos", "channel", "token", "token_text", "context"):
        assert ta.column(col).equals(tb.column(col)), col


def test_hooks_removed_on_exception_and_state_kept():
    model, tok = tiny_model("llama", attention_dropout=0.5), char_tokenizer()
    model.train()
    torch.manual_seed(3)
    rng = torch.get_rng_state()
    with pytest.raises(ZeroDivisionError):
        with actscope.trace(model, tokenizer=tok):
            assert _hook_count(model) > 0
            assert torch.equal(torch.get_rng_state(), rng)  # the probe forward drew nothing
            assert model.training
            raise ZeroDivisionError("inside the block")
    assert _hook_count(model) == 0


def test_two_forwards_are_separate_samples_and_bad_input():
    model, tok = tiny_model("llama"), char_tokenizer()
    with actscope.trace(model, tokenizer=tok, max_samples=3) as t:
        model(**tok(TEXTS[:2], return_tensors="pt", padding=True))
        model(**tok(TEXTS[2:3], return_tensors="pt"))
        with pytest.raises(actscope.ActscopeError, match="more than max_samples=3 sequences"):
            model(**tok(TEXTS[3:4], return_tensors="pt"))
        with pytest.raises(actscope.ActscopeError, match="records forwards given input_ids"):
            model(inputs_embeds=torch.zeros(1, 3, 64))
    run = t.run()
    want = [len(tok(x)["input_ids"]) for x in TEXTS[:3]]
    assert run.table("samples").column("tokens").to_pylist() == want
    with pytest.raises(actscope.ActscopeError, match="recorded no forward"):
        with actscope.trace(model) as empty:
            pass
        empty.run()
