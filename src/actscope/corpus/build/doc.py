"""The unit a source reader yields: one document with a stable id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Doc:
    id: str  # stable within its source, e.g. "chapter_12"
    text: str
    license: str | None = None  # set when it differs from the source's (e.g. per R package)
