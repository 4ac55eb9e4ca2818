"""run.json: how it is built (measure, quant-only, merge) and what a reader may rely on.

The *_SPEC tables are the typed shape of the manifest, by status: every key a report, merge, export or
quant path reads, with its type. read_manifest() checks a file against it, so a
damaged or hand-edited run.json is one clear error, never a KeyError or a
TypeError deep inside a report. Builders below are the only places that make one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time

from ..errors import RunDirError
from .schema import SCHEMA_VERSION

STATUSES = ("running", "interrupted", "complete", "partial", "quant-only")
NUM = (int, float)
OPT_NUM = (int, float, type(None))
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))

# key -> type(s) or a nested spec: a dict (an object with these keys; "*": every value), a
# one-element list (a list of such items); a key ending in "?" may be absent.
SITE_SPEC = {
    "name": str,
    "kind": str,
    "layer": OPT_INT,
    "module": OPT_STR,
    "alias_of": OPT_STR,
    "channels?": OPT_INT,
    "heads?": OPT_INT,
}
LOCATION_SPEC = {
    "site": str,
    "kind": str,
    "layer": OPT_INT,
    "channel": int,
    "sample": int,
    "sample_id": str,
    "domain": str,
    "position": int,
    "token_id": int,
    "token_text": str,
    "context": str,
}
# The summary of a run that measured something (summary.summarize); {"M": null, "note": ...} otherwise.
SUMMARY_SPEC = {
    "M": NUM,
    "M_signed": NUM,
    "M_lower_bound": bool,
    "location": LOCATION_SPEC,
    "carrier_kinds": [str],
    "residual_max": OPT_NUM,
    "residual_carries_M": bool,
    "safety": {
        "fp16_safe": bool,
        "fp16_headroom": OPT_NUM,
        "sites_over_fp16": [str],
        "sites_over_fp8_e4m3": int,
        "sites_over_fp8_e5m2": int,
    },
    "nonfinite": {
        "nan": int,
        "posinf": int,
        "neginf": int,
        "first_site": OPT_STR,
        "first_layer": OPT_INT,
        "overflowed": bool,
        "advice": OPT_STR,
    },
    "massive": {
        "per_token_median": {"elements": int, "token_sites": int, "lower_bound": bool},
        "layer_median": {"elements_lo": int, "elements_hi": int},
        "criterion": str,
    },
    "outlier_features": {"channels": [int], "site_kind": str, "criterion?": str},
    "per_layer": {"*": [list]},
    "experts": (dict, type(None)),
    "domains": {"*": NUM},
    "domains_by_kind": {"*": {"*": NUM}},
    "bootstrap": [
        {"n": int, "resamples": int, "lo95": NUM, "median": NUM, "hi95": NUM, "p_reach_full_M": NUM}
    ],
    "quantile_rel_error": NUM,
}
BASE_SPEC = {
    "schema_version": int,
    "status": str,
    "model": {"source": str, "model_type?": OPT_STR, "n_params?": OPT_INT, "note?": OPT_STR},
    "corpus": {"name": str, "hash": str, "samples?": int},
    "settings": {"dtype?": OPT_STR, "bos?": str},
    "quant?": dict,
}
# What a measurement adds (statuses running, interrupted, complete, partial) ...
MEASURE_SPEC = {
    **BASE_SPEC,
    "fingerprint": str,
    "settings": {"dtype": str, "bos": str, "max_length": int, "statistics": [str]},
    "corpus": {"name": str, "hash": str, "samples": int},
    "sites": [SITE_SPEC],
    "aliases": {"*": str},
    "architecture": {"model_type": OPT_STR, "kinds_found": [str]},
    "environment": {"device": str},
    "shard?": (list, type(None)),
}
# ... and a finished one (complete, partial).
COMPLETE_SPEC = {
    **MEASURE_SPEC,
    "tokens": {"measured": int, "samples": int, "padding_fraction": NUM, "batches": int},
    "summary": dict,
}
SPECS = {"quant-only": BASE_SPEC, "running": MEASURE_SPEC, "interrupted": MEASURE_SPEC}


def validate(manifest, spec, where: str = "run.json") -> None:
    """Raise ValueError naming the first key that is missing or of the wrong type."""
    if isinstance(spec, list):
        if not isinstance(manifest, list):
            raise ValueError(f"{where} is {_tname(manifest)}, not a list")
        for i, item in enumerate(manifest):
            validate(item, spec[0], f"{where}[{i}]")
        return
    if isinstance(spec, dict):
        if not isinstance(manifest, dict):
            raise ValueError(f"{where} is {_tname(manifest)}, not an object")
        if list(spec) == ["*"]:
            for key, value in manifest.items():
                validate(value, spec["*"], f"{where}.{key}")
            return
        for key, sub in spec.items():
            name, optional = key.rstrip("?"), key.endswith("?")
            if name not in manifest:
                if optional:
                    continue
                raise ValueError(f"{where} lacks {name!r}")
            validate(manifest[name], sub, f"{where}.{name}")
        return
    types = spec if isinstance(spec, tuple) else (spec,)
    ok = isinstance(manifest, types) and not (isinstance(manifest, bool) and bool not in types)
    if not ok:
        raise ValueError(f"{where} is {_tname(manifest)}, expected {' or '.join(_tname(t) for t in types)}")


def _tname(v) -> str:
    t = v if isinstance(v, type) else type(v)
    return {type(None): "null", dict: "an object", list: "a list", str: "a string"}.get(t, t.__name__)


def check(manifest, path) -> dict:
    """The manifest if it is one this actscope reads; else a RunDirError naming the problem."""
    if not isinstance(manifest, dict):
        raise RunDirError(f"{path} is damaged (not a JSON object)", "re-run the measurement")
    version = manifest.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise RunDirError(
            f"{path} has run schema {version!r}, newer than this actscope reads ({SCHEMA_VERSION})",
            "upgrade actscope",
        )
    status = manifest.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        raise RunDirError(f"{path} has an unknown status {status!r}", "re-run the measurement")
    try:
        validate(manifest, SPECS.get(status, COMPLETE_SPEC))
        if status in ("complete", "partial") and manifest["summary"].get("M") is not None:
            validate(manifest["summary"], SUMMARY_SPEC, "run.json.summary")
    except ValueError as e:
        raise RunDirError(f"{path} is damaged: {e}", "re-run the measurement (or restore run.json)") from None
    return manifest


def measure_manifest(cfg, loaded, corpus, tcfg, plan, probe, seqs, device) -> dict:
    """run.json as measure() first writes it (status running)."""
    from .. import __version__
    from ..engine import model_dtype
    from ..stats import DEFAULT_STATISTICS

    settings = {
        "dtype": model_dtype(loaded.model),
        "chat_template": cfg.chat_template,
        "bos": tcfg.bos,
        "max_length": tcfg.max_length,
        "overflow": tcfg.overflow,
        "token_budget": cfg.token_budget,
        "max_batch": cfg.max_batch,
        "statistics": list(DEFAULT_STATISTICS),
        "sites": cfg.sites,
        "limit": cfg.limit,
    }
    fingerprint = hashlib.sha256(
        json.dumps(
            [loaded.info.get("sha256"), corpus.hash, settings, list(probe.channels)], sort_keys=True
        ).encode()
    ).hexdigest()
    return {
        "schema_version": SCHEMA_VERSION,
        "actscope_version": __version__,
        "status": "running",
        "fingerprint": fingerprint,
        "model": loaded.info,
        "corpus": corpus_entry(corpus),
        "settings": settings,
        "architecture": {
            "model_type": plan.model_type,
            "adapter": plan.table_name,
            "layers": plan.n_layers,
            "kinds_found": plan.kinds(),
            "kinds_missing": plan.missing_kinds,
            "kinds_absent": plan.absent_kinds,
        },
        "sites": site_entries(probe),
        "aliases": probe.aliases,
        "dropped_sites": probe.dropped,
        "sequences": len(seqs),
        "environment": environment(device),
        "started": now(),
    }


def site_entries(probe) -> list[dict]:
    """Every usable site (hooked and aliases) in firing order, as run.json lists them."""
    return [
        {
            "name": b.site.name,
            "kind": b.site.kind,
            "layer": b.site.layer,
            "module": b.module_path,
            "point": b.site.point,
            "note": b.note,
            "alias_of": probe.aliases.get(name),
            "channels": probe.channels.get(probe.aliases.get(name, name)),
            "heads": probe.heads.get(name),
        }
        for name, b in probe.usable.items()
    ]


def environment(device) -> dict:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "platform": platform.platform(),
    }


def corpus_entry(corpus) -> dict:
    return {"name": corpus.name, "hash": corpus.hash, "samples": len(corpus), **corpus.manifest}


def quant_only_manifest(loaded, corpus, bos: str) -> dict:
    """run.json of a directory that `actscope quant MODEL` creates (no measurement yet)."""
    from ..engine import model_dtype

    return {
        "schema_version": SCHEMA_VERSION,
        "status": "quant-only",
        "model": loaded.info,
        "corpus": corpus_entry(corpus),
        "settings": {"bos": bos, "dtype": model_dtype(loaded.model)},
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
