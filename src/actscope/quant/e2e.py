"""End to end: fake-quantize every linear input (weights stay float) and compare next-token predictions.

For each scheme, forward pre-hooks replace the input of every decoder linear
layer by its fake-quantized value; the LM head stays unquantized, as in
W8A8 / FP8 deployments. On the held-out split, against the float model:

    CE     mean next-token cross-entropy (nats) over real tokens; perplexity = exp(CE)
    KL     mean KL(p_float || p_quant) of the next-token distributions
    top-1  fraction of positions whose argmax prediction is unchanged

Positions count only when both the token and the one it predicts are real
(right padding is masked out). Logits exist for one batch at a time; the
float model's log-probabilities are computed once per batch and reused by
every scheme.

Every result says which linear layers ran unquantized (`linear_unquantized`,
module paths; the LM head is never counted): a scheme's map must cover every
linear input whatever site carries its tensor, else its perplexity is optimistic.
Only the layers a candidate keeps in 16 bits on purpose should appear there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..engine import input_device
from .quantizer import Quantizer

FIELDS = ("positions", "nll", "kl", "agree")


class QuantizedLinearInputs:
    """Context manager: pre-hooks that fake-quantize the input of each given module."""

    def __init__(self, model: nn.Module, quantizers: dict[str, Quantizer]):
        self.model = model
        self.quantizers = quantizers
        self._handles: list = []

    @staticmethod
    def _hook(q: Quantizer):
        def pre_hook(module, args):
            if not args or not isinstance(args[0], torch.Tensor):
                return None
            x = args[0]
            flat = x.reshape(-1, x.shape[-1]).float()  # (B*S, C); padding rows are harmless
            xq, _ = q(flat)
            return (xq.reshape(x.shape).to(x.dtype), *args[1:])

        return pre_hook

    def __enter__(self) -> QuantizedLinearInputs:
        try:
            for path, q in self.quantizers.items():
                mod = self.model.get_submodule(path)
                self._handles.append(mod.register_forward_pre_hook(self._hook(q)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _next_token_rows(
    logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, V) float32 log-probabilities at real positions that predict a real token, and (M,) targets."""
    valid = (mask[:, 1:] > 0) & (mask[:, :-1] > 0)  # (B, S-1)
    rows = logits[:, :-1][valid].float()
    return torch.log_softmax(rows, dim=-1), ids[:, 1:][valid]


def linear_layers(model: nn.Module) -> list[str]:
    """Module paths of the linear layers whose inputs W8A8 / FP8 kernels quantize: every
    nn.Linear and GPT-2 Conv1D but the LM head (output embeddings)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        path
        for path, m in model.named_modules()
        if (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D") and m is not head
    ]


def evaluate_e2e(model: nn.Module, batches, schemes: dict[str, dict[str, Quantizer]]) -> dict[str, dict]:
    """{"float": {...}, scheme name: {...}} with ce, ppl, kl, top1_agree, positions, deltas,
    and the linear layers each scheme left unquantized."""
    contexts = {name: (lambda qs=qs: QuantizedLinearInputs(model, qs)) for name, qs in schemes.items()}
    out = evaluate_contexts(model, batches, contexts)
    layers = linear_layers(model)
    for name, qs in schemes.items():
        out[name]["linear_unquantized"] = [p for p in layers if p not in qs]
    return out


def evaluate_contexts(model: nn.Module, batches, contexts: dict[str, Callable]) -> dict[str, dict]:
    """The same comparison for any quantization a context manager applies while it is open
    (contexts: name -> a callable returning it): linear inputs, the KV cache (kvcache.py)."""

    def under(make):
        def logits(ids, mask):
            with make():
                return _logits(model, ids, mask)

        return logits

    return _compare(model, {name: under(make) for name, make in contexts.items()}, batches)


def compare_models(ref: nn.Module, others: dict[str, nn.Module], batches) -> dict[str, dict]:
    """evaluate_e2e's figures for other models (a reloaded checkpoint) against `ref` on the same batches:
    {"float": ..., name: {ce, ppl, kl, top1_agree, positions, deltas}}. The models share a tokenizer."""
    device = input_device(ref)
    variants = {name: (lambda ids, mask, m=m: _logits(m, ids, mask).to(device)) for name, m in others.items()}
    return _compare(ref, variants, batches)


def _compare(ref: nn.Module, variants: dict[str, Callable], batches) -> dict[str, dict]:
    """Next-token figures of each variant's logits (ids, mask) -> (B, S, V) against ref's."""
    device = input_device(ref)
    sums = {
        name: torch.zeros(len(FIELDS), dtype=torch.float64, device=device) for name in ("float", *variants)
    }
    with torch.inference_mode():
        for batch in batches:
            ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
            ref_lp, target = _next_token_rows(_logits(ref, ids, mask), ids, mask)
            ref_top = ref_lp.argmax(-1)
            sums["float"] += _terms(ref_lp, ref_lp, target, ref_top)
            for name, logits in variants.items():
                logp, _ = _next_token_rows(logits(ids, mask), ids, mask)
                sums[name] += _terms(ref_lp, logp, target, ref_top)
                del logp
            del ref_lp
    return _results(sums)


def _logits(model, ids, mask) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # (B, S, V)


def _terms(
    ref: torch.Tensor, logp: torch.Tensor, target: torch.Tensor, ref_top: torch.Tensor
) -> torch.Tensor:
    nll = -logp.gather(1, target[:, None]).squeeze(1)  # (M,)
    kl = (ref.exp() * (ref - logp)).sum(-1)  # (M,) KL(float || quant)
    agree = logp.argmax(-1) == ref_top
    return torch.stack(
        [
            torch.tensor(float(target.numel()), dtype=torch.float64, device=ref.device),
            nll.double().sum(),
            kl.double().sum(),
            agree.sum().double(),
        ]
    )


def _results(sums: dict[str, torch.Tensor]) -> dict[str, dict]:
    out = {}
    for name, s in sums.items():
        n, nll, kl, agree = s.cpu().tolist()
        ce = nll / n if n else math.nan
        out[name] = {
            "positions": int(n),
            "ce": ce,
            "ppl": math.exp(ce) if n else math.nan,
            "kl": kl / n if n else math.nan,
            "top1_agree": agree / n if n else math.nan,
        }
    base = out["float"]
    for r in out.values():
        r["delta_ce"] = r["ce"] - base["ce"]
        r["ppl_change_pct"] = 100.0 * (r["ppl"] / base["ppl"] - 1.0) if base["ppl"] > 0 else math.nan
    return out
