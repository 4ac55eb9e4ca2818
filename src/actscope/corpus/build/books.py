"""Fiction and speech: Moby-Dick chapters and State of the Union addresses (stdlib-js datasets)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .doc import Doc


def read_moby_dick(roots: list[Path]) -> Iterator[Doc]:
    data = roots[0] / "package/data"
    files = sorted(data.glob("chapter_*.txt"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
    for path in files:
        yield Doc(path.stem, path.read_text(encoding="utf-8"))


def read_sotu(roots: list[Path]) -> Iterator[Doc]:
    for path in sorted((roots[0] / "package/data").glob("*.txt")):
        yield Doc(path.stem, path.read_text(encoding="utf-8"))
