"""Files other tools consume, written from a run directory.

    smoothquant  torch file {linear module name -> per-input-channel max|x| (float32)},
                 SmoothQuant's act_scales layout; torch.load(path, weights_only=True) reads it
    imatrix      llama.cpp importance matrix in its GGUF layout: per matmul weight
                 "<gguf name>.in_sum2" (sum x^2 per input column), "<name>.in_sum" (sum x)
                 and "<name>.counts" (tokens), shapes (n_mat=1, n_in) and (1, 1) as numpy
                 rows (ggml ne = [n_in, 1] and [1, 1]); keys general.type = "imatrix",
                 imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size
    json         the per-site scalars and linear-input channel maxima as plain JSON

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
from .rundata import RunView

log = logging.getLogger(__name__)
FORMATS = ("smoothquant", "imatrix", "json")
DEFAULT_SUFFIX = {"smoothquant": ".pt", "imatrix": ".gguf", "json": ".json"}


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


def export(view: RunView, fmt: str, out: str | Path) -> dict:
    """Write `fmt` to `out`; returns a short description of what was written."""
    if fmt not in FORMATS:
        raise UserError(f"export format {fmt!r} is unknown", f"use one of {', '.join(FORMATS)}")
    out = outputs.check(out, "-o")
    out.parent.mkdir(parents=True, exist_ok=True)
    return {"smoothquant": write_smoothquant, "imatrix": write_imatrix, "json": write_json}[fmt](view, out)


def write_smoothquant(view: RunView, out: Path) -> dict:
    import torch

    scales = {
        e["module"]: torch.from_numpy(np.asarray(e["channels"]["absmax"], dtype=np.float32).copy())
        for e in linear_inputs(view)
    }
    torch.save(scales, out)
    return {"path": str(out), "format": "smoothquant", "entries": len(scales)}


def gguf_arch(model_type: str | None) -> str:
    """The llama.cpp architecture name for an HF model_type (llama's tensor map by default)."""
    import gguf

    names = set(gguf.MODEL_ARCH_NAMES.values())
    mt = (model_type or "").lower()
    for cand in (
        mt,
        mt.removesuffix("_text"),
        mt.replace("_", ""),
        mt.removesuffix("_text").replace("_", ""),
    ):
        if cand in names:
            return cand
    log.warning("no llama.cpp architecture for model_type %r; using llama's tensor names", model_type)
    return "llama"


def gguf_tensor_names(view: RunView, modules: list[str]) -> dict[str, str]:
    """HF module path -> llama.cpp weight name (e.g. model.layers.0.self_attn.q_proj -> blk.0.attn_q.weight)."""
    import gguf

    arch = gguf_arch(
        view.model.get("model_type") or (view.manifest.get("architecture") or {}).get("model_type")
    )
    n_blocks = (view.manifest.get("architecture") or {}).get("layers") or 1
    tmap = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], n_blocks)
    out = {}
    for m in modules:
        name = tmap.get_name(m)
        if name is None:
            log.warning("%s has no llama.cpp tensor name for %s; written under its module path", m, arch)
            name = m
        out[m] = f"{name}.weight"
    return out


def write_imatrix(view: RunView, out: Path) -> dict:
    import gguf

    entries = linear_inputs(view)
    names = gguf_tensor_names(view, [e["module"] for e in entries])
    settings = view.manifest.get("settings") or {}
    chunk_size = int(settings.get("max_length") or 512)
    max_count = max(e["tokens"] for e in entries)
    w = gguf.GGUFWriter(str(out), arch=gguf_arch(view.model.get("model_type")))
    w.add_type("imatrix")
    w.add_array(
        gguf.Keys.IMatrix.DATASETS, [str((view.manifest.get("corpus") or {}).get("name", "actscope"))]
    )
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, math.ceil(max_count / chunk_size))
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, chunk_size)
    for e in sorted(entries, key=lambda e: names[e["module"]]):  # llama.cpp sorts by name too
        ch, n, base = e["channels"], e["tokens"], names[e["module"]]
        # (n_mat, n_in) numpy = ggml ne [n_in, n_mat]; dense layers have one matrix.
        w.add_tensor(f"{base}.in_sum2", np.asarray(ch["sum_sq"], dtype=np.float32)[None, :])
        w.add_tensor(f"{base}.counts", np.array([[n]], dtype=np.float32))
        w.add_tensor(
            f"{base}.in_sum", (np.asarray(ch["mean"], dtype=np.float64) * n).astype(np.float32)[None, :]
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"path": str(out), "format": "imatrix", "entries": len(entries)}


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
