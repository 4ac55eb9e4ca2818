"""`actscope deploy` (a quantized checkpoint from a run) and `actscope audit` (a checkpoint's scales
against measured ranges). Thin: flags -> DeployConfig / audit(); the work is in actscope.deploy."""

from __future__ import annotations

import json

from .errors import UserError


def register(sub) -> None:
    from .deploy.run import FORMATS, DeployConfig
    from .deploy.schemes import CLIPS, NAMES

    d = DeployConfig(run="", out="")
    p = sub.add_parser(
        "deploy", help="write a quantized Hugging Face checkpoint from a run's measured ranges"
    )
    p.add_argument("run", metavar="RUN", help="run directory (measured with linear_input sites)")
    p.add_argument("--out", "-o", required=True, help="checkpoint directory to write")
    p.add_argument("--scheme", default=d.scheme, help=f"{', '.join(NAMES)} (default {d.scheme})")
    p.add_argument("--format", default=d.format, help=f"{' or '.join(FORMATS)} (default {d.format})")
    p.add_argument("--clip", default=d.clip, help=f"static scale rule: {', '.join(CLIPS)} (default {d.clip})")
    p.add_argument("--dtype", help="dtype of unquantized tensors and scales (default: the source's)")
    p.add_argument(
        "--kv-cache",
        metavar="fp8-e4m3[:tensor|:head]",
        help="also write static KV-cache scales (k_scale / v_scale, kv_cache_scheme) from the run's key/value sites",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--verify", action="store_true", help="reload, generate, KL / perplexity vs float")
    p.add_argument("--cache-dir", help="where converted GGUF models are cached (default ~/.cache/actscope)")
    p.add_argument("--json", action="store_true", help="print actscope.json")
    p.set_defaults(handler=cmd_deploy)

    a = sub.add_parser("audit", help="will a quantized checkpoint's static scales clip on measured data?")
    a.add_argument("checkpoint", metavar="CHECKPOINT", help="compressed-tensors, ModelOpt or vLLM fp8 dir")
    a.add_argument("run", nargs="?", metavar="RUN", help="run directory with linear-input sites")
    a.add_argument("--corpus", help="measure the checkpoint's own (dequantized) model on this corpus first")
    a.add_argument("--out", "-o", help="run directory for --corpus (default runs/CHECKPOINT-CORPUS)")
    a.add_argument("--max-length", type=int, default=512, help="tokens per sample for --corpus")
    a.add_argument("--limit", type=int, help="measure only the first N samples for --corpus")
    a.add_argument("--top", type=int, default=10, help="modules shown, worst first (default 10)")
    a.add_argument("--json", action="store_true", help="print every row as JSON")
    a.set_defaults(handler=cmd_audit)


def cmd_deploy(a) -> int:
    from .deploy.run import DeployConfig, deploy

    cfg = DeployConfig(
        run=a.run,
        out=a.out,
        scheme=a.scheme,
        format=a.format,
        clip=a.clip,
        dtype=a.dtype,
        overwrite=a.overwrite,
        verify=a.verify,
        cache_dir=a.cache_dir,
        kv_cache=a.kv_cache,
    )
    out, rec = deploy(cfg)
    if a.json:
        print(json.dumps(rec, indent=2))
        return 0
    print(f"wrote {out}: {rec['scheme']} ({rec['format']}), {len(rec['modules'])} modules quantized")
    for m, why in rec["ignore"].items():
        print(f"  unquantized {m}: {why}")
    for m, why in rec["fallbacks"].items():
        print(f"  fallback {m}: {why}")
    if "verify" in rec:
        print(verify_line(rec["verify"]))
    return 0


def verify_line(v: dict) -> str:
    r, s, q = v["reload"], v["simulated"], v.get("quant")
    pred = f"; actscope quant predicted {q['ppl_change_pct']:+.2f}% (activations only)" if q else ""
    return (
        f"verify: reload ppl {r['ppl_change_pct']:+.2f}%, KL {r['kl']:.4f} on {v['positions']} positions "
        f"(simulated {s['ppl_change_pct']:+.2f}%, KL {s['kl']:.4f}){pred}; "
        f"generates {v['generate']['reload']!r}"
    )


def cmd_audit(a) -> int:
    from pathlib import Path

    from .deploy.audit import audit, write_audit
    from .rundir import RunView

    if (a.run is None) == (a.corpus is None):
        raise UserError(
            "audit needs a RUN or --corpus C (one of them)", "give a run directory or --corpus quick"
        )
    run = Path(a.run) if a.run else _measure_checkpoint(a)
    name, rows = audit(a.checkpoint, RunView(run))
    section = write_audit(run, a.checkpoint, name, rows)
    if a.json:
        print(json.dumps({"summary": section, "modules": rows}, indent=2, default=str))
        return 0
    sat = section["saturating"]
    print(f"{a.checkpoint} ({name}): {len(rows)} static input scales against {run}")
    print(
        f"  {len(sat)} saturate" + (f": {', '.join(sat[:8])}" if sat else " (no clipping on the run's data)")
    )
    for r in rows[: a.top]:
        clip = "-" if r["clip_fraction"] is None else f"{r['clip_fraction']:.2e}"
        sq = "-" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f} dB"
        peak = "-" if r["measured_peak"] is None else f"{r['measured_peak']:.4g}"
        print(
            f"  {r['module']:<48} {r['representable']:>10.4g} vs {peak:>10}  clip {clip}  {sq}  {r['verdict']}"
        )
    return 0


def _measure_checkpoint(a):
    from pathlib import Path

    from .config import MeasureConfig
    from .runner import measure

    out = a.out or f"runs/{Path(a.checkpoint).name}-{a.corpus}"
    cfg = MeasureConfig(
        model=a.checkpoint,
        corpus=a.corpus,
        out=out,
        sites="linear_input",
        max_length=a.max_length,
        limit=a.limit,
        token_budget=max(8192, a.max_length),
        progress=False,
        overwrite=True,
    )
    return measure(cfg)
