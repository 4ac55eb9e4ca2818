"""`actscope stress`: search for the inputs that drive activations highest."""

from __future__ import annotations

import json

from .stress.run import DEFAULT_KINDS, StressConfig


def register(sub) -> None:
    d = StressConfig()
    s = sub.add_parser("stress", help="search for the inputs that drive activations highest")
    s.add_argument("model", nargs="?", default=d.model, help="built-in name, model directory or .gguf file")
    s.add_argument("--out", "-o", required=True, help="output directory (worst.jsonl, run/, state)")
    s.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="site kinds to target, comma-separated")
    s.add_argument("--sites", help="site globs instead of --kinds, e.g. 'layers.1*.resid.out'")
    s.add_argument(
        "--from", dest="from_run", help="a measured corpus run to seed from (default: quick corpus)"
    )
    s.add_argument(
        "--scales",
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="a quantized checkpoint (actscope deploy output, compressed-tensors, ModelOpt, vLLM fp8) whose "
        "static input scales the worst inputs are judged against; repeatable (the --from run's deployments "
        "and audited checkpoints are judged too)",
    )
    s.add_argument("--length", type=int, default=d.length, help=f"tokens searched (default {d.length})")
    s.add_argument("--budget", type=int, default=d.budget, help=f"forward passes in all (default {d.budget})")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--batch", type=int, default=d.batch, help="candidates scored per step")
    s.add_argument(
        "--first-position",
        choices=("auto", "include", "exclude"),
        default=d.first_position,
        help="position 0 in the objective (auto: left out when it is the BOS, whose peak is input-independent)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing stress output")
    s.add_argument("--resume", action="store_true", help="continue an interrupted search in --out")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    from .cli_measure import add_model_args

    add_model_args(s)
    s.set_defaults(handler=cmd_stress)


def cmd_stress(a) -> int:
    from .engine import model_kwargs
    from .stress import run_stress
    from .stress.show import print_stress

    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    cfg = StressConfig(
        model=a.model, out=a.out, kinds=kinds, sites=a.sites, from_run=a.from_run, scales=tuple(a.scales), length=a.length,
        budget=a.budget, seed=a.seed, batch=a.batch, first_position=a.first_position,
        overwrite=a.overwrite, resume=a.resume, progress=not a.no_progress, **model_kwargs(a),
    )  # fmt: skip
    result = run_stress(cfg)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print_stress(result)
    return 0
