"""The corpus values: a Sample (one text with its domain and source) and a Corpus of them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


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
