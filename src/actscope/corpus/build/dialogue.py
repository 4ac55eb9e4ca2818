"""Dialogue: ChatterBot's conversation corpus (PyPI chatterbot-corpus), six exchanges to a sample."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from .doc import Doc

DATA = "chatterbot_corpus/data"
PER_SAMPLE = 6


def _conversations(path: Path) -> list[list[str]]:
    rec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    convs = rec.get("conversations") or []
    return [[str(t) for t in c] for c in convs if isinstance(c, list) and len(c) >= 2]


def _read(root: Path, languages: set[str] | None, exclude: set[str]) -> Iterator[Doc]:
    for lang_dir in sorted(p for p in (root / DATA).iterdir() if p.is_dir()):
        if lang_dir.name in exclude or (languages is not None and lang_dir.name not in languages):
            continue
        for path in sorted(lang_dir.glob("*.yml")):
            convs = _conversations(path)
            for i in range(0, len(convs), PER_SAMPLE):
                turns = []
                for conv in convs[i : i + PER_SAMPLE]:
                    turns += [f"{'User' if k % 2 == 0 else 'Bot'}: {t}" for k, t in enumerate(conv)]
                yield Doc(f"{lang_dir.name}_{path.stem}_{i // PER_SAMPLE:03d}", "\n".join(turns))


def read_chatterbot_en(roots: list[Path]) -> Iterator[Doc]:
    return _read(roots[0], {"english"}, set())


def read_chatterbot_multilingual(roots: list[Path]) -> Iterator[Doc]:
    return _read(roots[0], None, {"english", "hinglish"})
