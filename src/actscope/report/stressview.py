"""The report's "worst case" section: the per-kind table `actscope stress` wrote into its
re-measured run (OUT/run/stress.json), when the reported run is one."""

from __future__ import annotations

import json


def stress_context(view) -> dict | None:
    path = view.path / "stress.json"
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
        rows = [
            {
                **r,
                "saturated": len(r["saturated_sites"]),
                "worst_saturation": max(r["saturation"].values(), default=None),
            }
            for r in res["table"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged stress result leaves the rest of the report as it is
    return {"rows": rows, "first": res.get("first_position", 0), "from_run": res.get("from_run"),
            "budget": res.get("budget"), "entries": res.get("entries", []),
            "scales": res.get("scales", [])}  # fmt: skip
