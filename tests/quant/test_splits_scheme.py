"""Calibration / evaluation splits never share a sample; scheme names parse and fail clearly."""

from __future__ import annotations

import pytest

from actscope.corpus import Corpus, Sample
from actscope.errors import UserError
from actscope.quant.formats import MXFP4
from actscope.quant.granularity import PerGroup, PerToken
from actscope.quant.scheme import DEFAULT_E2E, DEFAULT_SCHEMES, parse_scheme
from actscope.quant.splits import split_corpus, subset


def _corpus(n=60, dup_every=7):
    samples = []
    for i in range(n):
        text = f"text {i // 2}" if i % dup_every == 0 else f"text number {i}"  # some duplicate texts
        samples.append(Sample(f"id{i}", f"dom{i % 5}", "src", text))
    return Corpus("c", tuple(samples), {})


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_calib,n_eval", [(10, 10), (25, 30), (1, 1)])
def test_splits_are_disjoint_by_sample_and_by_text(seed, n_calib, n_eval):
    c = _corpus()
    s = split_corpus(c, n_calib, n_eval, seed)
    assert len(s.calibration) == n_calib and len(s.evaluation) == n_eval
    assert not set(s.calibration) & set(s.evaluation)
    texts_c = {c.samples[i].text for i in s.calibration}
    texts_e = {c.samples[i].text for i in s.evaluation}
    assert not texts_c & texts_e
    ids_c = {x.id for x in subset(c, s.calibration).samples}
    assert not ids_c & {x.id for x in subset(c, s.evaluation).samples}


def test_split_is_deterministic_and_spreads_domains():
    c = _corpus()
    assert split_corpus(c, 20, 20, 3) == split_corpus(c, 20, 20, 3)
    assert split_corpus(c, 20, 20, 3) != split_corpus(c, 20, 20, 4)
    s = split_corpus(c, 20, 20, 0)
    for side in (s.calibration, s.evaluation):
        assert {c.samples[i].domain for i in side} == {f"dom{k}" for k in range(5)}


def test_split_errors():
    c = _corpus(10)
    with pytest.raises(UserError, match="exceeds"):
        split_corpus(c, 8, 8)
    with pytest.raises(UserError, match="at least 1"):
        split_corpus(c, 0, 3)


@pytest.mark.parametrize(
    "spec,name",
    [
        ("int8", "int8:tensor:absmax"),
        ("INT8:tensor:p99.99", "int8:tensor:p99.99"),
        ("fp8", "fp8_e4m3:tensor:absmax"),
        ("e5m2:token", "fp8_e5m2:token"),
        ("int4:group32", "int4:group32"),
        ("mxfp4", "mxfp4"),
        ("int8:token+sq0.5", "int8:token+sq0.5"),
    ],
)
def test_scheme_names_round_trip(spec, name):
    s = parse_scheme(spec)
    assert s.name == name and parse_scheme(s.name) == s


def test_scheme_properties():
    assert parse_scheme("int8:tensor:p99.9").quantile == pytest.approx(0.999)
    assert parse_scheme("int8:token").gran == PerToken()
    m = parse_scheme("mxfp4")
    assert m.fmt is MXFP4 and m.gran == PerGroup(32) and m.bits == 4.25
    assert parse_scheme("int4:group32").bits == 4.5
    order = sorted((parse_scheme(s) for s in DEFAULT_SCHEMES), key=lambda s: s.cost)
    assert order[0].bits == 4 and order[-1].fmt.bits == 8
    assert parse_scheme("mxfp4").cost < parse_scheme("nvfp4").cost < parse_scheme("int8:tensor").cost
    for s in DEFAULT_SCHEMES + DEFAULT_E2E:
        parse_scheme(s)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("int9", "unknown quantization format"),
        ("int8:row", "unknown granularity"),
        ("int8:tensor:median", "unknown scale method"),
        ("int8:token:mse", "dynamic"),
        ("int8:channel:p99.9", "absmax only"),
        ("mxfp4:group16", "own granularity"),
        ("int8:tensor:mse+sq0.5", "SmoothQuant"),
        ("int8+sq2", "SmoothQuant part"),
        ("int8:a:b:c", "malformed"),
    ],
)
def test_bad_schemes_are_one_line_user_errors(spec, match):
    with pytest.raises(UserError, match=match) as e:
        parse_scheme(spec)
    assert "\n" not in str(e.value)
