"""The Python API: measure a model in memory, trace forwards, open runs.

run = actscope.measure(model, tok, corpus=texts)        # measure.py
with actscope.trace(model, tokenizer=tok) as t:          # trace.py
    model.generate(**inputs, max_new_tokens=20)
run = t.run()
run = actscope.open("runs/quick-gemma-3-270m")           # run.py
"""

from __future__ import annotations

from pathlib import Path

from ..rundir import RunView
from .measure import measure
from .run import Run
from .trace import Trace, trace


def open(path: str | Path) -> Run:  # noqa: A001  (actscope.open, like io.open)
    """The run directory at `path` (`actscope measure --out`, merge, or Run.save) as a Run."""
    return Run(RunView(path))


__all__ = ["Run", "Trace", "measure", "open", "trace"]
