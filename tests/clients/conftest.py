"""llama.cpp's own binaries as the consumers of actscope's imatrix exports.

The tools come from `make llama-tools` (scripts/build_llama_tools.sh) in the venv's bin;
ACTSCOPE_LLAMA_BIN names another directory. Without them these tests skip, except in
CI (CI=true), where a missing tool fails: the client tests can never silently not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = ("llama-imatrix", "llama-quantize", "llama-perplexity")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def find_tool(name: str) -> Path | None:
    dirs = [os.environ.get("ACTSCOPE_LLAMA_BIN"), str(Path(sys.executable).parent)]
    for d in filter(None, dirs):
        if (p := Path(d) / name).is_file() and os.access(p, os.X_OK):
            return p
    found = shutil.which(name)
    return Path(found) if found else None


@pytest.fixture(scope="session")
def llama():
    """name -> run(args...) for llama.cpp's tools; skips (fails in CI) when one is missing."""
    paths = {t: find_tool(t) for t in TOOLS}
    missing = [t for t, p in paths.items() if p is None]
    if missing:
        msg = f"llama.cpp tools not found: {', '.join(missing)}; run `make llama-tools`"
        if in_ci():
            pytest.fail(msg + " (CI must run the client tests)")
        pytest.skip(msg)

    def run(tool: str, *args, ok: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(paths[tool]), *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        if ok and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-3000:]}")
        return r

    return run


@pytest.fixture(scope="session")
def moe_tok():
    from tinylm import char_tokenizer

    return char_tokenizer()
