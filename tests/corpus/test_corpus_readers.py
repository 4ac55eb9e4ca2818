"""User corpora: every reader format, and every error case with its one-line message."""

from __future__ import annotations

import gzip
import json

import pytest

from actscope.corpus import load_corpus
from actscope.corpus.readers import TXT_MAX_CHARS
from actscope.errors import CorpusError


def test_txt_whole_file_is_one_sample(tmp_path):
    p = tmp_path / "essay.txt"
    p.write_text("First paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    c = load_corpus(str(p))
    assert [(s.id, s.domain, s.text) for s in c.samples] == [
        ("essay", "user", "First paragraph.\n\nSecond paragraph.")
    ]


def test_large_txt_is_cut_at_blank_lines(tmp_path):
    para = "word " * 1000  # 5,000 chars
    p = tmp_path / "big.txt"
    p.write_text("\n\n".join([para.strip()] * 10), encoding="utf-8")
    c = load_corpus(str(p))
    assert len(c) > 1
    assert all(len(s.text) <= TXT_MAX_CHARS for s in c.samples)
    assert [s.id for s in c.samples] == [f"big:{i}" for i in range(len(c))]


def test_directory_of_txt_files_is_sorted(tmp_path):
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"text of {name}", encoding="utf-8")
    (tmp_path / "ignored.md").write_text("not read")
    c = load_corpus(str(tmp_path))
    assert [s.id for s in c.samples] == ["a", "b", "sub/c"]


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl(tmp_path, gz):
    lines = [{"text": "one", "domain": "news", "id": "x1"}, {"text": "two"}, {"text": "   "}]
    raw = "".join(json.dumps(r) + "\n" for r in lines).encode()
    p = tmp_path / ("c.jsonl.gz" if gz else "c.jsonl")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    c = load_corpus(str(p))
    assert [(s.id, s.domain, s.text) for s in c.samples] == [("x1", "news", "one"), ("c-2", "user", "two")]


def test_jsonl_text_column(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"body": "hello"}\n', encoding="utf-8")
    assert load_corpus(str(p), text_column="body").samples[0].text == "hello"


def test_csv_and_tsv(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text('id,content,domain\n7,"a, quoted\ntext",law\n8,plain,\n', encoding="utf-8")
    c = load_corpus(str(p), text_column="content")
    assert [(s.id, s.domain, s.text) for s in c.samples] == [
        ("7", "law", "a, quoted\ntext"),
        ("8", "user", "plain"),
    ]
    t = tmp_path / "c.tsv"
    t.write_text("text\nhello there\n", encoding="utf-8")
    assert load_corpus(str(t)).samples[0].text == "hello there"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["alpha", "beta"], "domain": ["code", "math"]}), p)
    c = load_corpus(str(p))
    assert [(s.domain, s.text) for s in c.samples] == [("code", "alpha"), ("math", "beta")]


def _error(spec, **kw) -> str:
    with pytest.raises(CorpusError) as e:
        load_corpus(str(spec), **kw)
    msg = str(e.value)
    assert "\n" not in msg and e.value.fix
    return msg


def test_error_invalid_utf8(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"caf\xe9 au lait")
    msg = _error(p)
    assert "bad.txt" in msg and "UTF-8" in msg


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl", "empty.csv"])
def test_error_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_text("  \n")
    assert "empty" in _error(p) and name in _error(p)


def test_error_missing_column(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("title,body\na,b\n")
    msg = _error(p, text_column="text")
    assert "'text'" in msg and "title, body" in msg and "--text-column" in msg


def test_error_missing_column_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["x"]}), p)
    assert "no column 'text'" in _error(p)


def test_error_missing_field_jsonl(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"body": "x"}\n')
    assert "no column 'text'" in _error(p)


def test_error_not_jsonl(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('[\n  {"text": "a"},\n  {"text": "b"}\n]\n')
    msg = _error(p)
    assert "c.jsonl line 1" in msg and "JSONL" in msg
    q = tmp_path / "prose.jsonl"
    q.write_text("just some prose\n")
    assert "not a JSON object" in _error(q)


def test_error_empty_corpus(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": ""}\n{"text": "  "}\n')
    assert "no samples" in _error(p)
    d = tmp_path / "dir"
    d.mkdir()
    assert "no .txt files" in _error(d)


def test_error_unknown_path_and_suffix(tmp_path):
    assert "neither a built-in profile" in _error(tmp_path / "nope.jsonl")
    p = tmp_path / "c.docx"
    p.write_text("x")
    assert "unknown file type" in _error(p)


# -- special files, sizes, huge blocks, blank files (issue 15, items 12, 13) ------------------------


def test_fifo_is_refused_without_opening_it(tmp_path):
    import os

    fifo = tmp_path / "c.jsonl"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(CorpusError, match="c.jsonl is a FIFO, not a regular file"):
        load_corpus(str(fifo))


def test_device_is_refused(tmp_path):
    link = tmp_path / "zeros.txt"
    link.symlink_to("/dev/zero")
    with pytest.raises(CorpusError, match="zeros.txt is a character device, not a regular file"):
        load_corpus(str(link))


def test_symlink_loop(tmp_path):
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    with pytest.raises(CorpusError, match="dangling symlink or a symlink loop"):
        load_corpus(str(loop))


def test_fifo_inside_a_directory_corpus(tmp_path):
    import os

    (tmp_path / "a.txt").write_text("fine")
    os.mkfifo(tmp_path / "b.txt")
    with pytest.raises(CorpusError, match="b.txt is a FIFO"):
        load_corpus(str(tmp_path))


def test_file_over_the_size_limit(tmp_path, monkeypatch):
    from actscope.corpus import readers

    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.txt"
    big.write_text("word " * 300)
    with pytest.raises(CorpusError, match="big.txt is over"):
        load_corpus(str(big))


def test_gzip_bomb_is_bounded(tmp_path, monkeypatch):
    """4 MB of zeros compress to 4 KB; the limit applies to what decompression yields."""
    import gzip

    from actscope.corpus import readers

    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 1 << 20)
    bomb = tmp_path / "c.jsonl.gz"
    bomb.write_bytes(gzip.compress(b'{"text": "' + b"0" * (4 << 20) + b'"}\n'))
    assert bomb.stat().st_size < 20_000
    with pytest.raises(CorpusError, match="c.jsonl.gz is over"):
        load_corpus(str(bomb))


def test_one_huge_block_is_cut_into_every_character_once(tmp_path):
    from actscope.corpus.readers import TXT_MAX_CHARS

    text = "".join(chr(97 + i % 26) for i in range(3 * TXT_MAX_CHARS + 5)) + "\n\nshort tail"
    (tmp_path / "one.txt").write_text(text)
    parts = [s.text for s in load_corpus(str(tmp_path / "one.txt")).samples]
    assert [len(p) for p in parts] == [TXT_MAX_CHARS] * 3 + [5 + 2 + len("short tail")]
    assert "".join(parts[:3]) + parts[3] == text


def test_blank_file_in_a_directory_is_skipped(tmp_path, caplog):
    (tmp_path / "a.txt").write_text("some text")
    (tmp_path / "blank.txt").write_text("  \n")
    (tmp_path / "empty.txt").write_text("")
    with caplog.at_level("WARNING", logger="actscope"):
        corpus = load_corpus(str(tmp_path))
    assert [s.id for s in corpus.samples] == ["a"]
    assert "skipped 2 blank .txt files" in caplog.text
