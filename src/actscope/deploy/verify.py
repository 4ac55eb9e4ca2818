"""Verification: reload the checkpoint with transformers (+ compressed-tensors), generate, and measure
next-token KL and perplexity change against the float model on the run's held-out samples.

What the reload runs (checked here, not assumed): compressed-tensors keeps the FP8 /
INT8 weights, decompresses them to dense on the first forward, and wraps every
quantized Linear's forward so that its input is fake-quantized with the stored
`input_scale` (static) or a per-token scale (dynamic) before the matmul.
`applies_input_quantization` confirms it on one module: its output must change
when its input scale is doubled (static) or when quantization is switched off.

Four figures are set side by side:
    reload          the checkpoint: quantized weights and quantized inputs
    simulated       the float model quantized the same way by actscope's own primitives
                    (weights per channel, inputs at the checkpoint's scales): an
                    independent computation of what the reload should give
    deploy_scales   the float model with only its linear inputs fake-quantized at
                    the checkpoint's scales (quant/e2e.py's hooks): what the input
                    scales alone do
    quant           `actscope quant`'s recorded end-to-end figure for the same scheme
                    (activations only, scales from its calibration split)
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from ..corpus import TokenizeConfig, load_corpus, make_batches, tokenize_corpus
from ..errors import RunDirError
from ..quant.config import QuantConfig
from ..quant.e2e import QuantizedLinearInputs, compare_models, evaluate_e2e
from ..quant.quantizer import Quantizer
from ..quant.scheme import parse_scheme
from ..quant.splits import split_corpus, subset
from .plan import Plan
from .weights import channel_scale

PROMPT = "The capital of France is"
NEW_TOKENS = 8
# The reload against actscope's own simulation of the same checkpoint (same weights, same stored
# scales, float32 compute on both sides): static FP8 agrees to the last digit on SmolLM2; the bound
# leaves room for summation order only. Dynamic INT8 differs by rule: compressed-tensors' CPU
# fake-quant divides the per-token max by 127.5 (range -128..127), actscope (and vLLM's kernel) by 127.
SIM_TOLERANCE_PCT = 0.05


def heldout(view):
    """The run's held-out samples: `actscope quant`'s evaluation split, else the same split rule."""
    m = view.manifest
    q = view.quant or {}
    corpus = load_corpus(m["corpus"]["name"])
    # quant's split is of the whole corpus; a measure run with --limit hashed its subset
    want = (q.get("corpus") or {}).get("hash") or (
        None if m["settings"].get("limit") else m["corpus"]["hash"]
    )
    if want is not None and corpus.hash != want:
        raise RunDirError(
            f"corpus {corpus.name!r} changed since the run (hash differs)", "verify against a fresh run"
        )
    d = QuantConfig()
    ids = (q.get("split") or {}).get("evaluation")
    if ids:
        index = {s.id: i for i, s in enumerate(corpus.samples)}
        chosen = [index[i] for i in ids if i in index]
    else:
        chosen = list(split_corpus(corpus, d.calib, min(d.eval, len(corpus) - d.calib), d.seed).evaluation)
    settings = q.get("settings") or {}
    return (
        subset(corpus, chosen),
        settings.get("max_length", d.max_length),
        settings.get("e2e_token_budget", d.e2e_token_budget),
    )


def verify(out: Path, view, plan: Plan, ckpt_dtype: torch.dtype) -> dict:
    from transformers import AutoModelForCausalLM

    from .. import engine

    settings = view.manifest.get("settings") or {}
    dtype = settings.get("dtype") or "float32"
    ref = engine.load(view.model["source"], QuantConfig(), dtype=dtype, device="cpu")
    reload = AutoModelForCausalLM.from_pretrained(out, dtype=getattr(torch, dtype), local_files_only=True)
    reload.eval()
    corpus, max_length, budget = heldout(view)
    tcfg = TokenizeConfig(bos=settings.get("bos", "auto"), max_length=max_length, overflow="truncate")
    seqs = tokenize_corpus(corpus, ref.tokenizer, tcfg)
    batches = make_batches(seqs, token_budget=max(budget, max_length), pad_id=engine.pad_id(ref.tokenizer))
    sim = simulated(ref.model, plan, ckpt_dtype)
    with QuantizedLinearInputs(sim, _activation_map(plan)):
        got = compare_models(ref.model, {"reload": reload, "simulated": sim}, batches)
    del sim
    scales = evaluate_e2e(ref.model, batches, {"deploy_scales": _activation_map(plan)})
    out = {
        "samples": len(corpus),
        "positions": got["float"]["positions"],
        "float": _fig(got["float"]),
        "reload": _fig(got["reload"]),
        "simulated": _fig(got["simulated"]),
        "deploy_scales": _fig(scales["deploy_scales"]),
        "quant": _prediction(view, plan),
        "sim_tolerance_ppl_change_pct": SIM_TOLERANCE_PCT,
        "applies_input_quantization": applies_input_quantization(reload, plan),
        "generate": _generate(ref, reload),
    }
    out["gaps"] = gaps(out)
    return out


def gaps(v: dict) -> dict:
    """Perplexity-change differences (points) that explain the reload against quant's prediction:
    reload - simulated (the consumer's runtime against actscope's arithmetic), simulated -
    deploy_scales (what quantizing the weights adds), deploy_scales - quant (the run's scales
    against quant's calibration-split scales; 0 for dynamic schemes)."""
    r, s, d = (v[k]["ppl_change_pct"] for k in ("reload", "simulated", "deploy_scales"))
    q = (v.get("quant") or {}).get("ppl_change_pct")
    return {
        "reload_vs_simulated": r - s,
        "weights": s - d,
        "scales_vs_quant": None if q is None else d - float(q),
    }


def _fig(r: dict) -> dict:
    return {k: r[k] for k in ("ppl", "kl", "ppl_change_pct", "top1_agree", "delta_ce")}


def _prediction(view, plan: Plan) -> dict | None:
    q = view.quant or {}
    if plan.scheme.name.startswith("recommended"):  # its keep-set ran under its own e2e key
        r = (q.get("recommendation") or {}).get("e2e")
    else:
        r = (q.get("e2e") or {}).get(parse_scheme(plan.scheme.quant_scheme).name)
    return None if not r else {"scheme": plan.scheme.quant_scheme, **_fig(r)}


def simulated(model, plan: Plan, ckpt_dtype: torch.dtype):
    """A copy of the float model with the checkpoint's quantization done by actscope's own primitives:
    every tensor rounded to the checkpoint's dtype, weights rounded per channel (weights.channel_scale,
    quant/formats rounding); inputs by the hooks at the stored scales."""
    sim = copy.deepcopy(model)
    fmt = plan.scheme.fmt
    with torch.no_grad():
        for p in sim.parameters():
            p.copy_(p.to(ckpt_dtype).to(p.dtype))
        for m in plan.modules:
            w = sim.get_submodule(m).weight
            scale = channel_scale(w.to(ckpt_dtype), fmt, ckpt_dtype)
            w.copy_(fmt.round(w.float() / scale.float()) * scale.float())
    return sim


def _activation_map(plan: Plan) -> dict[str, Quantizer]:
    s = parse_scheme(plan.scheme.quant_scheme)
    return {
        m: Quantizer(s, scale=None if p.scale is None else p.scale.float().reshape(()))
        for m, p in plan.modules.items()
    }


def applies_input_quantization(model, plan: Plan) -> bool:
    """One quantized module's output changes with its input quantization (see the module docstring)."""
    name = next(iter(plan.modules))
    mod = model.get_submodule(name)
    x = torch.randn(3, mod.in_features, dtype=next(mod.parameters()).dtype) * 2
    with torch.no_grad():
        y = mod(x)
        if plan.scheme.static:
            mod.input_scale.data *= 2
            y2 = mod(x)
            mod.input_scale.data /= 2
        else:
            mod.quantization_enabled = False
            y2 = mod(x)
            mod.quantization_enabled = True
    return not torch.equal(y, y2)


def _generate(ref, reload) -> dict:
    tok = ref.tokenizer
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    with torch.no_grad():
        a = ref.model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        b = reload.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    n = ids.shape[1]
    same = sum(int(x == y) for x, y in zip(a[0, n:].tolist(), b[0, n:].tolist()))
    return {
        "prompt": PROMPT,
        "float": tok.decode(a[0, n:]),
        "reload": tok.decode(b[0, n:]),
        "same_tokens": same,
        "new_tokens": NEW_TOKENS,
        "finite": bool(math.isfinite(float(b.float().sum()))),
    }
