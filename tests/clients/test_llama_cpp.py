"""The llama.cpp workflow on both built-in models, checked by llama.cpp's own binaries:

    actscope measure MODEL -> actscope export RUN --format imatrix -> llama-quantize --imatrix

on a float GGUF of the model's (dequantized) weights. Our imatrix is measured on 12 corpus
texts (one per domain); llama.cpp's own imatrix is computed on the same texts; perplexity
is taken on 12 held-out texts of other samples. Figures are printed (pytest -s).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from llamafiles import (
    NO_MODEL,
    THREADS,
    llama_statistics,
    our_statistics,
    per_tensor_cosine,
    write_float_gguf,
)

from actscope.config import MeasureConfig
from actscope.corpus import Corpus
from actscope.corpus.profiles import load_profile
from actscope.report.export import export
from actscope.report.rundata import RunView
from actscope.runner import measure

pytestmark = pytest.mark.slow
LOW_BIT = "Q2_K"  # llama-quantize makes it with or without an imatrix: the two can be compared
CTX = 128  # llama-perplexity's context: 8 chunks of held-out text
# llama-imatrix cuts the joined texts into chunks of this many tokens, each started by BOS,
# where actscope runs every text whole after its own BOS (texts here are ~200 tokens):
# the nearest match in attention context (128 or 512 agree less, most in attn_output).
IMATRIX_CTX = 256
MODELS = {"gemma-3-270m": "gemma", "smollm2-135m": "smollm"}


def one_per_domain(corpus: Corpus, skip: set[str] = frozenset()) -> list:
    seen: dict[str, object] = {}
    for s in corpus.samples:
        if s.id not in skip and s.domain not in seen:
            seen[s.domain] = s
    return list(seen.values())


@pytest.fixture(scope="module")
def texts():
    calib = one_per_domain(load_profile("quick"))
    held_out = one_per_domain(load_profile("standard"), skip={s.id for s in load_profile("quick").samples})
    return SimpleNamespace(calib=calib, held_out=held_out)


def perplexity(llama, model: Path, text: Path) -> float:
    r = llama("llama-perplexity", "-m", model, "-f", text, "-c", CTX, "-b", CTX, "--chunks", 8, "-t", THREADS)
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stderr[-2000:]
    return float(m.group(1))


@pytest.fixture(scope="module", params=list(MODELS))
def flow(request, texts, llama, tmp_path_factory):
    """Measure, export, quantize (without and with our imatrix), take perplexities; and
    llama.cpp's own imatrix on the same texts."""
    d = tmp_path_factory.mktemp(request.param)
    loaded = request.getfixturevalue(MODELS[request.param])
    corpus = Corpus("calib-12", tuple(texts.calib))
    cfg = MeasureConfig(out=str(d / "run"), overwrite=True, progress=False, max_length=1024)
    run = measure(cfg, loaded=loaded, corpus=corpus)
    export(RunView(run), "imatrix", d / "ours.imatrix.gguf")
    f32 = d / "f32.gguf"
    weights = write_float_gguf(Path(loaded.info["path"]), f32)
    (d / "calib.txt").write_text("\n\n".join(s.text for s in texts.calib), encoding="utf-8")
    (d / "held_out.txt").write_text("\n\n".join(s.text for s in texts.held_out), encoding="utf-8")
    llama(
        "llama-imatrix", "-m", f32, "-f", d / "calib.txt", "-o", d / "theirs.imatrix.gguf",
        "-c", IMATRIX_CTX, "-b", IMATRIX_CTX, "--no-ppl", "-t", THREADS,
    )  # fmt: skip
    ppl = {}
    for label, imatrix in (("none", None), ("ours", d / "ours.imatrix.gguf")):
        q = d / f"{label}.{LOW_BIT}.gguf"
        llama("llama-quantize", *(["--imatrix", imatrix] if imatrix else []), f32, q, LOW_BIT, THREADS)
        ppl[label] = perplexity(llama, q, d / "held_out.txt")
    print(f"\n{request.param} {LOW_BIT} perplexity on held-out text: {ppl}")
    return SimpleNamespace(
        name=request.param, dir=d, f32=f32, weights=weights, ours=d / "ours.imatrix.gguf", ppl=ppl
    )


def test_every_entry_names_a_weight_of_the_model(flow):
    ours = set(our_statistics(flow.ours))
    assert ours and ours <= set(flow.weights), sorted(ours - set(flow.weights))


def test_show_statistics_reads_our_export(flow, llama):
    r = llama("llama-imatrix", *NO_MODEL, "--in-file", flow.ours, "--show-statistics", "-t", THREADS)
    theirs, ours = llama_statistics(r.stdout), our_statistics(flow.ours)
    assert theirs.keys() == ours.keys()
    for name, (mean, sum_e2) in ours.items():
        assert theirs[name][0] == pytest.approx(mean, rel=1e-4, abs=2e-4), name
        assert theirs[name][1] == pytest.approx(sum_e2, rel=1e-4, abs=1e-3), name


def test_perplexity_with_our_imatrix_is_not_worse(flow):
    assert flow.ppl["ours"] <= flow.ppl["none"], flow.ppl


def test_iq2_xs_needs_an_imatrix_and_takes_ours(flow, llama):
    if flow.name != "smollm2-135m":
        pytest.skip("one model is enough: a full IQ2_XS quantization costs ~30 s of CI's 2 cores")
    refused = llama("llama-quantize", flow.f32, flow.dir / "no.gguf", "IQ2_XS", THREADS, ok=False)
    assert refused.returncode != 0 and "requires an importance matrix" in refused.stderr + refused.stdout
    # it bails out on any weight that needs an imatrix and finds none in ours
    r = llama("llama-quantize", "--imatrix", flow.ours, flow.f32, flow.dir / "iq2xs.gguf", "IQ2_XS", THREADS)
    assert f"loaded {len(our_statistics(flow.ours))} importance matrix entries" in r.stdout + r.stderr


def test_e_x2_agrees_with_llama_cpps_own_imatrix(flow):
    cos = per_tensor_cosine(flow.ours, flow.dir / "theirs.imatrix.gguf")
    ours = our_statistics(flow.ours)
    assert cos.keys() == ours.keys()  # llama.cpp records every weight we export, and no other
    v = np.array(list(cos.values()))
    print(
        f"\n{flow.name}: cosine of E[x^2] over {len(v)} tensors: min {v.min():.4f} median {np.median(v):.4f}"
    )
    assert np.median(v) >= 0.999 and v.min() >= 0.98
