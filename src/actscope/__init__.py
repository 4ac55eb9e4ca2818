"""actscope: measure how large the activations of an open causal LM get, and where.

    import actscope
    run = actscope.measure(model, tokenizer, corpus=["some text", ...])   # a model in memory
    run.summary["M"], run.table("sites")
    with actscope.trace(model, tokenizer=tokenizer) as t:                  # any forward, generate too
        model.generate(**inputs, max_new_tokens=16)
    t.run().summary
    actscope.open("runs/quick-gemma-3-270m")                               # a run directory
    actscope.Monitor(model, every=50, probe=texts, tokenizer=tok)          # inside a training loop

Bad input raises actscope.ActscopeError (the CLI's one-line messages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ActscopeError

__version__ = "0.1.0"

# Loaded on first use, so `import actscope` (and the CLI) does not import torch for nothing.
_LAZY = {
    "measure": "actscope.api",
    "trace": "actscope.api",
    "open": "actscope.api",
    "Run": "actscope.api",
    "Trace": "actscope.api",
    "Monitor": "actscope.integrations",
}

if TYPE_CHECKING:
    from .api import Run, Trace, measure, open, trace  # noqa: A004
    from .integrations import Monitor

__all__ = ["ActscopeError", "Monitor", "Run", "Trace", "__version__", "measure", "open", "trace"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'actscope' has no attribute {name!r}")
