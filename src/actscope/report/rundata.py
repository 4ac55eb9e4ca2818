"""Report-level helpers over a run's tables; the reader itself is rundir.RunView.

Everything here comes from run.json and the Parquet tables; no model is loaded.
"""

from __future__ import annotations

import numpy as np

from ..rundir import RunView

__all__ = ["RunView", "massive_channels", "split_context"]


def split_context(context: str | None) -> tuple[str, str, str]:
    """'before[[tok]]after' -> (before, tok, after); the peak token marked by rundir.tables."""
    if not context:
        return "", "", ""
    i = context.find("[[")
    j = context.find("]]", i + 2)
    if i < 0 or j < 0:
        return context, "", ""
    return context[:i], context[i + 2 : j], context[j + 2 :]


def massive_channels(view: RunView, kind: str = "residual") -> list[dict]:
    """Channels holding massive activations (per-token-median criterion) at sites of `kind`,
    with the number of layers and elements, most frequent first."""
    per: dict[int, dict] = {}
    for r in view.hooked_sites():
        if r["kind"] != kind:
            continue
        ch = view.channels(r["site"])
        if ch is None:
            continue
        for c in np.flatnonzero(ch["massive"] > 0):
            e = per.setdefault(int(c), {"channel": int(c), "layers": 0, "elements": 0, "absmax": 0.0})
            e["layers"] += 1
            e["elements"] += int(ch["massive"][c])
            e["absmax"] = max(e["absmax"], float(ch["absmax"][c]))
    return sorted(per.values(), key=lambda e: (-e["elements"], e["channel"]))
