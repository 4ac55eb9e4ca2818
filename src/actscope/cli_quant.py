"""`actscope quant`: what the measured range does to INT8, FP8, INT4 and FP4 blocks."""

from __future__ import annotations

import json

from .errors import UserError

_CONFIG_FLAGS = (
    "corpus",
    "out",
    "calib",
    "eval",
    "seed",
    "sites",
    "max_length",
    "bos",
    "token_budget",
    "e2e_token_budget",
)


def register(sub) -> None:
    from .quant.config import QuantConfig
    from .quant.recommend import Budget

    d, b = QuantConfig(), Budget()
    q = sub.add_parser("quant", help="calibrate, fake-quantize and judge INT8 / FP8 / INT4 / FP4 schemes")
    q.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_OR_MODEL",
        help="run directory (results are added to it) or model source",
    )
    q.add_argument("--corpus", help="corpus (default: the run's, else quick)")
    q.add_argument("--out", "-o", help="run directory for a model target (default runs/MODEL-CORPUS)")
    q.add_argument("--calib", type=int, default=d.calib, help=f"calibration samples (default {d.calib})")
    q.add_argument("--eval", type=int, default=d.eval, help=f"held-out evaluation samples (default {d.eval})")
    q.add_argument("--seed", type=int, default=d.seed, help="seed of the split")
    q.add_argument(
        "--schemes", help="comma-separated FORMAT[:GRANULARITY[:METHOD]][+sqALPHA] (default: a grid of 16)"
    )
    q.add_argument("--e2e", help=f"schemes also run end to end (default {','.join(d.e2e)}); 'none' skips")
    q.add_argument("--sites", default=d.sites, help=f"site kinds or globs (default {d.sites})")
    q.add_argument(
        "--max-length", type=int, default=d.max_length, help=f"tokens per sample (default {d.max_length})"
    )
    q.add_argument("--bos", default=d.bos, help="auto, always or never (run targets: the run's policy)")
    q.add_argument("--token-budget", type=int, default=d.token_budget, help="padded tokens per batch")
    q.add_argument(
        "--e2e-token-budget", type=int, default=d.e2e_token_budget, help="padded tokens per end-to-end batch"
    )
    q.add_argument("--no-recommend", action="store_true", help="skip the recommendation")
    q.add_argument(
        "--kv",
        help="KV-cache schemes FORMAT[:tensor|head], comma-separated (fp8-e4m3, fp8-e5m2, int8); "
        "static scales from the run's key/value sites; e.g. fp8-e4m3:tensor,fp8-e4m3:head",
    )
    q.add_argument(
        "--with",
        dest="with_runs",
        nargs="+",
        default=[],
        metavar="RUN",
        help="runs with quant results to pool in the cross-model correlation",
    )
    q.add_argument(
        "--compare-out", default="runs/quant-compare", help="where the cross-model correlation is written"
    )
    q.add_argument("--json", action="store_true", help="print the quant section as JSON")
    from .cli_measure import add_model_args, add_text_column_arg

    add_text_column_arg(q)
    add_model_args(q)
    _add_budget_args(q, b)
    q.set_defaults(handler=cmd_quant)

    c = sub.add_parser(
        "quant-compare", help="correlate max|a| with SQNR over the quant results of several runs"
    )
    c.add_argument("runs", nargs="+", metavar="RUN", help="run directories that hold quant results")
    c.add_argument(
        "--out", "-o", default="runs/quant-compare", help="where the pooled correlation is written"
    )
    c.add_argument("--json", action="store_true", help="print it as JSON")
    c.set_defaults(handler=lambda a: _compare(a.runs, a.out, a.json) or 0)


def _add_budget_args(q, b) -> None:
    """The user's budget for the recommendation (recommend.Budget)."""
    q.add_argument(
        "--min-sqnr",
        type=float,
        default=b.min_sqnr_db,
        help=f"budget: SQNR floor in dB (default {b.min_sqnr_db:g})",
    )
    q.add_argument(
        "--max-ppl-increase",
        type=float,
        default=b.max_ppl_increase_pct,
        help=f"budget: perplexity increase in %% (default {b.max_ppl_increase_pct:g})",
    )
    q.add_argument(
        "--max-keep",
        type=float,
        default=b.max_keep_fraction,
        help=f"budget: fraction of linear inputs kept in 16 bits at most (default {b.max_keep_fraction:g})",
    )
    q.add_argument(
        "--max-checks",
        type=int,
        default=b.max_checks,
        help="end-to-end runs spent verifying the recommendation",
    )


def _split(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_config(a, target: str):
    from .engine import model_kwargs
    from .quant.config import QuantConfig
    from .quant.recommend import Budget

    kw = {f: getattr(a, f) for f in _CONFIG_FLAGS} | model_kwargs(a)
    if a.schemes is not None:
        kw["schemes"] = _split(a.schemes)
    if a.e2e is not None:
        kw["e2e"] = () if a.e2e.strip().lower() == "none" else _split(a.e2e)
    if a.kv:
        kw["kv"] = _split(a.kv)
    budget = Budget(a.min_sqnr, a.max_ppl_increase, a.max_keep, a.max_checks)
    return QuantConfig(target=target, budget=budget, recommend=not a.no_recommend, **kw)


def cmd_quant(a) -> int:
    from .cli_measure import load_corpus_arg
    from .quant.pipeline import resolve_target, run_quant
    from .quant.report import print_quant
    from .rundir import read_manifest

    if a.out and len(a.targets) > 1:
        raise UserError(
            "--out names one run directory but several targets were given",
            "drop --out or quantize one target at a time",
        )
    configs = [build_config(a, t) for t in a.targets]  # validate every flag before the first model loads
    outs = []
    for cfg in configs:
        out, section = run_quant(cfg, corpus=load_corpus_arg(resolve_target(cfg).corpus, a.text_column))
        outs.append(str(out))
        if a.json:
            print(json.dumps(read_manifest(out)["quant"], indent=2))
        else:
            print_quant(out, section)
    runs = outs + list(a.with_runs)
    if len(runs) > 1:
        _compare(runs, a.compare_out, a.json)
    return 0


def _compare(runs: list[str], out: str, as_json: bool) -> None:
    from .quant.compare import across_runs, per_model_peaks, pooled_rows, write_compare
    from .quant.report import print_correlations, print_peaks

    rows = pooled_rows(runs)
    corr, peaks = across_runs(rows), per_model_peaks(rows)
    path = write_compare(out, runs, corr, peaks)
    if as_json:
        print(json.dumps({"runs": runs, "correlation": corr, "peaks": peaks}, indent=2, default=str))
        return
    print_peaks(peaks)
    print_correlations(
        corr, None, title=f"correlation with SQNR, sites of {len(runs)} runs pooled (saved in {path})"
    )
