"""Build the built-in corpus profiles from source packages on the public registries.

    build(out, seed=..., cache=...)                      maintainer: every shippable source
    build(out, from_registries=False, with_local=True)   user: shipped profiles + local sources

Both write {quick,standard,full}.jsonl.gz, MANIFEST.json and NOTICE into `out`;
the same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import gzip
import importlib
import json
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from .assemble import Candidate, dedupe, domain_pool, interleave, rank_source, select_profiles
from .fetch import fetch
from .spec import DOMAINS, SOURCES, SourceSpec
from .writer import write_all

PROFILE_SIZES = {"quick": 100, "standard": 1000, "full": 5000}
DEFAULT_SEED = 20240601
DEFAULT_CACHE = Path.home() / ".cache" / "actscope" / "corpus-sources"


def build(
    out: Path,
    *,
    seed: int = DEFAULT_SEED,
    cache: Path = DEFAULT_CACHE,
    from_registries: bool = True,
    with_local: bool = False,
    profiles: tuple[str, ...] = tuple(PROFILE_SIZES),
    log: Callable[[str], None] = print,
) -> dict:
    specs = [s for s in SOURCES if with_local or not s.local]
    versions: dict[str, str] = {}
    if from_registries:
        pools = _pools([s for s in specs], cache, seed, versions, log, prefer_installed=False)
        base = "registries"
    else:
        pools = _shipped_pools()
        local = _pools([s for s in specs if s.local], cache, seed, versions, log, prefer_installed=True)
        for d, extra in local.items():
            pools[d] = pools.get(d, []) + extra  # local text ranks after the shipped samples of its domain
        base = "shipped"
    chosen = select_profiles(dedupe(pools), PROFILE_SIZES)
    wanted = {p: chosen[p] for p in PROFILE_SIZES if p in profiles}
    manifest = write_all(out, wanted, specs, versions, seed=seed, base=base, full=chosen["full"])
    for p, entry in manifest["profiles"].items():
        log(
            f"{p}: {entry['n_samples']} samples, ~{entry['approx_tokens']:,} tokens, {len(entry['domains'])} domains"
        )
    return manifest


def _pools(specs, cache, seed, versions, log, *, prefer_installed) -> dict[str, list[Candidate]]:
    """Per domain: sources interleaved by weight, long samples in their slots."""
    short: dict[str, list[tuple[SourceSpec, list[Candidate]]]] = {}
    long: dict[str, list[tuple[SourceSpec, list[Candidate]]]] = {}
    for spec in specs:
        roots = []
        for pkg in spec.packages:
            got = fetch(pkg, cache, prefer_installed=prefer_installed)
            versions[pkg.key] = got.version
            roots.append(got.root)
        module, _, func = spec.reader.partition(":")
        reader = getattr(importlib.import_module(f"{__name__}.{module}"), func)
        s, lg = rank_source(spec, reader(roots), seed)
        log(f"{spec.name:<24} {spec.domain:<13} {len(s):>6} short {len(lg):>4} long candidates")
        short.setdefault(spec.domain, []).append((spec, s))
        long.setdefault(spec.domain, []).append((spec, lg))
    pools = {}
    for d in sorted(short, key=lambda d: DOMAINS.index(d)):
        weights = [spec.weight for spec, _ in short[d]]
        pools[d] = domain_pool(
            interleave([c for _, c in short[d]], weights), interleave([c for _, c in long[d]], weights)
        )
    return pools


def shipped_dir():
    return files("actscope") / "data" / "corpus"


def _shipped_pools() -> dict[str, list[Candidate]]:
    """The shipped full profile, in its order (domain, then rank), as the base pools."""
    path = shipped_dir() / "full.jsonl.gz"
    pools: dict[str, list[Candidate]] = {}
    with gzip.open(str(path), "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            pools.setdefault(r["domain"], []).append(
                Candidate(r["id"], r["domain"], r["source"], r["text"], r["license"])
            )
    return pools
