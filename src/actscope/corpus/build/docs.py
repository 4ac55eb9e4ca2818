"""Technical documentation and Q&A from the Python 3.11 docs (Debian python3.11-doc, reST sources)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .doc import Doc

SOURCES = "usr/share/doc/python3.11/html/_sources"
_UNDERLINE = re.compile(r"^([=\-~^*+#\"'`]){3,}\s*$")
_DIRECTIVE = re.compile(r"^\.\. (?:index|highlight|module|currentmodule|sectionauthor|_[\w-]+):.*$", re.M)


def read_python_docs(roots: list[Path]) -> Iterator[Doc]:
    """Every page except the FAQ (it is Q&A) and the changelog dumps."""
    base = roots[0] / SOURCES
    for path in sorted(base.rglob("*.rst.txt")):
        rel = path.relative_to(base).as_posix()
        if rel.startswith("faq/") or rel.startswith("whatsnew/changelog"):
            continue
        yield Doc(rel.removesuffix(".rst.txt"), _DIRECTIVE.sub("", path.read_text(encoding="utf-8")))


def read_python_faq(roots: list[Path]) -> Iterator[Doc]:
    """One document per FAQ question: the heading is the question, the body its answer."""
    base = roots[0] / SOURCES / "faq"
    for path in sorted(base.glob("*.rst.txt")):
        lines = _DIRECTIVE.sub("", path.read_text(encoding="utf-8")).splitlines()
        heads = [i - 1 for i in range(1, len(lines)) if _UNDERLINE.match(lines[i]) and lines[i - 1].strip()]
        for n, (a, b) in enumerate(zip(heads, [*heads[1:], len(lines) + 1], strict=True)):
            question = lines[a].strip()
            body = "\n".join(lines[a + 2 : b]).strip()
            if question.endswith("?") and body:
                yield Doc(f"{path.name.removesuffix('.rst.txt')}_{n:03d}", f"Q: {question}\n\nA: {body}")
