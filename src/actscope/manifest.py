"""The run manifest (run.json) as measure() first writes it."""

from __future__ import annotations

import hashlib
import json
import platform
import time

import torch

from . import __version__
from .results import SCHEMA_VERSION


def build_manifest(cfg, loaded, corpus, tcfg, plan, probe, seqs, device) -> dict:
    import transformers

    sites = [
        {
            "name": b.site.name,
            "kind": b.site.kind,
            "layer": b.site.layer,
            "module": b.module_path,
            "point": b.site.point,
            "note": b.note,
            "alias_of": probe.aliases.get(name),
            "channels": probe.channels.get(probe.aliases.get(name, name)),
        }
        for name, b in probe.usable.items()
    ]
    settings = {
        "dtype": str(next(loaded.model.parameters()).dtype).replace("torch.", ""),
        "chat_template": cfg.chat_template,
        "bos": tcfg.bos,
        "max_length": tcfg.max_length,
        "overflow": tcfg.overflow,
        "token_budget": cfg.token_budget,
        "max_batch": cfg.max_batch,
        "statistics": list(cfg.statistics),
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
        "corpus": {"name": corpus.name, "hash": corpus.hash, "samples": len(corpus), **corpus.manifest},
        "settings": settings,
        "architecture": {
            "model_type": plan.model_type,
            "adapter": plan.table_name,
            "layers": plan.n_layers,
            "kinds_found": plan.kinds(),
            "kinds_missing": plan.missing_kinds,
            "kinds_absent": plan.absent_kinds,
        },
        "sites": sites,
        "aliases": probe.aliases,
        "dropped_sites": probe.dropped,
        "sequences": len(seqs),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": str(device),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
