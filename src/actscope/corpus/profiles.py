"""Built-in corpus profiles, read from the compressed artifact shipped in actscope/data/corpus/."""

from __future__ import annotations

import gzip
import json
from importlib.resources import files

from ..errors import CorpusError
from .sources import Corpus, Sample

PROFILES = ("quick", "standard", "full")


def load_profile(name: str) -> Corpus:
    path = files("actscope") / "data" / "corpus" / f"{name}.jsonl.gz"
    if not path.is_file():
        raise CorpusError(f"built-in corpus profile {name!r} is not installed", "reinstall actscope")
    with gzip.open(str(path), "rt", encoding="utf-8") as f:
        recs = [json.loads(line) for line in f if line.strip()]
    samples = tuple(Sample(r["id"], r["domain"], r["source"], r["text"]) for r in recs)
    return Corpus(name=name, samples=samples, manifest={"kind": "profile", "profile": name})
