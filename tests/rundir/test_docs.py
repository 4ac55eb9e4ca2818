"""docs/run-format.md lists exactly the columns and kinds that rundir/schema.py and sites.py define."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from actscope.rundir.schema import DOC_TABLES, markdown
from actscope.sites import KINDS

ROOT = Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location("gen_run_format", ROOT / "scripts" / "gen_run_format.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_format_doc_is_generated_and_fresh():
    text = (ROOT / "docs" / "run-format.md").read_text()
    for name in DOC_TABLES:
        assert f"<!-- columns:{name} -->\n{markdown(name)}\n<!-- end -->" in text, name
    assert _gen().render(text) == text, "run scripts/gen_run_format.py"
    assert "<!-- kinds -->" + ", ".join(KINDS) + "<!-- end -->" in text  # routing included
