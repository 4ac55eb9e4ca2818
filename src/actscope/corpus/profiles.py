"""Built-in corpus profiles, read from the compressed artifact shipped in actscope/data/corpus/.

quick ⊂ standard ⊂ full, all stratified over the same 12 domains; MANIFEST.json
beside them records sample counts, sources, package versions and licenses.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib.resources import files

from ..errors import CorpusError
from .types import Corpus, Sample

PROFILES = ("quick", "standard", "full")


def _data_dir():
    return files("actscope") / "data" / "corpus"


@lru_cache(maxsize=1)
def shipped_manifest() -> dict:
    path = _data_dir() / "MANIFEST.json"
    if not path.is_file():
        raise CorpusError("the built-in corpus MANIFEST.json is not installed", "reinstall actscope")
    return json.loads(path.read_text(encoding="utf-8"))


def load_profile(name: str) -> Corpus:
    if name not in PROFILES:
        raise CorpusError(f"unknown corpus profile {name!r}", f"choose one of {', '.join(PROFILES)}")
    path = _data_dir() / f"{name}.jsonl.gz"
    if not path.is_file():
        raise CorpusError(f"built-in corpus profile {name!r} is not installed", "reinstall actscope")
    with gzip.open(str(path), "rt", encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    samples = tuple(Sample(r["id"], r["domain"], r["source"], r["text"]) for r in recs)
    return Corpus(name=name, samples=samples, manifest=profile_manifest(shipped_manifest(), name))


def profile_manifest(full: dict, name: str) -> dict:
    """What a run records about a profile: sources with versions and licenses, hashes, local sources."""
    entry = full["profiles"].get(name, {})
    used = entry.get("sources", {})
    return {
        "kind": "profile",
        "profile": name,
        "seed": full.get("seed"),
        "sha256_jsonl": entry.get("sha256_jsonl"),
        "local_sources_present": full.get("local_sources_present", []),
        "sources": {k: v for k, v in full.get("sources", {}).items() if k in used},
    }
