"""Rewrite the column tables of docs/run-format.md from rundir/schema.py (the one source).

python scripts/gen_run_format.py        # tests/test_run_format_docs.py checks it is fresh
"""

from __future__ import annotations

import re
from pathlib import Path

from actscope.rundir.schema import DOC_TABLES, markdown
from actscope.sites import KINDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "run-format.md"


def render(text: str) -> str:
    for name in DOC_TABLES:
        block = f"<!-- columns:{name} -->\n{markdown(name)}\n<!-- end -->"
        text = re.sub(rf"<!-- columns:{name} -->\n.*?<!-- end -->", lambda _m, b=block: b, text, flags=re.S)
    kinds = "<!-- kinds -->" + ", ".join(KINDS) + "<!-- end -->"
    return re.sub(r"<!-- kinds -->.*?<!-- end -->", lambda _m: kinds, text, flags=re.S)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text()))
