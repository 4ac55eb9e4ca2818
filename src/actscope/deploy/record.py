"""What a deployment leaves behind: actscope.json in the checkpoint, and an entry in the run's run.json.

actscope.json says where every number came from: the run and its corpus, the
scheme and clip rule, and per module the stored input scale, the threshold it
covers (scale x qmax >= threshold) and the measured peak of the module's own input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__
from ..rundir import RunLock, atomic_write_text, read_manifest, write_manifest
from .plan import Plan

RECORD = "actscope.json"


def module_rows(plan: Plan) -> list[dict]:
    fmt = plan.scheme.fmt
    rows = []
    for m, p in plan.modules.items():
        scale = float(p.scale.double().reshape(-1)[0]) if p.scale is not None else None
        rows.append(
            {
                "module": m,
                "site": p.site,
                "group": p.group,
                "measured_peak": p.peak,
                "threshold": p.threshold,
                "input_scale": scale,
                "representable_max": scale * fmt.max_value if scale is not None else None,
                "fallback": p.fallback,
            }
        )
    return rows


def deployment_record(plan: Plan, view, cfg, fmt_name: str, dtype: str, seconds: float) -> dict:
    m = view.manifest
    return {
        "actscope_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": str(Path(view.path).resolve()),
        "model": {k: m["model"].get(k) for k in ("source", "sha256", "model_type", "architecture")},
        "corpus": {k: m["corpus"].get(k) for k in ("name", "hash", "samples")},
        "tokens_measured": (m.get("tokens") or {}).get("measured"),
        "scheme": plan.scheme.name,
        "quant_scheme": plan.scheme.quant_scheme,
        "format": fmt_name,
        "number_format": plan.scheme.fmt.name,
        "activations": "static per-tensor" if plan.scheme.static else "dynamic per-token",
        "clip": plan.scheme.clip if plan.scheme.static else None,
        "scale_rule": (
            f"input_scale = {plan.scheme.clip} threshold / {plan.scheme.fmt.max_value:g} in float32, "
            f"rounded up in {dtype}; fused groups share their largest threshold"
            if plan.scheme.static
            else "per-token absmax at run time"
        ),
        "dtype": dtype,
        "weights": "per output channel, symmetric, max|W| / qmax rounded up",
        "ignore": plan.ignore,
        "fallbacks": plan.fallbacks,
        "modules": module_rows(plan),
        "seconds": seconds,
    }


def write_record(out: Path, record: dict) -> None:
    atomic_write_text(Path(out) / RECORD, json.dumps(record, indent=2) + "\n")


def read_record(out: Path) -> dict | None:
    path = Path(out) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def add_to_run(run: Path, entry: dict, section: str = "deployments") -> None:
    """Append `entry` to run.json[section] under the run lock (read, append, atomic write)."""
    with RunLock(run):
        manifest = read_manifest(run)
        manifest.setdefault(section, []).append(entry)
        write_manifest(run, manifest)
