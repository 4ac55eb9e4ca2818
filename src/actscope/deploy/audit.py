"""Audit: the static input scales of an existing quantized checkpoint against a run's measured ranges.

    rows = audit(checkpoint, view)      # worst first

Reads compressed-tensors (config.json quantization_config, quant_method
compressed-tensors), ModelOpt (hf_quant_config.json) and vLLM `fp8` checkpoints
(quant_method fp8): every `<module>.input_scale` tensor. Per module:

    representable  scale x qmax: the largest |a| the scale holds
    measured_peak  max|a| of the module's input over the run
    clip_fraction  fraction of the run's measured elements with |a| >= representable, an
                   upper bound from the log histogram (bins are 2**-5 wide in log2, so the
                   bin holding the threshold counts whole); 0 exactly when peak <= representable
    sqnr_db        SQNR at that scale, from the histogram (quant/scales.histogram_mse)
    verdict        saturates, or headroom xN (representable / peak)

vLLM MoE `w13_input_scale` / `w2_input_scale` (one scale per expert in one tensor) are not read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ModelError, UserError
from ..quant.formats import FP8_E4M3, INT8, Format
from ..quant.scales import histogram_sqnr
from ..stats import histogram as H
from .plan import linear_sites
from .weights import source_shards


def checkpoint_format(ckpt: Path) -> tuple[str, Format]:
    """(format name, activation number format) from the checkpoint's config files."""
    cfg_path = ckpt / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{ckpt} is not a Hugging Face checkpoint (no config.json)", "give a model directory")
    try:
        qc = json.loads(cfg_path.read_text()).get("quantization_config") or {}
    except json.JSONDecodeError:
        raise ModelError(f"{cfg_path} is corrupt (not JSON)", "re-download the checkpoint") from None
    method = qc.get("quant_method")
    if (ckpt / "hf_quant_config.json").is_file() or method == "modelopt":
        return "modelopt", FP8_E4M3
    if method == "fp8":
        return "fp8", FP8_E4M3
    if method == "compressed-tensors":
        groups = [g for g in (qc.get("config_groups") or {}).values() if isinstance(g, dict)]
        acts = [g.get("input_activations") or {} for g in groups]
        kind = next((a.get("type") for a in acts if a and not a.get("dynamic")), None)
        if kind is None:
            raise _no_static(ckpt, "its input activations are dynamic or not quantized")
        return "compressed-tensors", FP8_E4M3 if kind == "float" else INT8
    raise _no_static(ckpt, f"quantization_config.quant_method is {method!r}")


def _no_static(ckpt: Path, why: str) -> UserError:
    return UserError(
        f"{ckpt} has no static activation scales ({why})",
        "audit a checkpoint with static input_scale tensors (compressed-tensors, ModelOpt or vLLM fp8)",
    )


def input_scales(ckpt: Path) -> dict[str, float]:
    """module -> its static input scale (the largest element, for per-expert stacks)."""
    from safetensors import SafetensorError, safe_open

    out = {}
    for path in source_shards(ckpt):
        try:
            with safe_open(str(path), "pt") as f:
                for k in f.keys():  # noqa: SIM118
                    if k.endswith(".input_scale"):
                        out[k.removesuffix(".input_scale")] = float(f.get_tensor(k).double().max())
        except (SafetensorError, OSError) as err:
            raise ModelError(
                f"{path} is truncated or corrupt ({str(err).splitlines()[0][:80]})",
                "re-download the checkpoint",
            ) from None
    if not out:
        raise _no_static(ckpt, "no input_scale tensor in its weights")
    return out


def module_row(module: str, scale: float, fmt: Format, site: dict | None, hist) -> dict:
    rep = scale * fmt.max_value
    row = {"module": module, "site": site["site"] if site else None, "input_scale": scale}
    row.update(representable=rep, measured_peak=None, headroom=None, clip_fraction=None, sqnr_db=None)
    if site is None or site["absmax"] is None:
        return {**row, "verdict": "not measured"}
    peak = float(site["absmax"])
    row.update(measured_peak=peak, headroom=rep / peak if peak > 0 else math.inf)
    if hist is not None:
        row["clip_fraction"] = 0.0 if peak <= rep else H.fraction_above(hist, [rep])[rep][1]
        row["sqnr_db"] = histogram_sqnr(hist, fmt, rep, peak)
    row["verdict"] = "saturates" if peak > rep else f"headroom x{row['headroom']:.2f}"
    return row


def audit(ckpt: str | Path, view) -> tuple[str, list[dict]]:
    """(checkpoint format, one row per module with a static scale), worst (least headroom) first."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise UserError(f"checkpoint {ckpt} is not a directory", "give a Hugging Face checkpoint directory")
    name, fmt = checkpoint_format(ckpt)
    scales = input_scales(ckpt)
    sites = linear_sites(view)
    if not sites:
        raise UserError(
            f"run {view.path} measured no linear-input sites", "measure with --sites linear_input"
        )
    rows = []
    for module, scale in scales.items():
        site = sites.get(module)
        hist = view.hist(site["site"]) if site else None
        rows.append({**module_row(module, scale, fmt, site, hist), "format": fmt.name})
    rows.sort(key=lambda r: (r["headroom"] is None, r["headroom"] if r["headroom"] is not None else 0))
    return name, rows


def summary(ckpt, name: str, rows: list[dict]) -> dict:
    sat = [r["module"] for r in rows if r["verdict"] == "saturates"]
    measured = [r for r in rows if r["headroom"] is not None]
    return {
        "checkpoint": str(Path(ckpt).resolve()),
        "format": name,
        "modules": len(rows),
        "measured": len(measured),
        "saturating": sat,
        "worst": measured[0]["module"] if measured else None,
        "min_headroom": measured[0]["headroom"] if measured else None,
        "histogram_rel_error": H.REL_ERROR,
    }


def _finite(v):
    return v if not isinstance(v, float) or math.isfinite(v) else None


def write_audit(run: Path, ckpt, name: str, rows: list[dict]) -> dict:
    """audit.parquet into the run, and run.json["audits"] gains the summary (under the run lock)."""
    from ..rundir import RunLock, read_manifest, write_manifest, write_table
    from ..rundir.schema import columns

    cols = [c for c, *_ in columns("audit")]
    section = summary(ckpt, name, rows)
    with RunLock(run):
        write_table(run, "audit", {c: [_finite(r.get(c)) for r in rows] for c in cols})
        manifest = read_manifest(run)
        manifest["audits"] = [
            a for a in manifest.get("audits", []) if a["checkpoint"] != section["checkpoint"]
        ]
        manifest["audits"].append(section)
        write_manifest(run, manifest)
    return section
