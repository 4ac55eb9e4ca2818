"""Fixtures of the stress tests (the planted model itself is in planted.py)."""

from __future__ import annotations

import pytest
from planted import planted, write_corpus

from actscope.config import MeasureConfig
from actscope.runner import measure


@pytest.fixture
def planted_run(tmp_path):
    """(loaded, corpus run path) for the planted model, measured at the default stress kinds."""
    loaded = planted()
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = measure(
        MeasureConfig(corpus=corpus, out=str(tmp_path / "corpus-run"), progress=False), loaded=loaded
    )
    return loaded, out
