"""run_quant(): split -> calibrate -> evaluate -> end to end -> correlate -> recommend -> write.

    out, section = run_quant(QuantConfig(target="runs/gemma-3-270m-quick"))

The target is a run directory (its model, corpus and BOS policy are reused and
the results are added to it) or a model source (results go to --out, created
with a minimal manifest when it does not exist yet).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import engine
from ..corpus import TokenizeConfig, load_corpus, make_batches, tokenize_corpus
from ..errors import RunDirError, UserError
from ..rundir import MANIFEST, prepare_run_dir, quant_only_manifest, read_manifest
from ..stats import histogram as H
from .config import QuantConfig
from .covariance import correlations
from .e2e import evaluate_e2e
from .passes import calibrate, evaluate
from .quantizer import site_quantizer
from .recommend import Candidate, candidates, recommend
from .results import e2e_maps, metric_rows, scheme_summary, write_quant
from .scheme import Scheme, parse_scheme
from .splits import split_corpus, subset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    run: Path | None  # existing run directory, or None for a model source
    model: str
    corpus: str
    bos: str
    dtype: str | None
    manifest: dict | None


def resolve_target(cfg: QuantConfig) -> Target:
    path = Path(cfg.target)
    if (path / MANIFEST).exists():
        m = read_manifest(path)
        settings = m.get("settings", {})
        return Target(
            path,
            m["model"]["source"],
            cfg.corpus or m["corpus"]["name"],
            settings.get("bos", cfg.bos),
            cfg.dtype or settings.get("dtype"),
            m,
        )
    return Target(None, cfg.target, cfg.corpus or "quick", cfg.bos, cfg.dtype, None)


def open_output(cfg: QuantConfig, target: Target, loaded, corpus) -> tuple[Path, dict]:
    """The run directory to write and its manifest (a minimal one for a new directory)."""
    if target.run is not None:
        return target.run, dict(target.manifest or {})
    from ..runner import default_out

    out = Path(cfg.out or default_out(target))
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        if manifest.get("model", {}).get("source") != target.model:
            raise RunDirError(
                f"{out} holds a run of {manifest.get('model', {}).get('source')!r}, not {target.model!r}",
                "choose another --out",
            )
        return out, manifest
    out = prepare_run_dir(out, overwrite=False, resume=False)
    manifest = quant_only_manifest(loaded, corpus, target.bos)
    return out, manifest


def run_quant(cfg: QuantConfig, *, loaded=None, corpus=None) -> tuple[Path, dict]:
    t0 = time.time()
    target = resolve_target(cfg)
    if loaded is None:
        loaded = engine.load(target.model, cfg, dtype=target.dtype)
    corpus = corpus if corpus is not None else load_corpus(target.corpus)
    out, manifest = open_output(cfg, target, loaded, corpus)
    split = split_corpus(corpus, cfg.calib, cfg.eval, cfg.seed)
    data = _batches(cfg, target, loaded.tokenizer, corpus, split)
    probe, linear_modules = _resolve_sites(cfg, loaded.model, data["calib_seqs"], data["pad_id"])
    schemes = [parse_scheme(n) for n in cfg.scheme_list()]
    quantizers, rows, t_cal = _site_errors(cfg, loaded.model, probe, linear_modules, data, schemes)
    t_eval = time.time()
    e2e, rec = _end_to_end(cfg, loaded.model, data, probe, quantizers, schemes, rows, bool(linear_modules))
    section = {
        "settings": {**{k: v for k, v in asdict(cfg).items() if k != "budget"}, "budget": asdict(cfg.budget)},
        "corpus": {"name": corpus.name, "hash": corpus.hash},
        "split": {
            "calibration": [corpus.samples[i].id for i in split.calibration],
            "evaluation": [corpus.samples[i].id for i in split.evaluation],
        },
        "tokens": {"calibration": data["calib_tokens"], "evaluation": data["eval_tokens"]},
        "histogram_rel_error": H.REL_ERROR,
        "aliases": probe.aliases,
        "schemes": scheme_summary(rows, schemes, e2e, cfg.budget.min_sqnr_db),
        "e2e": e2e,
        "correlation": correlations(rows),
        "recommendation": rec,
        "timings": {"calibrate_s": t_cal - t0, "evaluate_s": t_eval - t_cal, "e2e_s": time.time() - t_eval},
    }
    kv_rows = []
    if cfg.kv:
        section["kv_cache"], kv_rows = _kv_cache(cfg, target, loaded.model, data)
    write_quant(out, manifest, section, rows, kv_rows)
    return out, section


def _kv_cache(cfg: QuantConfig, target: Target, model, data) -> tuple[dict, list[dict]]:
    """KV-cache schemes with static scales from the target run's key and value sites:
    (run.json section, quant_kv rows)."""
    from ..rundir import RunView
    from .kvcache import evaluate_kv

    if target.run is None:
        raise UserError(
            "--kv needs a measured run (its key and value sites give the static scales)",
            "measure first (`actscope measure MODEL`), then `actscope quant RUN --kv ...`",
        )
    log.info("KV cache: %s", ", ".join(cfg.kv))
    e2e = data["e2e"] if cfg.e2e else []
    view = RunView.measured(target.run)
    return evaluate_kv(model, view, data["eval"], e2e, cfg.kv, cfg.budget.max_ppl_increase_pct)


def _site_errors(cfg, model, probe, linear_modules, data, schemes):
    """Calibrate on one split, then stream the other through every scheme: (quantizers, rows, t_cal)."""
    log.info(
        "calibrating %d sites on %d samples (%d tokens)", len(probe.channels), cfg.calib, data["calib_tokens"]
    )
    cal = calibrate(model, probe.bindings, probe.channels, data["calib"], cfg.calib, linear_modules)
    quantizers = {name: [site_quantizer(s, cal[name]) for s in schemes] for name in probe.channels}
    t_cal = time.time()
    log.info(
        "evaluating %d schemes on %d held-out samples (%d tokens)",
        len(schemes),
        cfg.eval,
        data["eval_tokens"],
    )
    sink = evaluate(model, probe.bindings, probe.channels, quantizers, data["eval"], cfg.eval)
    return quantizers, metric_rows(sink, schemes, quantizers, cal, probe), t_cal


def _end_to_end(cfg, model, data, probe, quantizers, schemes, rows, has_linear: bool):
    """(e2e results, recommendation) from one loop over the held-out batches.

    The requested schemes and the recommendation's candidates run together, so
    the float model's log-probabilities are computed once per batch for all.
    """
    if not has_linear:
        return {}, None
    cands = _candidates(cfg, rows, schemes) if cfg.recommend else []
    by_name = {s.name: j for j, s in enumerate(schemes)}
    configs = {parse_scheme(s).name: () for s in cfg.e2e}
    configs.update({_key(c): c.keep for c in cands if _key(c) not in configs})
    results = {}
    if configs:
        log.info("end to end: %s", ", ".join(configs))
        maps = {
            k: e2e_maps(probe, quantizers, by_name[k.split(" ")[0]], keep=keep) for k, keep in configs.items()
        }
        results = evaluate_e2e(model, data["e2e"], maps)
    e2e = {k: v for k, v in results.items() if " " not in k}  # float and whole-model schemes
    rec = recommend(cands, lambda c: results[_key(c)], cfg.budget) if cfg.recommend else None
    others = {k: v for k, v in results.items() if k != "float"}
    if rec is not None and rec["scheme"] is None and others:  # what came closest, for the user to weigh
        best = min(others, key=lambda k: others[k]["ppl_change_pct"])
        rec["closest"] = {
            "scheme": best,
            "ppl_change_pct": others[best]["ppl_change_pct"],
            "kl": others[best]["kl"],
        }
    return e2e, rec


def _batches(cfg: QuantConfig, target: Target, tok, corpus, split) -> dict:
    tcfg = TokenizeConfig(bos=target.bos, max_length=cfg.max_length, overflow="truncate")
    pad_id = engine.pad_id(tok)
    calib_seqs = tokenize_corpus(subset(corpus, split.calibration), tok, tcfg)
    eval_seqs = tokenize_corpus(subset(corpus, split.evaluation), tok, tcfg)
    return {
        "pad_id": pad_id,
        "calib_seqs": calib_seqs,
        "calib": make_batches(calib_seqs, token_budget=cfg.token_budget, pad_id=pad_id),
        "eval": make_batches(eval_seqs, token_budget=cfg.token_budget, pad_id=pad_id),
        "e2e": make_batches(eval_seqs, token_budget=cfg.e2e_token_budget, pad_id=pad_id),
        "calib_tokens": sum(len(s.ids) for s in calib_seqs),
        "eval_tokens": sum(len(s.ids) for s in eval_seqs),
    }


def _resolve_sites(cfg: QuantConfig, model, calib_seqs, pad_id):
    """Probe the selected sites; map each hooked linear-input site to the modules that read it."""
    _, probe = engine.resolve_sites(model, cfg.sites, calib_seqs, pad_id)
    linear: dict[str, list] = {}
    for name, b in probe.usable.items():
        if b.site.kind == "linear_input":
            linear.setdefault(probe.aliases.get(name, name), []).append(model.get_submodule(b.module_path))
    return probe, linear


def _key(c: Candidate) -> str:
    """End-to-end result name of a candidate: its scheme, plus how many sites stay in 16 bits."""
    return c.scheme.name if not c.keep else f"{c.scheme.name} keep{len(c.keep)}"


def _candidates(cfg: QuantConfig, rows: list[dict], schemes: list[Scheme]) -> list[Candidate]:
    """The cheapest max_checks candidates by SQNR on the linear inputs (recommend.candidates)."""
    lin = [r for r in rows if r["kind"] == "linear_input"]
    sqnr: dict[str, dict[str, float]] = {}
    for r in lin:
        sqnr.setdefault(r["scheme"], {})[r["site"]] = r["sqnr_db"]
    channels = {r["site"]: r["channels"] for r in lin}
    return candidates(sqnr, channels, schemes, cfg.budget)[: cfg.budget.max_checks]
