"""The shipped profiles: sizes, domains, nesting, determinism, manifest and NOTICE."""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib.resources import files

import pytest

from actscope.corpus import load_corpus
from actscope.corpus.build.spec import BY_NAME, DOMAINS
from actscope.corpus.build.text import est_tokens
from actscope.corpus.profiles import PROFILES, load_profile, shipped_manifest

DATA = files("actscope") / "data" / "corpus"


@pytest.fixture(scope="module")
def profiles():
    return {p: load_profile(p) for p in PROFILES}


def _records(name):
    with gzip.open(str(DATA / f"{name}.jsonl.gz"), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_loading_is_deterministic(profiles):
    for name in PROFILES:
        again = load_corpus(name)
        assert again.hash == profiles[name].hash
        assert [s.id for s in again.samples] == [s.id for s in profiles[name].samples]


def test_hashes_match_manifest(profiles):
    manifest = shipped_manifest()
    for name in PROFILES:
        entry = manifest["profiles"][name]
        raw = gzip.decompress((DATA / f"{name}.jsonl.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == entry["sha256_jsonl"]
        assert profiles[name].hash == entry["corpus_hash"]
        assert profiles[name].manifest["sha256_jsonl"] == entry["sha256_jsonl"]


def test_full_has_5000_samples_over_all_domains(profiles):
    full = profiles["full"]
    assert len(full) == 5000
    assert set(full.domains()) == set(DOMAINS) and len(DOMAINS) >= 12
    counts = full.domains()
    assert min(counts.values()) >= 100, counts  # no domain is a token presence


@pytest.mark.parametrize("name, size", [("quick", 100), ("standard", 1000)])
def test_subsets_are_stratified(profiles, name, size):
    counts = profiles[name].domains()
    assert len(profiles[name]) == size
    assert set(counts) == set(DOMAINS)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_profiles_are_nested(profiles):
    ids = {p: {s.id for s in profiles[p].samples} for p in PROFILES}
    assert ids["quick"] <= ids["standard"] <= ids["full"]
    assert len(ids["full"]) == len(profiles["full"])  # ids are unique


def test_quick_is_small(profiles):
    tokens = [est_tokens(s.text) for s in profiles["quick"].samples]
    assert len(tokens) <= 100
    assert all(100 <= t <= 300 for t in tokens)
    assert sum(tokens) <= 25_000


def test_full_has_a_long_document_slice(profiles):
    long = [s for s in profiles["full"].samples if est_tokens(s.text) >= 2048]
    assert len(long) >= 200
    assert all(est_tokens(s.text) <= 4096 for s in long)
    assert len({s.domain for s in long}) >= 8


def test_records_are_well_formed():
    for rec in _records("quick"):
        assert set(rec) == {"id", "domain", "source", "text", "sha1", "license"}
        assert rec["sha1"] == hashlib.sha1(rec["text"].encode()).hexdigest()
        assert rec["license"]


def test_no_local_source_is_shipped(profiles):
    sources = {s.source for s in profiles["full"].samples}
    assert not any(BY_NAME[s].local for s in sources)
    assert shipped_manifest()["local_sources_present"] == []


def test_notice_names_every_shipped_source():
    notice = (DATA / "NOTICE").read_text(encoding="utf-8")
    manifest = shipped_manifest()
    sources = {r["source"] for r in _records("full")}
    assert sources == set(manifest["sources"])
    for name in sources:
        src = manifest["sources"][name]
        assert name in notice and src["license"] in notice
        for pkg in src["packages"]:
            assert f"{pkg['name']} {pkg['version']}" in notice
        for lic in src["licenses_in_samples"]:
            assert lic in notice


def test_artifact_is_small():
    total = sum((DATA / f"{p}.jsonl.gz").stat().st_size for p in PROFILES)
    assert total < 8 * 2**20
