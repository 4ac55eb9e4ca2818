"""The top-k `context` is the text of the token ids that were measured, under every tokenization option.

Before the engine/run-dir change the context was re-tokenized at write time with the
tokenizer's defaults, so under --chat-template, --bos always|never or --overflow window
the [[peak]] token was not the measured token (token_text stayed right).
"""

from __future__ import annotations

import pytest

from actscope.config import MeasureConfig
from actscope.corpus import Corpus, Sample, TokenizeConfig, tokenize_corpus
from actscope.report.rundata import split_context
from actscope.rundir import RunView
from actscope.runner import measure

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "Quantization of large language models needs the range of every activation.",
    "def f(x):\n    return x * 2  # a tiny function with a comment",
]
CORPUS = Corpus("ctx", tuple(Sample(f"s{i}", "d", "test", t) for i, t in enumerate(TEXTS)))

CASES = {
    "bos-never": ("gemma", dict(bos="never")),
    "chat-template": ("smollm", dict(chat_template=True)),
    "window": ("gemma", dict(overflow="window", max_length=8, token_budget=64)),
    "bos-always": ("smollm", dict(bos="always")),
}


def _measured_ids(loaded, opts) -> dict[int, list[int]]:
    """sample -> its measured token ids (all windows joined), computed independently of the run."""
    tcfg = TokenizeConfig(
        bos=opts.get("bos", "auto"),
        max_length=opts.get("max_length", 2048),
        overflow=opts.get("overflow", "truncate"),
        chat_template=opts.get("chat_template", False),
    )
    out: dict[int, list[int]] = {}
    for s in sorted(tokenize_corpus(CORPUS, loaded.tokenizer, tcfg), key=lambda s: (s.sample, s.offset)):
        out.setdefault(s.sample, []).extend(s.ids)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_context_is_the_measured_tokens(case, request, tmp_path):
    model, opts = CASES[case]
    loaded = request.getfixturevalue(model)
    cfg = MeasureConfig(out=str(tmp_path / case), sites="layers.0.resid.out", progress=False, **opts)
    run = RunView(measure(cfg, loaded=loaded, corpus=CORPUS))
    ids = _measured_ids(loaded, opts)
    tok = loaded.tokenizer
    rows = run.topk
    assert rows
    for r in rows:
        seq = ids[r["sample"]]
        assert seq[r["pos"]] == r["token"]
        before, peak, after = split_context(r["context"])
        assert peak == tok.decode([r["token"]]) == r["token_text"]
        assert before == tok.decode(seq[max(0, r["pos"] - 8) : r["pos"]])
        assert after == tok.decode(seq[r["pos"] + 1 : r["pos"] + 9])
    loc = run.summary["location"]
    top = run.topk_by_site[loc["site"]][0]
    assert loc["context"] == top["context"]
