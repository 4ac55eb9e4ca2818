"""Run + scheme -> the per-module plan of a checkpoint: what is quantized, with which input scale.

    plan = build_plan(view, scheme, linear_modules, scale_dtype=torch.bfloat16)
    plan.modules["model.layers.0.self_attn.q_proj"].scale      # stored input scale, (1,)
    plan.ignore["lm_head"]                                     # why it stays in 16 bits

Rules (clients.md):
- every linear layer but the LM head is quantized (the layers quant/e2e.py's end-to-end
  figure fake-quantizes, so a deployment and its prediction cover the same modules);
- static input scales come from the run's measured max|a| of each linear input site
  (sites.parquet, `module` column: the adapters' site <-> module mapping), through
  the --clip rule; modules vLLM fuses into one matmul (q/k/v, gate/up, an expert's
  w1/w3) share the largest threshold of their group, since vLLM takes the max anyway;
- an expert no calibration token reached takes the largest threshold of the same
  projection over its layer's other experts (named in `fallbacks`), never nan or 0;
- left unquantized and listed with the reason: the LM head, the sites `actscope quant`
  recommends keeping in 16 bits, inputs that held inf / nan when measured, static
  modules with no measurement, and scales the stored dtype cannot hold.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..quant.primitives import stored_scale
from .scales import clip_threshold
from .schemes import DeployScheme

# Projections one fused matmul reads in vLLM (and in most fast kernels): they share a scale.
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"), ("query", "key", "value"))
_EXPERT = re.compile(r"\.experts\.\d+\.")


@dataclass
class ModulePlan:
    module: str
    site: str | None  # the run's linear-input site of this module (None: dynamic, not measured)
    peak: float | None  # measured max|a| of its own input (None: no token reached it)
    group: str  # the fused group (or the module itself)
    threshold: float | None = None  # clip threshold the stored scale covers (the group's)
    scale: torch.Tensor | None = None  # (1,) stored input scale, static schemes
    fallback: str | None = None  # why the threshold is not its own group's measurement


@dataclass
class Plan:
    scheme: DeployScheme
    modules: dict[str, ModulePlan] = field(default_factory=dict)  # quantized modules
    ignore: dict[str, str] = field(default_factory=dict)  # module -> reason it stays unquantized

    @property
    def fallbacks(self) -> dict[str, str]:
        return {m: p.fallback for m, p in self.modules.items() if p.fallback}


def group_of(module: str) -> str:
    """`model.layers.0.self_attn.k_proj` -> `model.layers.0.self_attn.{q_proj,k_proj,v_proj}`."""
    parent, _, leaf = module.rpartition(".")
    for members in FUSED:
        if leaf in members:
            return f"{parent}.{{{','.join(members)}}}"
    return module


def linear_sites(view) -> dict[str, dict]:
    """module path -> its linear-input row of sites.parquet."""
    return {r["module"]: r for r in view.sites if r["kind"] == "linear_input" and r["module"]}


def build_plan(view, scheme: DeployScheme, linear_modules: list[str], head: str | None, scale_dtype) -> Plan:
    sites = linear_sites(view)
    if not sites:
        raise UserError(
            f"run {view.path} measured no linear-input sites",
            "measure with --sites linear_input (or all) before deploying",
        )
    plan = Plan(scheme)
    aliases = ((view.quant or {}).get("aliases")) or {}
    for m in [*linear_modules, *([head] if head else [])]:
        reason = _ignored(m, head, sites.get(m), scheme, aliases)
        if reason:
            plan.ignore[m] = reason
            continue
        row = sites.get(m)
        peak = row["absmax"] if row and row["tokens"] else None
        plan.modules[m] = ModulePlan(m, row["site"] if row else None, peak, group_of(m))
    if scheme.static:
        _static_scales(plan, view, scale_dtype)
    return plan


def _ignored(m: str, head: str | None, row: dict | None, scheme: DeployScheme, aliases: dict) -> str | None:
    if m == head:
        return "LM head (kept in 16 bits, as W8A8 / FP8 deployments do)"
    if row is not None and aliases.get(row["site"], row["site"]) in scheme.keep:
        return "kept in 16 bits by the recommendation of `actscope quant`"
    if row is not None and any(row.get(k) for k in ("nan", "posinf", "neginf")):
        return "its input held inf / nan when measured (overflows the run's dtype)"
    if scheme.static and row is None:
        return "no measured input (not a linear-input site of the run)"
    return None


def _static_scales(plan: Plan, view, dtype) -> None:
    """Thresholds per module -> the max of each fused group -> expert fallbacks -> stored scales."""
    fmt, clip = plan.scheme.fmt, plan.scheme.clip
    own = {}
    for m, p in plan.modules.items():
        if p.peak is not None:
            hist = view.hist(p.site) if clip != "absmax" else None
            own[m] = clip_threshold(clip, fmt, p.peak, hist)
    groups: dict[str, float] = {}
    for m, t in own.items():
        g = plan.modules[m].group
        groups[g] = max(groups.get(g, 0.0), t)
    for m, p in list(plan.modules.items()):
        p.threshold = groups.get(p.group)
        if p.threshold is None:
            p.threshold, p.fallback = _expert_fallback(p, groups)
        if p.threshold is None:
            plan.ignore[m] = "no calibration token reached it and no sibling expert was measured"
            del plan.modules[m]
            continue
        p.scale = stored_scale(p.threshold, fmt, dtype).reshape(1)
        if not math.isfinite(float(p.scale)):
            plan.ignore[m] = f"its input scale {p.threshold / fmt.max_value:.3g} overflows {dtype}"
            del plan.modules[m]


def _expert_fallback(p: ModulePlan, groups: dict[str, float]) -> tuple[float | None, str | None]:
    """An unreached expert takes the largest threshold of the same projection over its layer's experts."""
    family = _EXPERT.sub(".experts.*.", p.group)
    if family == p.group:
        return None, None
    vals = [t for g, t in groups.items() if _EXPERT.sub(".experts.*.", g) == family]
    if not vals:
        return None, None
    return max(vals), f"no calibration token reached it; took the largest scale of {family}"
