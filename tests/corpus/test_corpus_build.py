"""The build pipeline's pure parts: chunking, ranking, allocation, nesting, byte-identical writing."""

from __future__ import annotations

import random

from actscope.corpus.build.assemble import (
    Candidate,
    allocate,
    domain_pool,
    interleave,
    rank_source,
    select_profiles,
)
from actscope.corpus.build.doc import Doc
from actscope.corpus.build.fetch import Package
from actscope.corpus.build.spec import BY_NAME, DOMAINS, SOURCES, SourceSpec
from actscope.corpus.build.text import LONG_MAX, LONG_MIN, SHORT_MAX, chunk_long, chunk_short, est_tokens
from actscope.corpus.build.writer import write_all

WORDS = "the whale sea ship captain rope harpoon deck storm island".split()


def _prose(rng: random.Random, paragraphs: int) -> str:
    return "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) for _ in range(paragraphs)
    )


def test_token_estimate():
    assert est_tokens("abcd" * 90) == 80  # 4.5 plain ASCII characters per token
    assert est_tokens("{}" * 50) == 60  # punctuation is dense
    assert est_tokens("漢字" * 50) == 100  # one token per CJK character


def test_chunks_respect_bounds():
    rng = random.Random(0)
    text = _prose(rng, 400)
    short = chunk_short(text, random.Random(1))
    assert short and all(64 <= est_tokens(c) <= SHORT_MAX for c in short)
    long = chunk_long(text)
    assert long and all(LONG_MIN <= est_tokens(c) <= LONG_MAX for c in long)


def test_code_chunks_start_at_definitions():
    src = "\n\n".join(f"def f{i}(x):\n" + "    y = x + 1\n" * 30 + "    return y" for i in range(40))
    chunks = chunk_short(src, random.Random(0), code=True)
    assert chunks and all(c.startswith("def ") for c in chunks)


def _spec(name="s", domain="fiction", **kw) -> SourceSpec:
    return SourceSpec(name, domain, (Package("pypi", "x", "1"),), "MIT", "m:f", "t", **kw)


def test_rank_source_is_deterministic_and_spreads_documents():
    rng = random.Random(0)
    docs = [Doc(f"d{i}", _prose(rng, 30)) for i in range(10)]
    a = rank_source(_spec(), docs, seed=1)
    assert a == rank_source(_spec(), docs, seed=1)
    assert a != rank_source(_spec(), docs, seed=2)
    first = [c.id.split("/")[1] for c in a[0][:10]]
    assert len(set(first)) == 10  # the first ten candidates come from ten documents


def test_allocate_passes_shortfall_on():
    q = allocate(100, {"a": 10, "b": 1000, "c": 1000})
    assert q == {"a": 10, "b": 45, "c": 45}
    assert sum(allocate(5000, {d: 400 + 20 * i for i, d in enumerate(DOMAINS)}).values()) == 5000


def test_interleave_by_weight():
    a = [Candidate(f"a{i}", "d", "a", "x", "MIT") for i in range(30)]
    b = [Candidate(f"b{i}", "d", "b", "y", "MIT") for i in range(5)]
    out = interleave([a, b], [2, 1])
    assert len(out) == 35 and sum(c.source == "b" for c in out[:9]) == 3


def test_domain_pool_places_long_samples():
    short = [Candidate(f"s{i}", "d", "s", "x" * 400, "MIT") for i in range(40)]
    long = [Candidate(f"l{i}", "d", "s", "x" * 10000, "MIT") for i in range(2)]
    pool = domain_pool(short, long)
    assert [i for i, c in enumerate(pool) if c.long] == [15, 31]


def _pools(n_per_domain=150):
    rng = random.Random(0)
    pools = {}
    for d in DOMAINS:
        pools[d] = [
            Candidate(
                f"{d}/{i}", d, d, " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 400))), "MIT"
            )
            for i in range(n_per_domain)
        ]
    return pools


def test_profiles_nested_and_balanced():
    chosen = select_profiles(_pools(), {"quick": 24, "standard": 120, "full": 600})
    ids = {p: {c.id for c in v} for p, v in chosen.items()}
    assert ids["quick"] <= ids["standard"] <= ids["full"]
    assert [len(chosen[p]) for p in ("quick", "standard", "full")] == [24, 120, 600]
    assert all(100 <= c.tokens <= 300 for c in chosen["quick"])


def test_write_is_byte_identical(tmp_path):
    chosen = select_profiles(_pools(30), {"quick": 12, "standard": 48, "full": 240})
    specs = [_spec(d, d) for d in DOMAINS]
    for out in (tmp_path / "a", tmp_path / "b"):
        write_all(out, chosen, specs, {}, seed=1, base="test")
    for name in ("quick.jsonl.gz", "standard.jsonl.gz", "full.jsonl.gz", "MANIFEST.json", "NOTICE"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_source_table():
    assert {s.domain for s in SOURCES} == set(DOMAINS) and len(DOMAINS) >= 12
    assert BY_NAME["bbc_news"].local and BY_NAME["lee_abc_news"].local
    for s in SOURCES:
        assert ":" in s.reader and s.packages and s.license


def test_local_sources_fill_their_domain(tmp_path, monkeypatch):
    """--with-local-sources on a user's machine: shipped samples plus local news, still 5,000 in full."""
    import actscope.corpus.build as build_mod
    from actscope.corpus import load_corpus
    from actscope.corpus.profiles import load_profile

    rng = random.Random(0)
    local_news = [
        Candidate(
            f"bbc_news/n{i}/0",
            "news",
            "bbc_news",
            " ".join(rng.choice(WORDS) for _ in range(150)),
            "research",
        )
        for i in range(600)
    ]

    def fake_pools(specs, *args, **kwargs):
        assert all(s.local for s in specs)
        return {"news": local_news}

    monkeypatch.setattr(build_mod, "_pools", fake_pools)
    manifest = build_mod.build(
        tmp_path, from_registries=False, with_local=True, profiles=("quick",), log=lambda _: None
    )
    assert manifest["local_sources_present"] == ["bbc_news"]
    assert manifest["profiles"]["quick"]["n_samples"] == 100
    assert "bbc_news" in (tmp_path / "NOTICE").read_text() and "LOCAL" in (tmp_path / "NOTICE").read_text()
    built = load_corpus(str(tmp_path / "quick.jsonl.gz"))
    assert built.manifest["kind"] == "built-profile" and built.manifest["local_sources_present"] == [
        "bbc_news"
    ]
    shipped = {s.id for s in load_profile("quick").samples if s.domain != "news"}
    assert {s.id for s in built.samples if s.domain != "news"} <= shipped | set()  # other domains unchanged
