"""On the real embedded models (slow: loads Gemma 3 270M and SmolLM2 135M)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from actscope.config import MeasureConfig
from actscope.hooks import HookSet
from actscope.runner import measure
from tinylm import tiny_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma_run(gemma, tmp_path_factory):
    out = tmp_path_factory.mktemp("gemma") / "run"
    measure(
        MeasureConfig(out=str(out), progress=False, max_batch=1, sites="embedding,residual,final_norm"),
        loaded=gemma,
        corpus=tiny_corpus(4),
    )
    return out


def _hidden_states(loaded, corpus):
    tok, model = loaded.tokenizer, loaded.model
    out = []
    with torch.no_grad():
        for s in corpus.samples:
            ids = torch.tensor([tok(s.text)["input_ids"]])
            out.append(model(input_ids=ids, output_hidden_states=True).hidden_states)
    return out


def test_gemma_residual_equals_output_hidden_states(gemma, gemma_run):
    sites = {r["site"]: r for r in pq.read_table(gemma_run / "sites.parquet").to_pylist()}
    hs = _hidden_states(gemma, tiny_corpus(4))
    L = gemma.model.config.num_hidden_layers
    names = ["embed.out"] + [f"layers.{i}.resid.out" for i in range(L - 1)] + ["final_norm.out"]
    for j, name in enumerate(names):
        x = torch.cat([h[j][0] for h in hs])
        assert (sites[name]["min"], sites[name]["max"]) == (x.min().item(), x.max().item()), name


def test_gemma_peak_provenance_points_to_the_element(gemma, gemma_run):
    man = json.loads((gemma_run / "run.json").read_text())
    loc = man["summary"]["location"]
    assert man["model"]["model_type"] == "gemma3_text"
    assert man["summary"]["M"] > 65504  # Gemma 3 270M overflows fp16 (shared/models.md: ~1.0e5)
    assert loc["position"] == 0 and loc["token_text"] == "<bos>"  # Gemma adds BOS; the peak sits on it
    hs = _hidden_states(gemma, tiny_corpus(4))
    layer = loc["layer"]
    x = hs[loc["sample"]][layer + 1][0]  # layer output = hidden_states[layer + 1]
    assert x[loc["position"], loc["channel"]].item() == man["summary"]["M_signed"]
    assert x.abs().max().item() == man["summary"]["M"]


@pytest.mark.parametrize("which", ["gemma", "smollm"])
def test_logits_identical_with_and_without_measuring(which, request, tmp_path):
    loaded = request.getfixturevalue(which)
    from actscope.adapters import discover_sites

    ids = torch.tensor([loaded.tokenizer("Measuring must not change the model.")["input_ids"]])
    with torch.no_grad():
        ref = loaded.model(input_ids=ids).logits
        bindings = discover_sites(loaded.model).bindings
        seen = []
        with HookSet(loaded.model, bindings, lambda i, x: seen.append(x.abs().max())):
            got = loaded.model(input_ids=ids).logits
    assert len(seen) == len(bindings)
    assert torch.equal(ref, got)


def test_smollm_measure_end_to_end(smollm, tmp_path):
    out = measure(
        MeasureConfig(out=str(tmp_path / "s"), progress=False), loaded=smollm, corpus=tiny_corpus(4)
    )
    man = json.loads((out / "run.json").read_text())
    assert man["model"]["model_type"] == "llama"
    assert man["settings"]["bos"] == "auto"
    s = man["summary"]
    assert s["M"] > 1000 and s["location"]["site"]
    top = pq.read_table(out / "topk.parquet").to_pylist()
    assert max(r["absval"] for r in top) == s["M"]


def test_float16_overflow_is_reported(tmp_path, gemma):  # gemma fixture: the converted cache exists
    """Gemma 3 270M exceeds 65,504: in float16 the run is marked overflowed, never a silent inf/nan M."""
    import math
    import subprocess
    import sys

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        '{"text": "The quick brown fox jumps over the lazy dog."}\n{"text": "def f(x):\\n    return x"}\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "actscope", "measure", "gemma-3-270m", "--dtype", "float16", "--corpus", str(corpus),
         "-o", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "OVERFLOW" in r.stdout and "float32 or bfloat16" in r.stdout
    man = json.loads((tmp_path / "run" / "run.json").read_text())
    s = man["summary"]
    assert man["overflowed"] and s["nonfinite"]["overflowed"] and s["M_lower_bound"]
    assert s["nonfinite"]["nan"] + s["nonfinite"]["posinf"] + s["nonfinite"]["neginf"] > 0
    assert s["nonfinite"]["first_site"] and s["nonfinite"]["first_layer"] is not None
    assert math.isfinite(s["M"]) and not s["safety"]["fp16_safe"]
