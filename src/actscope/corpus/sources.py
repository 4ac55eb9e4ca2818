"""Corpus specs -> Corpus. A spec is a built-in profile name or a user file/directory path."""

from __future__ import annotations

from pathlib import Path

from ..errors import CorpusError
from .profiles import PROFILES, load_profile
from .readers import read_path
from .types import Corpus


def load_corpus(spec: str, text_column: str = "text") -> Corpus:
    """Built-in profile ("quick", "standard", "full") or a user corpus path (see readers.py)."""
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
