"""Which deployed static input scales the worst found inputs would saturate.

    paths = scale_checkpoints(explicit, corpus_view)   # before the search: bad input fails fast
    rows = saturation(paths, worst_view)               # after the re-measure

The checkpoints are those given with --scales plus the ones the corpus run knows of
(`actscope deploy` outputs in run.json "deployments", `actscope audit` checkpoints in
"audits") that are still on disk. Each is audited (deploy/audit.py) against the run that
re-measured worst.jsonl, so a module saturates when the worst inputs' measured max|a| at
its input exceeds scale x qmax: the same rule `actscope audit` applies to a corpus.
"""

from __future__ import annotations

from pathlib import Path

from ..deploy.audit import audit, checkpoint_format, input_scales
from ..errors import UserError


def scale_checkpoints(
    explicit: tuple[str, ...], corpus_view, kinds: tuple[str, ...], sites: str | None
) -> list[Path]:
    """The checkpoints to judge, each checked to hold static input scales."""
    known = [d.get("out") for d in corpus_view.deployments] + [
        a.get("checkpoint") for a in corpus_view.audits
    ]
    found = [Path(p) for p in known if p and Path(p).is_dir()]
    paths: list[Path] = []
    for p in [Path(e) for e in explicit] + found:
        if p.resolve() not in {q.resolve() for q in paths}:
            paths.append(p)
    if paths and sites is None and "linear_input" not in kinds:
        raise UserError(
            f"static scales ({paths[0]}) are judged on linear inputs, but --kinds leaves them out",
            "add linear_input to --kinds",
        )
    for p in explicit:
        if not Path(p).is_dir():
            raise UserError(f"--scales {p} is not a directory", "give a quantized checkpoint directory")
        checkpoint_format(Path(p))  # a one-line error when it holds no static scales
        input_scales(Path(p))
    return paths


def _static(path: Path) -> bool:
    try:
        checkpoint_format(path)
        input_scales(path)
    except UserError:
        return False
    return True


def saturation(paths: list[Path], worst_view) -> list[dict]:
    """Per checkpoint: the modules whose static scale the worst inputs exceed, worst first."""
    out = []
    for path in paths:
        name, rows = audit(path, worst_view)
        measured = [r for r in rows if r["headroom"] is not None]
        out.append({
            "checkpoint": str(path.resolve()),
            "format": name,
            "modules": len(rows),
            "measured": len(measured),
            "min_headroom": measured[0]["headroom"] if measured else None,
            "saturating": [
                {"module": r["module"], "site": r["site"], "representable": r["representable"],
                 "worst_peak": r["measured_peak"], "over": r["measured_peak"] / r["representable"]}
                for r in measured if r["verdict"] == "saturates"
            ],
        })  # fmt: skip
    return out
