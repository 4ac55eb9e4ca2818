"""run_stress(): corpus run -> seeds -> two searches per kind -> worst.jsonl -> re-measure -> table.

    OUT/stress-state.json  the searches' state after every step (--resume continues from it)
    OUT/worst.jsonl        the best input of each (kind, search): a corpus `actscope measure` reads
    OUT/corpus/            the quick-corpus run, when no --from RUN is given
    OUT/run/               runner.measure of worst.jsonl (the normal path); run/stress.json holds
                           the per-kind table computed from it (report shows it as "worst case")

The budget counts forward passes (a scored candidate is one; a gradient step three, see
search_grad.GRAD_COST): the seeds are scored once, the rest is shared equally by the searches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import engine
from ..config import MeasureConfig, ModelOptions
from ..errors import Interrupted, RunDirError, UserError
from ..rundir import RunLock, RunView, atomic_write_text
from ..sites import KINDS
from .common import Found, Scorer
from .objective import Objective, frozen
from .progress import StepProgress
from .scales import saturation, scale_checkpoints
from .search_corpus import CorpusSearch
from .search_grad import GRAD_COST, GradSearch
from .seeds import seed_bodies
from .table import entry_value, kind_table
from .tokens import allowed_ids, bos_prefix, decode, retokenize

# What a quantized or fp16 deployment has to hold: linear inputs (what W8A8 / FP8 kernels
# quantize), attention and MLP outputs, and the residual stream (where fp16 overflows).
DEFAULT_KINDS = ("linear_input", "attention", "mlp", "residual")
METHODS = ("corpus", "grad")
STATE_FILE = "stress-state.json"


@dataclass(frozen=True)
class StressConfig(ModelOptions):
    model: str = "gemma-3-270m"
    out: str = "runs/stress"
    kinds: tuple[str, ...] = DEFAULT_KINDS
    sites: str | None = None  # globs instead of kinds (grouped by kind all the same)
    from_run: str | None = None  # a measured corpus run; default: measure the quick corpus
    scales: tuple[str, ...] = ()  # quantized checkpoints whose static input scales are judged
    length: int = 32  # tokens searched, after the family's BOS
    budget: int = 4096  # forward passes in all
    seed: int = 0
    first_position: str = "auto"  # auto: left out when it is the BOS; include; exclude
    batch: int = 32
    overwrite: bool = False
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise UserError(f"unknown site kind {bad[0]!r}", f"choose from {', '.join(KINDS)}")
        if self.budget < 1:
            raise UserError(f"--budget {self.budget} must be at least 1", "give a number of forward passes")
        if not 2 <= self.length <= 1024:
            raise UserError(f"--length {self.length} is out of range", "give 2 to 1024 tokens")
        if self.batch < 2:
            raise UserError(f"--batch {self.batch} must be at least 2", "give a larger batch")
        if self.first_position not in ("auto", "include", "exclude"):
            raise UserError(
                f"invalid --first-position {self.first_position!r}", "use auto, include or exclude"
            )

    @property
    def selector(self) -> str:
        return self.sites or ",".join(self.kinds)


def run_stress(cfg: StressConfig, *, loaded=None) -> dict:
    """Search, write worst.jsonl, re-measure it, and return the result (also in OUT/run/stress.json)."""
    out = _prepare(Path(cfg.out), cfg)
    with RunLock(out):
        loaded = loaded if loaded is not None else engine.load(cfg.model, cfg)
        corpus_view = _corpus_run(cfg, out, loaded)
        checkpoints = scale_checkpoints(cfg.scales, corpus_view, cfg.kinds, cfg.sites)
        model, tok = loaded.model, loaded.tokenizer
        prefix = bos_prefix(tok)
        first = {"include": 0, "exclude": 1}.get(cfg.first_position, 1 if prefix else 0)
        with frozen(model):
            searches, state, kinds = _searches(cfg, out, loaded, corpus_view, prefix, first)
            _drive(cfg, out, searches, state)
            entries = _worst(out, searches, tok, prefix)
        worst_view = _remeasure(cfg, out, loaded)
        for i, e in enumerate(entries):  # the value measure gives for each entry, next to the search's
            e["measured"] = entry_value(worst_view, i, e["site"], first) if e["site"] else None
        result = {
            "model": cfg.model, "from_run": str(corpus_view.path), "kinds": kinds, "first_position": first,
            "length": cfg.length, "budget": cfg.budget, "seed": cfg.seed, "entries": entries,
            "table": kind_table(corpus_view, worst_view, kinds, first),
            "scales": saturation(checkpoints, worst_view),
        }  # fmt: skip
        atomic_write_text(worst_view.path / "stress.json", json.dumps(result, indent=2) + "\n")
    return result


def _prepare(out: Path, cfg: StressConfig) -> Path:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output {out} exists and is not a directory", "choose another -o")
    busy = out.exists() and any(p.name != ".lock" for p in out.iterdir())
    is_stress = (out / STATE_FILE).exists()
    if cfg.resume and not is_stress:
        raise RunDirError(f"--resume given, but {out} holds no stress search", "drop --resume")
    if busy and not cfg.resume:
        if not cfg.overwrite:
            raise RunDirError(f"output directory {out} already exists", "pass --overwrite or --resume")
        if not is_stress:
            raise RunDirError(f"{out} is not empty and is not a stress output", "choose another -o")
        for p in out.iterdir():
            if p.name != ".lock":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _corpus_run(cfg: StressConfig, out: Path, loaded) -> RunView:
    if cfg.from_run:
        return RunView.measured(cfg.from_run)
    from ..runner import measure

    path = out / "corpus"
    if not (path / "run.json").exists() or RunView(path).status != "complete":
        mc = MeasureConfig(model=cfg.model, corpus="quick", out=str(path), sites=cfg.selector,
                           overwrite=True, progress=cfg.progress, **engine.model_kwargs(cfg))  # fmt: skip
        measure(mc, loaded=loaded)
    return RunView.measured(path)


def _searches(cfg, out, loaded, corpus_view, prefix, first):
    """{(kind, method): search}, their state file and the kinds; from the state on --resume."""
    model, tok = loaded.model, loaded.tokenizer
    probe_ids = tok("The quick brown fox jumps over the lazy dog", add_special_tokens=True)["input_ids"]
    _, probe = engine.resolve_sites(model, cfg.selector, [_Seq(probe_ids)], engine.pad_id(tok))
    obj = Objective(model, probe.bindings, first)
    bodies = seed_bodies(corpus_view, tok, prefix, obj.kinds, cfg.length, 16)
    _share(cfg, 2 * len(obj.kinds), len(bodies))  # a budget too small fails before any forward
    state = _load_state(out, cfg, obj, corpus_view) if cfg.resume else None
    allowed = allowed_ids(tok, model.get_input_embeddings().num_embeddings)
    if state:
        seeds = {k: [Found(**f) for f in v] for k, v in state["seeds"].items()}
    else:
        seeds = {k: [] for k in obj.kinds}
        for lo in range(0, len(bodies), cfg.batch):  # one forward scores a row for every kind
            chunk = Scorer(obj, tok, prefix, 0)(bodies[lo : lo + cfg.batch], 0, every_kind=True)
            for kind, found in zip(obj.kinds, chunk, strict=True):
                seeds[kind] += found
    searches = {}
    for ki, kind in enumerate(obj.kinds):
        seed = cfg.seed * 1000 + ki
        best = sorted(seeds[kind], key=lambda f: -f.value)
        searches[(kind, "corpus")] = CorpusSearch(Scorer(obj, tok, prefix, ki), allowed, best, seed,
                                                  batch=cfg.batch)  # fmt: skip
        searches[(kind, "grad")] = GradSearch(Scorer(obj, tok, prefix, ki), allowed, best[0], seed + 500,
                                              batch=cfg.batch)  # fmt: skip
    if state:
        for key, s in searches.items():
            entry = state["searches"][f"{key[0]}/{key[1]}"]
            s.load_state_dict(entry["state"])
            s.scorer.passes = entry["passes"]
    file = _StateFile(out, _fingerprint(cfg, obj, corpus_view), seeds, len(bodies))
    file.save(searches)
    return searches, file, obj.kinds


def _share(cfg: StressConfig, n_searches: int, seeds_cost: int) -> int:
    """Forward passes per search: what the seeds leave, shared equally; at least one step each."""
    share = (cfg.budget - seeds_cost) // n_searches
    need = cfg.batch + GRAD_COST  # the costlier step (search_grad's)
    if share < need:
        raise UserError(
            f"--budget {cfg.budget} leaves {max(share, 0)} forward passes per search "
            f"({n_searches} searches, {seeds_cost} for the seeds), below one step ({need})",
            f"give --budget {seeds_cost + need * n_searches} or more, fewer kinds or a smaller --batch",
        )
    return share


class _Seq:  # what engine.resolve_sites reads of a sequence for its probe forward
    def __init__(self, ids):
        self.ids = tuple(ids)


def _drive(cfg, out, searches, state) -> None:
    """Step every search until its share of the budget is spent; checkpoint after every step."""
    share = _share(cfg, len(searches), state.seeds_cost)
    done = sum(min(s.scorer.passes, share) for s in searches.values())
    with StepProgress(cfg.progress, share * len(searches), done) as progress:
        for (kind, method), s in searches.items():
            while s.scorer.passes + s.cost <= share:
                before = s.scorer.passes
                try:
                    s.step()
                except KeyboardInterrupt:
                    raise Interrupted(
                        f"stopped during {kind}/{method}; every finished step is saved in {out}; "
                        "continue with the same command and --resume"
                    ) from None
                state.save(searches)
                progress(s.scorer.passes - before, f"{kind}/{method}", s.best.value)


def _worst(out: Path, searches, tok, prefix) -> list[dict]:
    """worst.jsonl: one input per (kind, search). A body whose text does not tokenize back to it
    (it cannot happen for the kept inputs, which are checked, but it is checked again) is
    scored again as the ids its text gives, since those are what measure will see."""
    entries = []
    for (kind, method), s in searches.items():
        f, text = s.best, decode(tok, s.best.body)
        ids = retokenize(tok, [f.body])[0]
        value, site, exact = f.value, f.site, ids == prefix + f.body
        if not exact:
            again = s.scorer([ids[len(prefix) :]], f.step)[0] if ids[: len(prefix)] == prefix else None
            value, site = (again.value, again.site) if again else (None, None)
        entries.append({
            "id": f"stress-{kind}-{method}", "domain": f"stress-{kind}", "text": text, "token_ids": ids,
            "site": site, "value": value, "step": f.step, "kind": kind, "method": method,
            "round_trip": exact,
        })  # fmt: skip
    atomic_write_text(out / "worst.jsonl", "".join(json.dumps(e) + "\n" for e in entries))
    return entries


def _remeasure(cfg: StressConfig, out: Path, loaded) -> RunView:
    """worst.jsonl through runner.measure, with measure's own defaults: what
    `actscope measure --corpus OUT/worst.jsonl --sites SELECTOR` does."""
    from ..runner import measure

    mc = MeasureConfig(model=cfg.model, corpus=str(out / "worst.jsonl"), out=str(out / "run"),
                       sites=cfg.selector, overwrite=True, progress=False, **engine.model_kwargs(cfg))  # fmt: skip
    return RunView.measured(measure(mc, loaded=loaded))


def _fingerprint(cfg: StressConfig, obj: Objective, view) -> str:
    """What a resumed search must share with the one it continues (the budget may grow)."""
    keys = asdict(cfg)
    keep = {k: keys[k] for k in ("model", "kinds", "sites", "length", "seed", "first_position", "batch")}
    keep |= {"sites_hooked": [b.site.name for b in obj.bindings], "corpus": view.manifest["corpus"]["hash"],
             "from": str(view.path), "model_hash": view.model.get("sha256")}  # fmt: skip
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _load_state(out: Path, cfg, obj, view) -> dict:
    state = _StateFile.read_json(out)
    if state.get("fingerprint") != _fingerprint(cfg, obj, view):
        raise RunDirError(
            f"the search in {out} was started with another model, corpus run or settings",
            "resume with the same arguments (only --budget may change), or start over with --overwrite",
        )
    return state


class _StateFile:
    """OUT/stress-state.json, written atomically after every step."""

    def __init__(self, out: Path, fingerprint: str, seeds: dict, seeds_cost: int):
        self.out, self.fingerprint, self.seeds, self.seeds_cost = out, fingerprint, seeds, seeds_cost

    @staticmethod
    def read_json(out: Path) -> dict:
        try:
            return json.loads((out / STATE_FILE).read_text())
        except (OSError, ValueError):
            raise RunDirError(f"{out / STATE_FILE} is damaged", "start over with --overwrite") from None

    def save(self, searches) -> None:
        body = {
            "fingerprint": self.fingerprint,
            "seeds_cost": self.seeds_cost,
            "seeds": {k: [f.to_json() for f in v] for k, v in self.seeds.items()},
            "searches": {f"{k}/{m}": {"state": s.state_dict(), "passes": s.scorer.passes}
                         for (k, m), s in searches.items()},
        }  # fmt: skip
        atomic_write_text(self.out / STATE_FILE, json.dumps(body) + "\n")


__all__ = ["DEFAULT_KINDS", "GRAD_COST", "METHODS", "StressConfig", "run_stress"]
