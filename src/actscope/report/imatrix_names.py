"""llama.cpp's names for a run's weights, and the imatrix entry they key.

The tensor map is gguf-py's (the package llama.cpp's converter uses), so the
names are those of the model GGUF that llama-quantize reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .rundata import RunView

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Entry:
    """One matmul weight's imatrix data; n_mat = 1 (dense) or the number of experts.

    sum_sq, sums  (n_mat, n_in) float64  sum x^2 and sum x per input column
    counts        (n_mat,) int64         rows (tokens, or tokens routed to the expert)
    absmax        (n_in,) float64        max|x| per input column over all its rows
    """

    name: str
    sum_sq: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    absmax: np.ndarray


def dense_entry(name: str, ch: dict, n: int) -> Entry:
    """A single-matrix entry from a site's per-channel data (sum_sq, mean, absmax) over n tokens."""
    return Entry(
        name=name,
        sum_sq=np.asarray(ch["sum_sq"], dtype=np.float64)[None, :],
        sums=(np.asarray(ch["mean"], dtype=np.float64) * n)[None, :],
        counts=np.array([n], dtype=np.int64),
        absmax=np.asarray(ch["absmax"], dtype=np.float64),
    )


def gguf_arch(model_type: str | None) -> str:
    """The llama.cpp architecture name for an HF model_type (llama's tensor map by default)."""
    import gguf

    names = set(gguf.MODEL_ARCH_NAMES.values())
    mt = (model_type or "").lower()
    base = mt.removesuffix("_text")
    for cand in (mt, base, base.replace("_", ""), base.replace("_", "-")):  # qwen3moe, gpt-oss
        if cand in names:
            return cand
    log.warning("no llama.cpp architecture for model_type %r; using llama's tensor names", model_type)
    return "llama"


def tensor_map(view: RunView):
    """gguf-py's HF-name -> llama.cpp-name map for the run's architecture."""
    import gguf

    arch = gguf_arch(
        view.model.get("model_type") or (view.manifest.get("architecture") or {}).get("model_type")
    )
    n_blocks = (view.manifest.get("architecture") or {}).get("layers") or 1
    return gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], n_blocks)


def weight_name(tmap, module: str) -> str | None:
    """model.layers.0.self_attn.q_proj -> blk.0.attn_q.weight; None where the arch has no such tensor."""
    name = tmap.get_name(module)
    return None if name is None else f"{name}.weight"


def gguf_tensor_names(view: RunView, modules: list[str]) -> dict[str, str]:
    """HF module path -> llama.cpp weight name; unknown modules keep their module path."""
    tmap = tensor_map(view)
    out = {}
    for m in modules:
        name = weight_name(tmap, m)
        if name is None:
            log.warning("%s has no llama.cpp tensor name for this architecture; written under its path", m)
            name = m
        out[m] = name
    return out
