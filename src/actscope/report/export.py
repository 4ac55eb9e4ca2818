"""Files other tools consume, written from a run directory.

    smoothquant  torch file {linear module name -> per-input-channel max|x| (float32)},
                 SmoothQuant's act_scales layout; torch.load(path, weights_only=True) reads it
    imatrix      llama.cpp importance matrix, GGUF layout (in_sum2, counts, in_sum per matmul
                 weight; one matrix per expert for MoE): report/imatrix.py
    imatrix-dat  the same in llama.cpp's legacy .dat layout (ik_llama.cpp, older tools)
    json         the per-site scalars and linear-input channel maxima as plain JSON
    kv-scales    safetensors `<attention module>.k_scale` / `.v_scale` (float32, vLLM /
                 compressed-tensors layout, quant/kvcache.py), the `kv_cache_scheme` and the
                 measured peaks in its metadata and in a JSON beside it (same name, .json)

Linear-input sites are kind "linear_input", point "in"; their module path comes from
the manifest. Aliased sites (q/k/v_proj inputs that are one norm output) read the
per-channel data of their source site.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from .. import outputs
from ..errors import RunDirError, UserError
from . import imatrix
from .rundata import RunView

log = logging.getLogger(__name__)
FORMATS = ("smoothquant", "imatrix", "imatrix-dat", "json", "kv-scales")
# The file `export RUN --format F` writes without -o, inside RUN.
DEFAULT_NAME = {
    "smoothquant": "act_scales.pt",
    "imatrix": "imatrix.gguf",
    "imatrix-dat": "imatrix.dat",
    "json": "export.json",
    "kv-scales": "kv_scales.safetensors",
}


def linear_inputs(view: RunView) -> list[dict]:
    """[{module, site, channels: {...}, tokens}] for every hooked linear layer input."""
    rows = {r["site"]: r for r in view.sites}
    out = []
    for s in view.manifest.get("sites", []):
        if s["kind"] != "linear_input" or s["point"] != "in":
            continue
        ch = view.channels(s["name"])
        row = rows.get(s["name"])
        if ch is None or row is None:
            log.warning("no per-channel data for %s (%s); skipped", s["name"], s["module"])
            continue
        out.append(
            {"module": s["module"], "site": s["name"], "channels": ch, "tokens": int(row["tokens"] or 0)}
        )
    if not out:
        raise RunDirError(
            f"{view.path} has no linear-layer input sites",
            "measure with --sites all (or include linear_input) to export scales",
        )
    return out


def export(view: RunView, fmt: str, out: str | Path, **options) -> dict:
    """Write `fmt` to `out`; returns a short description of what was written.
    options: kv_format, kv_granularity for kv-scales."""
    if fmt not in FORMATS:
        raise UserError(f"export format {fmt!r} is unknown", f"use one of {', '.join(FORMATS)}")
    out = outputs.check(out, "-o")
    out.parent.mkdir(parents=True, exist_ok=True)
    writers = {
        "smoothquant": write_smoothquant,
        "imatrix": write_imatrix,
        "imatrix-dat": write_imatrix_dat,
        "json": write_json,
        "kv-scales": write_kv_scales,
    }
    return writers[fmt](view, out, **options) if fmt == "kv-scales" else writers[fmt](view, out)


def kv_scales_document(view: RunView, kv_format: str = "fp8-e4m3", kv_granularity: str = "tensor") -> tuple:
    """(tensors, JSON document) of the kv-scales export."""
    from ..quant.kvcache import kv_cache_scheme, kv_peaks, kv_scales, stored_layout

    scales = kv_scales(view, kv_format, kv_granularity)
    tensors = {}
    for e in scales.values():
        tensors[f"{e['module']}.k_scale"] = stored_layout(e["k_scale"])
        tensors[f"{e['module']}.v_scale"] = stored_layout(e["v_scale"])
    peaks = kv_peaks(view)
    doc = {
        "format": kv_format,
        "granularity": kv_granularity,
        "kv_cache_scheme": kv_cache_scheme(kv_format, kv_granularity),
        "model": view.manifest.get("model", {}).get("source"),
        "run": str(view.path),
        "layers": {
            str(i): {
                "module": e["module"],
                "k_scale": _floats(e["k_scale"].numpy()),
                "v_scale": _floats(e["v_scale"].numpy()),
                "k_absmax_per_head": _floats(peaks[i]["k"]),
                "v_absmax_per_head": _floats(peaks[i]["v"]),
            }
            for i, e in scales.items()
        },
    }
    return tensors, doc


def write_kv_scales(view: RunView, out: Path, **options) -> dict:
    from safetensors.torch import save_file

    tensors, doc = kv_scales_document(view, **options)
    save_file(tensors, str(out), metadata={"actscope": json.dumps(doc)})
    return {"path": str(out), "format": "kv-scales", "entries": len(tensors), "document": doc}


def write_smoothquant(view: RunView, out: Path) -> dict:
    import torch

    scales = {
        e["module"]: torch.from_numpy(np.asarray(e["channels"]["absmax"], dtype=np.float32).copy())
        for e in linear_inputs(view)
    }
    torch.save(scales, out)
    return {"path": str(out), "format": "smoothquant", "entries": len(scales)}


def write_imatrix(view: RunView, out: Path) -> dict:
    return imatrix.write_gguf(view, imatrix.all_entries(view, linear_inputs(view)), out)


def write_imatrix_dat(view: RunView, out: Path) -> dict:
    return imatrix.write_dat(view, imatrix.all_entries(view, linear_inputs(view)), out)


def write_json(view: RunView, out: Path) -> dict:
    skip = {"module", "note"}
    sites = [{k: v for k, v in r.items() if k not in skip} for r in view.sites]
    meta = {s["name"]: s["module"] for s in view.manifest.get("sites", [])}
    for s in sites:
        s["module"] = meta.get(s["site"])
    try:
        linear = {
            e["module"]: {
                "site": e["site"],
                "tokens": e["tokens"],
                "absmax": _floats(e["channels"]["absmax"]),
                "sum_sq": _floats(e["channels"]["sum_sq"]),
            }
            for e in linear_inputs(view)
        }
    except RunDirError:
        linear = {}
    doc = {
        "actscope_export": 1,
        "model": view.model,
        "dtype": view.dtype,
        "corpus": view.manifest.get("corpus"),
        "tokens": view.manifest.get("tokens"),
        "summary": view.summary,
        "sites": sites,
        "linear_input_channels": linear,
    }
    out.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n")
    return {"path": str(out), "format": "json", "entries": len(sites)}


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _plain(v.item())
    return v


def _clean(v):
    """JSON-safe copy: nan/inf -> null, numpy scalars -> Python."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return _plain(v)


def _floats(a) -> list:
    return [None if not math.isfinite(x) else x for x in np.asarray(a, dtype=np.float64).tolist()]
