"""KV-cache quantization: static k_scale / v_scale from a run, their SQNR, and end to end.

    scales = kv_scales(view, fmt="fp8-e4m3", granularity="tensor")
    # {layer: {"module": "model.layers.0.self_attn", "k_scale": (1,) f32, "v_scale": (1,) f32}}

A scale is the measured peak over the format's top (amax / 448 for FP8 E4M3), rounded up
in float32 so that scale * qmax >= the measured max|a| (vLLM's layout: k_fp8 = k / k_scale).
"tensor" is one scale per layer for K and for V, "head" one per KV head ((kv_heads,)).
The peaks are the `key` and `value` sites of the run (attention.py: keys after RoPE and
k-norm, as cached), per head from the channels table (channels = heads x head_dim).

`KVFakeQuant` fake-quantizes K and V where they enter attention (attention.intercept), for
SQNR per layer and head (`kv_sqnr`, written to quant_kv.parquet) and for the end-to-end perplexity / KL change
(e2e.evaluate_contexts). DeepSeek MLA caches a latent, not these heads: its K/V sites are the
expanded heads, so its scales do not describe its cache.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import attention
from ..errors import RunDirError, UserError
from .formats import FORMATS, Format
from .primitives import fake_quantize, sqnr_db, stored_scale

KV_FORMATS = ("fp8-e4m3", "fp8-e5m2", "int8")
GRANULARITIES = ("tensor", "head")
SQNR_MIN_DB = 30.0  # a KV scheme passes per layer at this SQNR (and end to end within the budget)


def kv_format(name: str) -> Format:
    if name not in KV_FORMATS:
        raise UserError(f"KV-cache format {name!r} is unknown", f"use one of {', '.join(KV_FORMATS)}")
    return FORMATS.get(name.replace("-", "_"))


def parse_kv_scheme(spec: str) -> tuple[str, str]:
    """ "fp8-e4m3:tensor" -> ("fp8-e4m3", "tensor"); the granularity defaults to tensor."""
    fmt, _, gran = spec.partition(":")
    kv_format(fmt)
    gran = gran or "tensor"
    if gran not in GRANULARITIES:
        raise UserError(
            f"KV granularity {gran!r} in {spec!r} is unknown", f"use one of {', '.join(GRANULARITIES)}"
        )
    return fmt, gran


def kv_sites(view) -> dict[int, dict]:
    """{layer: {"module", "key", "value", "heads_k", "heads_v"}} from a run's manifest."""
    out: dict[int, dict] = {}
    for s in view.manifest.get("sites", []):
        if s["kind"] in ("key", "value") and s.get("heads"):
            e = out.setdefault(s["layer"], {"module": s["module"]})
            e[s["kind"]], e[f"heads_{s['kind'][0]}"] = s["name"], s["heads"]
    out = {i: e for i, e in sorted(out.items()) if "key" in e and "value" in e}
    if not out:
        raise RunDirError(
            f"{view.path} has no key and value sites",
            "measure again with the default sites or --sites paper,kv (actscope >= the KV-cache sites)",
        )
    return out


def head_absmax(view, site: str, heads: int) -> np.ndarray:
    """(heads,) float32 max|a| per head, from the site's per-channel maxima."""
    ch = view.channels(site)
    if ch is None:
        raise RunDirError(f"{view.path} has no per-channel data for {site}", "measure the run again")
    return np.asarray(ch["absmax"], dtype=np.float32).reshape(heads, -1).max(1)


def kv_peaks(view) -> dict[int, dict]:
    """{layer: {"module", "k": (heads_k,), "v": (heads_v,)}} measured max|a| per KV head."""
    return {
        i: {
            "module": e["module"],
            "k": head_absmax(view, e["key"], e["heads_k"]),
            "v": head_absmax(view, e["value"], e["heads_v"]),
        }
        for i, e in kv_sites(view).items()
    }


def kv_scales(view, fmt: str = "fp8-e4m3", granularity: str = "tensor") -> dict[int, dict]:
    """{layer: {"module", "k_scale", "v_scale"}}: float32, (1,) per tensor or (kv_heads,) per head."""
    f = kv_format(fmt)
    if granularity not in GRANULARITIES:
        raise UserError(
            f"KV granularity {granularity!r} is unknown", f"use one of {', '.join(GRANULARITIES)}"
        )
    pick = (lambda a: a.max(keepdims=True)) if granularity == "tensor" else (lambda a: a)
    return {
        i: {"module": p["module"], "k_scale": _scale(pick(p["k"]), f), "v_scale": _scale(pick(p["v"]), f)}
        for i, p in kv_peaks(view).items()
    }


def stored_layout(scale: torch.Tensor) -> torch.Tensor:
    """A k_scale / v_scale tensor as a checkpoint stores it: (1,) per tensor, (kv_heads, 1, 1) per
    head (the shape compressed-tensors gives the attn_head parameters; transformers refuses others)."""
    return scale.reshape(1) if scale.numel() == 1 else scale.reshape(-1, 1, 1).contiguous()


def _scale(amax: np.ndarray, fmt: Format) -> torch.Tensor:
    """float32 amax / qmax, rounded up so scale x qmax >= amax (primitives.stored_scale)."""
    return stored_scale(np.asarray(amax, dtype=np.float32), fmt, torch.float32)


def kv_cache_scheme(fmt: str = "fp8-e4m3", granularity: str = "tensor") -> dict:
    """compressed-tensors QuantizationArgs of the KV cache (config.json's kv_cache_scheme)."""
    kv_format(fmt)
    return {
        "num_bits": 8,
        "type": "int" if fmt == "int8" else "float",
        "strategy": "tensor" if granularity == "tensor" else "attn_head",
        "dynamic": False,
        "symmetric": True,
        "group_size": None,
        "observer": "minmax",
    }


class KVFakeQuant:
    """K and V fake-quantized with static scales where they enter attention; optionally
    sums of signal^2 and noise^2 per (layer, tensor, head) over the tokens `mask` marks."""

    def __init__(self, model: nn.Module, scales: dict[int, dict], fmt: str, collect: bool = False):
        self.model, self.fmt, self.collect = model, kv_format(fmt), collect
        self.scales = scales
        self.mask: torch.Tensor | None = None  # (B, S) of the current batch, for collect
        self.sums: dict[tuple[int, str], torch.Tensor] = {}  # (layer, "k"|"v") -> (4, heads) sums
        self._ctx = None

    def _quant(self, layer: int, which: str, x: torch.Tensor) -> torch.Tensor:
        s = self.scales[layer][f"{which}_scale"].to(x.device)
        s = s.view(1, -1, 1, 1) if s.numel() > 1 else s.reshape(())  # x: (B, heads, S, D)
        xf = x.float()
        xq, _ = fake_quantize(xf, self.fmt, s)
        if self.collect:
            self._add(layer, which, xf, xq, s)
        return xq.to(x.dtype)

    def _add(self, layer, which, x, xq, s):
        keep = torch.ones(x.shape[0], x.shape[2], device=x.device) if self.mask is None else self.mask
        keep = keep[:, -x.shape[2] :].to(x.device, torch.float64)[:, None, :, None]  # (B, 1, S, 1)
        clip = ((x / s).abs() > self.fmt.max_value).double()
        ones = torch.ones_like(clip)
        t = torch.stack([x.double() ** 2 * keep, (x - xq).double() ** 2 * keep, clip * keep, ones * keep])
        part = t.sum(dim=(1, 3, 4))  # (4, heads): signal^2, noise^2, clipped, elements
        key = (layer, which)
        self.sums[key] = self.sums.get(key, 0) + part

    def _handler(self, layer: int):
        def handler(module, query, key, value, mask, kwargs):
            return query, self._quant(layer, "k", key), self._quant(layer, "v", value)

        return handler

    def __enter__(self):
        handlers = {self.model.get_submodule(e["module"]): [self._handler(i)] for i, e in self.scales.items()}
        self._ctx = attention.intercept(handlers)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    def sqnr_rows(self) -> list[dict]:
        """[{layer, tensor, head, sqnr_db, clip_rate}] from the collected sums (head -1: all heads)."""
        rows = []
        for (layer, which), t in sorted(self.sums.items()):
            t = t.cpu()
            for h in [-1, *range(t.shape[1])]:
                sig, noise, clip, n = t[:, h].tolist() if h >= 0 else t.sum(1).tolist()
                rows.append(
                    {
                        "layer": layer,
                        "tensor": which,
                        "head": h,
                        "sqnr_db": sqnr_db(sig, noise),
                        "clip_rate": clip / n if n else 0.0,
                    }
                )
        return rows


def kv_sqnr(model: nn.Module, batches, scales: dict[int, dict], fmt: str) -> list[dict]:
    """SQNR per layer, tensor (k, v) and head of the static scales on held-out batches."""
    from ..engine import forward_fn, input_device

    device, run = input_device(model), forward_fn(model)
    with KVFakeQuant(model, scales, fmt, collect=True) as fq, torch.inference_mode():
        for b in batches:
            fq.mask = b.attention_mask.to(device)
            run(b.input_ids.to(device), fq.mask)
    return fq.sqnr_rows()


def evaluate_kv(
    model: nn.Module, view, sqnr_batches, e2e_batches, schemes, budget_pct: float
) -> tuple[dict, list[dict]]:
    """`actscope quant`'s KV-cache results: (run.json's kv_cache section, quant_kv rows).

    The section holds per scheme ("fp8-e4m3:tensor" ...) the worst layer, the end-to-end
    change and a verdict; the rows (quant_kv.parquet) the SQNR and clip rate per scheme,
    layer, tensor (k, v) and head (-1: all heads), with the measured peak and the scale.
    pass: every layer's K and V SQNR >= SQNR_MIN_DB and perplexity within budget_pct."""
    from .e2e import evaluate_contexts

    parsed = {s: parse_kv_scheme(s) for s in schemes}
    scales = {s: kv_scales(view, *parsed[s]) for s in schemes}
    peaks = kv_peaks(view)
    rows = {s: kv_sqnr(model, sqnr_batches, scales[s], parsed[s][0]) for s in schemes}
    contexts = {s: (lambda s=s: KVFakeQuant(model, scales[s], parsed[s][0])) for s in schemes}
    e2e = evaluate_contexts(model, e2e_batches, contexts) if e2e_batches else {}
    out, table = {}, []
    for s in schemes:
        fmt, gran = parsed[s]
        layer_rows = [r for r in rows[s] if r["head"] == -1]
        worst = min(layer_rows, key=lambda r: r["sqnr_db"])
        e = e2e.get(s)
        ok = worst["sqnr_db"] >= SQNR_MIN_DB and (e is None or e["ppl_change_pct"] <= budget_pct)
        out[s] = {
            "format": fmt,
            "granularity": gran,
            "worst": {k: worst[k] for k in ("layer", "tensor", "sqnr_db")},
            "e2e": e,
            "verdict": "pass" if ok else "fail",
            "criterion": f"every layer's K and V SQNR >= {SQNR_MIN_DB:g} dB"
            + (f" and perplexity change <= {budget_pct:g}%" if e is not None else ""),
        }
        for r in rows[s]:
            peak = peaks[r["layer"]][r["tensor"]]
            scale = scales[s][r["layer"]][f"{r['tensor']}_scale"]
            h = r["head"]
            table.append(
                {
                    "scheme": s,
                    "format": fmt,
                    "granularity": gran,
                    **r,
                    "absmax": float(peak.max() if h < 0 else peak[h]),
                    "scale": float(scale.max() if h < 0 or scale.numel() == 1 else scale[h]),
                }
            )
    if e2e:
        out["float"] = {"e2e": e2e["float"]}
    return out, table
