"""docs/architectures.md is what scripts/gen_architectures.py writes from the registry today."""

from __future__ import annotations

from pathlib import Path

import transformers

from actscope.adapters.matrix import family_row, render
from actscope.adapters.tiny import TINY

DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"


def test_architecture_matrix_is_generated_and_fresh(family_model):
    rows = [family_row(t, family_model(t)) for t in sorted(TINY)]
    assert DOC.read_text() == render(rows, transformers.__version__), "run scripts/gen_architectures.py"
