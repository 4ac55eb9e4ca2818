"""User corpora from files: .txt, a directory of .txt, JSONL (.jsonl/.jsonl.gz/.ndjson), Parquet, CSV/TSV.

    file.txt        one sample for the whole file; a file over TXT_MAX_CHARS (~4,096
                    tokens) is cut at blank lines into samples of at most that size
    directory/      every *.txt below it, sorted by relative path, each read as above
    .jsonl          one JSON object per line: `text` (or --text-column), optional `id`, `domain`
    .parquet, .csv  one row per sample; the text column is `text` unless given; optional `id`, `domain`

Every problem is a CorpusError naming the file and the fix.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import CorpusError
from ..registry import Registry
from .profiles import profile_manifest
from .types import Corpus, Sample

log = logging.getLogger(__name__)

TXT_MAX_CHARS = 16_384  # ~4,096 tokens at ~4 characters per token
# The whole corpus is held in memory as text; a file (or a .gz once decompressed) larger
# than this is a mistake (/dev/zero, a disk image, a gzip bomb) more often than a corpus.
MAX_FILE_BYTES = 2 << 30

Reader = Callable[[Path, str], list[Sample]]
FORMATS: Registry[Reader] = Registry("corpus format")


def read_path(path: Path, text_column: str = "text") -> Corpus:
    """Dispatch on the suffix; a directory means its .txt files."""
    fmt = "dir" if path.is_dir() else _format_of(path)
    if fmt != "dir":
        regular_file(path)
    samples = FORMATS.get(fmt)(path, text_column)
    if not samples:
        raise CorpusError(
            f"corpus {path} has no samples (no non-empty text)", "give at least one non-empty text"
        )
    manifest = {"kind": fmt, "path": str(path), **_built_profile(path)}
    if text_column != "text":  # what merge and quant need to read the same texts again
        manifest["text_column"] = text_column
    return Corpus(name=str(path), samples=tuple(samples), manifest=manifest)


def _built_profile(path: Path) -> dict:
    """A profile written by `actscope corpus build` keeps its MANIFEST.json beside it: carry that along."""
    name = path.name.removesuffix(".jsonl.gz")
    side = path.parent / "MANIFEST.json"
    if name == path.name or not side.is_file():
        return {}
    try:
        full = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    if name not in full.get("profiles", {}):
        return {}
    return {**profile_manifest(full, name), "kind": "built-profile"}


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in (
        (".jsonl.gz", "jsonl"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".parquet", "parquet"),
        (".csv", "csv"),
        (".tsv", "csv"),
        (".txt", "txt"),
    ):
        if name.endswith(suffix):
            return fmt
    raise CorpusError(
        f"corpus {path}: unknown file type {path.suffix or '(no suffix)'!r}",
        "give a .txt, .jsonl, .parquet or .csv file, or a directory of .txt files",
    )


def regular_file(path: Path) -> os.stat_result:
    """A regular file of a sane size: a FIFO would block forever, a device read without end."""
    try:
        st = path.stat()
    except OSError as e:  # a symlink loop, a dangling link, no permission
        raise CorpusError(f"corpus {path} cannot be read ({e.strerror})", "give a readable file") from None
    if not stat.S_ISREG(st.st_mode):
        raise CorpusError(
            f"corpus {path} is a {file_kind(st.st_mode)}, not a regular file",
            "give a regular .txt/.jsonl/.parquet/.csv file or a directory of .txt files",
        )
    if st.st_size > MAX_FILE_BYTES:
        raise _too_large(path)
    return st


def file_kind(mode: int) -> str:
    """FIFO, character device ... for a stat mode that is neither a file nor a directory."""
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _too_large(path: Path) -> CorpusError:
    return CorpusError(
        f"corpus file {path} is over {MAX_FILE_BYTES >> 30} GiB (uncompressed)",
        "split it into several files, or take a sample of it",
    )


def _read_bytes(path: Path, allow_blank: bool = False) -> bytes:
    """The file's bytes (decompressed for .gz), never more than MAX_FILE_BYTES."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise CorpusError(f"corpus file {path} cannot be read ({e})", "give an intact file") from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(path)
    if not allow_blank and not data.strip():
        raise CorpusError(f"corpus file {path} is empty", "give a file with text in it")
    return data


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"corpus file {path} is not valid UTF-8 (byte {e.start})", "re-encode it as UTF-8"
        ) from None


def _split_large(text: str) -> list[str]:
    """Whole text if small; else blank-line-separated blocks packed up to TXT_MAX_CHARS.
    Linear in the text: a huge block is cut by index, never by re-slicing its remainder."""
    if len(text) <= TXT_MAX_CHARS:
        return [text]
    out, cur = [], ""
    for block in text.split("\n\n"):
        if len(block) > TXT_MAX_CHARS:  # one huge block: hard cuts, the tail packs on
            if cur:
                out.append(cur)
                cur = ""
            cut = len(block) - (len(block) - 1) % TXT_MAX_CHARS - 1  # the tail keeps 1..MAX chars
            out += [block[i : i + TXT_MAX_CHARS] for i in range(0, cut, TXT_MAX_CHARS)]
            block = block[cut:]
        if cur and len(cur) + 2 + len(block) > TXT_MAX_CHARS:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{block}" if cur else block
    if cur:
        out.append(cur)
    return [t for t in out if t.strip()]


def _txt_samples(path: Path, sample_id: str) -> list[Sample]:
    return _txt_parts(path, sample_id, _read_bytes(path))


def _txt_parts(path: Path, sample_id: str, data: bytes) -> list[Sample]:
    parts = _split_large(_decode(path, data).strip())
    if len(parts) == 1:
        return [Sample(sample_id, "user", path.name, parts[0])]
    return [Sample(f"{sample_id}:{i}", "user", path.name, t) for i, t in enumerate(parts)]


@FORMATS.register("txt")
def read_txt(path: Path, text_column: str = "text") -> list[Sample]:
    return _txt_samples(path, path.stem)


@FORMATS.register("dir")
def read_dir(path: Path, text_column: str = "text") -> list[Sample]:
    """Every regular, non-blank *.txt below `path`; blank ones are skipped with a warning (one
    empty note must not reject the corpus), FIFOs and devices named *.txt are errors."""
    files = sorted(p for p in path.rglob("*.txt") if not p.is_dir())
    if not files:
        raise CorpusError(f"corpus directory {path} has no .txt files", "put one .txt file per sample in it")
    out: list[Sample] = []
    blank = []
    for f in files:
        regular_file(f)  # before opening it: a FIFO named x.txt would block
        data = _read_bytes(f, allow_blank=True)
        if not data.strip():
            blank.append(f.relative_to(path).as_posix())
            continue
        out += _txt_parts(f, f.relative_to(path).with_suffix("").as_posix(), data)
    if blank:
        log.warning("skipped %d blank .txt files in %s: %s", len(blank), path, ", ".join(blank[:5]))
    return out


@FORMATS.register("jsonl")
def read_jsonl(path: Path, text_column: str = "text") -> list[Sample]:
    lines = _decode(path, _read_bytes(path)).splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            hint = "it looks like one JSON document, not JSONL" if line.lstrip()[:1] in "[{" else "not JSON"
            raise CorpusError(
                f"corpus {path} line {lineno} is not a JSON object ({hint})",
                "give one JSON object per line (JSONL), or use a .txt/.csv suffix for other text",
            ) from None
        if not isinstance(rec, dict):
            raise CorpusError(
                f"corpus {path} line {lineno} is not a JSON object", "give one JSON object per line"
            )
        rows.append((lineno, rec))
    return _rows_to_samples(path, rows, text_column)


@FORMATS.register("csv")
def read_csv(path: Path, text_column: str = "text") -> list[Sample]:
    text = _decode(path, _read_bytes(path))
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delim)
    _need_column(path, reader.fieldnames or [], text_column)
    return _rows_to_samples(path, enumerate(reader, 2), text_column)


@FORMATS.register("parquet")
def read_parquet(path: Path, text_column: str = "text") -> list[Sample]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise CorpusError(
            f"corpus {path} is not a readable Parquet file ({type(e).__name__})", "give a Parquet file"
        ) from None
    _need_column(path, table.column_names, text_column)
    keep = [c for c in (text_column, "id", "domain") if c in table.column_names]
    return _rows_to_samples(path, enumerate(table.select(keep).to_pylist()), text_column)


def _stem(path: Path) -> str:
    """File name without its format suffixes: c.jsonl.gz -> c."""
    name = path.name.removesuffix(".gz").removesuffix(".GZ")
    return Path(name).stem


def _need_column(path: Path, columns: list[str], text_column: str) -> None:
    if text_column not in columns:
        have = ", ".join(map(str, columns)) or "none"
        raise CorpusError(
            f"corpus {path} has no column {text_column!r} (columns: {have})",
            "pass --text-column with one of those columns",
        )


def _rows_to_samples(path: Path, rows: Iterable[tuple[int, dict]], text_column: str) -> list[Sample]:
    out = []
    for n, rec in rows:
        text = rec.get(text_column)
        if text is None and text_column not in rec:
            _need_column(path, list(rec), text_column)
        if not isinstance(text, str) or not text.strip():
            continue
        sid = rec.get("id")
        out.append(
            Sample(
                str(sid) if sid not in (None, "") else f"{_stem(path)}-{n}",
                str(rec.get("domain") or "user"),
                path.name,
                text,
            )
        )
    return out
