"""On a real overflowing run (Gemma 3 270M in float16): the headline numbers agree (issue 14, item 3).

Gemma's residual stream passes 65,504, so in float16 some tokens hold inf next to
finite values. Every extreme is over the finite elements (docs/statistics.md), so
M, M_signed, the location, the per-domain peaks, the bootstrap, the top-k table and
the per-channel maxima all name the same value. (The adversarial case that used to
disagree, a token holding inf and the site's peak, is tests/stats/test_numerics.py.)
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from actscope.config import MeasureConfig
from actscope.runner import measure
from tinylm import tiny_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp16_run(gemma, tmp_path_factory):  # the gemma fixture: the converted cache exists
    from actscope.models import load_model

    out = tmp_path_factory.mktemp("fp16") / "run"
    loaded = load_model("gemma-3-270m", dtype="float16", device="cpu")
    measure(MeasureConfig(out=str(out), progress=False, max_batch=2), loaded=loaded, corpus=tiny_corpus(4))
    return out


def test_overflowing_run_names_one_peak_everywhere(fp16_run):
    s = json.loads((fp16_run / "run.json").read_text())["summary"]
    assert s["M_lower_bound"] and s["nonfinite"]["posinf"] + s["nonfinite"]["nan"] > 0  # it did overflow
    M, loc = s["M"], s["location"]
    assert abs(s["M_signed"]) == M
    assert max(s["domains"].values()) == M
    assert max(v for d in s["domains_by_kind"].values() for v in d.values()) == M
    assert max(b["hi95"] for b in s["bootstrap"]) <= M
    top = [r for r in pq.read_table(fp16_run / "topk.parquet").to_pylist() if r["site"] == loc["site"]]
    assert (top[0]["absval"], top[0]["value"], top[0]["channel"]) == (M, s["M_signed"], loc["channel"])
    ch = [r for r in pq.read_table(fp16_run / "channels.parquet").to_pylist() if r["site"] == loc["site"]]
    assert max(r["absmax"] for r in ch) == M and ch[loc["channel"]]["absmax"] == M
    sites = pq.read_table(fp16_run / "sites.parquet").to_pylist()
    samples = pq.read_table(fp16_run / "samples.parquet").to_pydict()
    for r in sites:  # at every site, not only the peak: site max|a| == max of its per-sample maxima
        if r["alias_of"] is None and r["absmax"] is not None:
            assert max(samples[r["site"]]) == r["absmax"], r["site"]
