"""Fiction and speech: Moby-Dick and Jane Austen chapters, State of the Union addresses."""

from __future__ import annotations

import re
import struct
import zlib
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


AUSTEN_RDB = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
_CHAPTER = re.compile(r"^(?:CHAPTER|Chapter)\s+[\dIVXLC]+\.?$", re.M)


def read_austen(roots: list[Path]) -> Iterator[Doc]:
    """Jane Austen's six novels from janeaustenr's R lazy-load database, one document per chapter."""
    for lines in _rdb_character_vectors((roots[0] / AUSTEN_RDB).read_bytes()):
        title = next(line for line in lines if line.strip()).strip()
        book = re.sub(r"\W+", "_", title.lower()).strip("_")
        paras = re.split(r"\n\s*\n", "\n".join(lines))
        text = "\n\n".join(" ".join(p.split()) for p in paras if p.strip())  # unwrap the 70-column lines
        starts = [m.start() for m in _CHAPTER.finditer(text)]
        for i, (a, b) in enumerate(zip(starts, [*starts[1:], len(text)], strict=True)):
            yield Doc(f"{book}_{i + 1:02d}", text[a:b])


def _rdb_character_vectors(data: bytes) -> Iterator[list[str]]:
    """Each object of an .rdb file: a 4-byte length, then a zlib stream of an XDR-serialised R object.

    janeaustenr stores plain character vectors (STRSXP, no attributes), which is
    all this reader understands; anything else is skipped.
    """
    pos = 0
    while pos + 4 < len(data):
        z = zlib.decompressobj()
        raw = z.decompress(data[pos + 4 :])
        pos = len(data) - len(z.unused_data)
        if raw[:2] != b"X\n":
            continue
        off = 2 + 12  # format "X\n", then version, R version, minimum R version
        (n_enc,) = struct.unpack(">i", raw[off : off + 4])
        off += 4 + n_enc  # native encoding name (serialisation version 3)
        flags, length = struct.unpack(">ii", raw[off : off + 8])
        if flags & 0xFF != 16:  # not a STRSXP
            continue
        off += 8
        out = []
        for _ in range(length):
            _, n = struct.unpack(">ii", raw[off : off + 8])
            off += 8
            if n < 0:  # NA_character_
                out.append("")
                continue
            out.append(raw[off : off + n].decode("utf-8", "replace"))
            off += n
        yield out
