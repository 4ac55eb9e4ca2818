"""Encyclopedia sources: Wikipedia articles (gensim test data) and FOLDOC (Debian dict-foldoc)."""

from __future__ import annotations

import bz2
import gzip
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from .doc import Doc

ENWIKI = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_WIKI_JUNK = re.compile(r"^(?:thumb\||\s*\|).*$|^\s*(?:Category|File|Image):.*$", re.M)


def read_enwiki(roots: list[Path]) -> Iterator[Doc]:
    """Main-namespace articles, markup stripped with mwparserfromhell; redirects skipped."""
    import mwparserfromhell  # build-time dependency only

    with bz2.open(roots[0] / ENWIKI) as f:
        for _, el in ET.iterparse(f):
            if not el.tag.endswith("}page"):
                continue
            ns = el.findtext("{*}ns")
            title = el.findtext("{*}title") or ""
            wikitext = el.findtext("{*}revision/{*}text") or ""
            el.clear()
            if ns != "0" or el.find("{*}redirect") is not None or wikitext.lower().startswith("#redirect"):
                continue
            text = mwparserfromhell.parse(wikitext).strip_code(normalize=True, collapse=True)
            text = _WIKI_JUNK.sub("", text)
            yield Doc(title.replace(" ", "_"), f"{title}\n\n{text}")


def _b64(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def read_foldoc(roots: list[Path]) -> Iterator[Doc]:
    """Dictionary entries in file order, 40 to a document (entries alone are too short)."""
    base = roots[0] / "usr/share/dictd"
    data = gzip.open(base / "foldoc.dict.dz").read()
    spans = []
    for line in (base / "foldoc.index").read_text(encoding="utf-8").splitlines():
        head, off, size = line.split("\t")
        if not head.startswith("00-database"):
            spans.append((_b64(off), _b64(size)))
    spans = sorted(set(spans))
    for i in range(0, len(spans), 40):
        entries = []
        for off, size in spans[i : i + 40]:
            body = data[off : off + size].decode("utf-8", "replace").strip("\n")
            lines = [ln[3:] if ln.startswith("   ") else ln for ln in body.splitlines()]
            entries.append("\n".join(lines).strip())
        yield Doc(f"entries_{i:05d}", "\n\n".join(entries))
