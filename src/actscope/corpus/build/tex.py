"""LaTeX-heavy text: PARI/GP manuals (math), R package vignettes (scientific), and the
Debian Reference in German, Japanese and Chinese (multilingual technical prose).

LaTeX markup is kept on purpose: it is realistic model input. Only the
preamble, comments and R code chunks are removed.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from .doc import Doc

PARI_FILES = ("tutorial", "tutorial-mf", *(f"usersch{i}" for i in range(1, 9)))
_COMMENT = re.compile(r"(?<!\\)%.*$", re.M)
_R_CHUNK = re.compile(r"^<<.*?>>=\n.*?^@\s*$", re.M | re.S)
_INDENT = re.compile(r"^ {1,4}", re.M)  # the text renderer indents body text by four spaces
_TOC_LINE = re.compile(r"^\s*\d+(?:\.\d+)*\.\s+\S.{0,80}$", re.M)


def _body(tex: str) -> str:
    begin = tex.find("\\begin{document}")
    if begin >= 0:
        tex = tex[begin + len("\\begin{document}") :]
    tex = tex.split("\\end{document}")[0]
    return _COMMENT.sub("", tex)


def _sections(tex: str) -> list[str]:
    """Split at \\section so that a document is a section, not a whole manual."""
    parts = re.split(r"(?=^\\section\b)", tex, flags=re.M)
    return [p for p in parts if p.strip()]


def read_pari(roots: list[Path]) -> Iterator[Doc]:
    base = roots[0] / "usr/share/pari/doc"
    for name in PARI_FILES:
        for i, section in enumerate(_sections(_body((base / f"{name}.tex").read_text(encoding="latin-1")))):
            yield Doc(f"{name}_{i:03d}", section)


def read_r_vignettes(roots: list[Path]) -> Iterator[Doc]:
    """JSS-style papers shipped as .Rnw sources; one document per vignette."""
    for root in roots:
        for path in sorted(root.glob("usr/lib/R/site-library/*/doc/*.Rnw")):
            pkg = path.parent.parent.name
            text = _R_CHUNK.sub("", _body(path.read_text(encoding="utf-8", errors="replace")))
            yield Doc(f"{pkg}_{path.stem}", text, license=f"{pkg}: {_r_license(path.parent.parent)}")


def _r_license(pkg_dir: Path) -> str:
    """The License field of the R package's DESCRIPTION, e.g. "GPL-2 | GPL-3"."""
    m = re.search(r"^License:\s*(.+)$", (pkg_dir / "DESCRIPTION").read_text(encoding="utf-8"), re.M)
    return m.group(1).strip() if m else "see package"


def read_debian_reference(roots: list[Path]) -> Iterator[Doc]:
    """Plain-text Debian Reference; numbered headings (and the table of contents) dropped."""
    for root in roots:
        for path in sorted(root.glob("usr/share/debian-reference/debian-reference.*.txt.gz")):
            lang = path.name.split(".")[1]
            text = _TOC_LINE.sub("", gzip.open(path, "rt", encoding="utf-8").read())
            parts = re.split(r"\n{3,}", text)  # chapters and sections are set off by runs of blank lines
            for i, part in enumerate(parts):
                if part.strip():
                    yield Doc(f"{lang}_{i:04d}", _INDENT.sub("", part.strip("\n")))
