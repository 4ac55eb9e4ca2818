"""Corpus specs -> Corpus. A spec is a built-in profile name or a user file/directory path."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorpusError


@dataclass(frozen=True)
class Sample:
    id: str
    domain: str
    source: str
    text: str


@dataclass(frozen=True)
class Corpus:
    name: str  # profile name or file path
    samples: tuple[Sample, ...]
    manifest: dict = field(default_factory=dict)  # sources present, package versions, licenses

    @property
    def hash(self) -> str:
        """sha256 over ids and texts: two corpora with the same hash feed the same text."""
        h = hashlib.sha256()
        for s in self.samples:
            h.update(s.id.encode())
            h.update(b"\0")
            h.update(s.text.encode())
            h.update(b"\0")
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.samples)

    def domains(self) -> dict[str, int]:
        """Samples per domain, in order of first appearance."""
        out: dict[str, int] = {}
        for s in self.samples:
            out[s.domain] = out.get(s.domain, 0) + 1
        return out


def load_corpus(spec: str, text_column: str = "text") -> Corpus:
    """Built-in profile ("quick", "standard", "full") or a user corpus path (see readers.py)."""
    from .profiles import PROFILES, load_profile
    from .readers import read_path

    if spec in PROFILES:
        corpus = load_profile(spec)
    else:
        path = Path(spec)
        if not path.exists() and path.is_symlink():  # exists() follows the link
            raise CorpusError(
                f"corpus {spec!r} is a dangling symlink or a symlink loop", "point it at a corpus file"
            )
        if not path.exists():
            raise CorpusError(
                f"corpus {spec!r} is neither a built-in profile nor an existing file",
                f"use one of {', '.join(PROFILES)} or a path to a .txt/.jsonl/.parquet/.csv file or directory",
            )
        corpus = read_path(path, text_column)
    if not corpus.samples:
        raise CorpusError(f"corpus {spec!r} has no samples", "give a corpus with at least one non-empty text")
    return corpus
