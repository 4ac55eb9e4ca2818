"""Corpus specs -> Corpus. A spec is a built-in profile name or a user file path."""

from __future__ import annotations

import hashlib
import json
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


def load_corpus(spec: str) -> Corpus:
    """Built-in profile ("quick", ...) or a JSONL file with a `text` field."""
    from .profiles import PROFILES, load_profile

    if spec in PROFILES:
        corpus = load_profile(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise CorpusError(
                f"corpus {spec!r} is neither a built-in profile nor an existing file",
                f"use one of {', '.join(PROFILES)} or a path to a .jsonl file",
            )
        corpus = _read_jsonl(path)
    if not corpus.samples:
        raise CorpusError(f"corpus {spec!r} has no samples", "give a corpus with at least one non-empty text")
    return corpus


def _read_jsonl(path: Path) -> Corpus:
    samples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus {path} is not valid UTF-8 (byte {e.start})", "re-encode the file as UTF-8") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise CorpusError(
                f"corpus {path} line {lineno} is not JSON", "give one JSON object per line (JSONL)"
            ) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise CorpusError(
                f"corpus {path} line {lineno} has no string field 'text'",
                'write each line as {"text": "...", "domain": "...", "id": "..."}',
            )
        if not rec["text"].strip():
            continue
        samples.append(
            Sample(
                id=str(rec.get("id", f"{path.stem}-{lineno}")),
                domain=str(rec.get("domain", "user")),
                source=str(rec.get("source", path.name)),
                text=rec["text"],
            )
        )
    return Corpus(name=str(path), samples=tuple(samples), manifest={"kind": "jsonl", "path": str(path)})
