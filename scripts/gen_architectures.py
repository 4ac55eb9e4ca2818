"""Write docs/architectures.md from the adapter registry.

    python scripts/gen_architectures.py           # regenerate
    python scripts/gen_architectures.py --check   # exit 1 if the file is stale

Builds every family's tiny model (actscope.adapters.tiny), so the matrix says
what discovery finds in real transformers classes, not what the tables claim.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architectures.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    p.add_argument("--out", type=Path, default=DOC)
    a = p.parse_args(argv)

    import transformers
    from transformers.utils import logging as hf_logging

    from actscope.adapters.matrix import family_row, render
    from actscope.adapters.tiny import TINY, tiny_model

    hf_logging.set_verbosity_error()
    rows = [family_row(t, tiny_model(t)) for t in sorted(TINY)]
    text = render(rows, transformers.__version__)
    if a.check:
        stale = not a.out.exists() or a.out.read_text() != text
        print(f"{a.out}: {'stale, run scripts/gen_architectures.py' if stale else 'up to date'}")
        return int(stale)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out} ({len(rows)} families)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
