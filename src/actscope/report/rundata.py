"""A read-only view of one run directory for the report, compare, card and export views.

Everything here comes from run.json and the Parquet tables; no model is loaded.
Aliased sites (one tensor seen under several names, e.g. q/k/v_proj inputs that
are the input norm's output) have a row in sites.parquet but store their
per-channel and histogram data under the source site's name: `source(name)`
resolves that.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import numpy as np

from ..results import read_manifest, read_table
from ..stats import histogram as H


class RunView:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)

    # ---- manifest ---------------------------------------------------------------
    @property
    def summary(self) -> dict:
        return self.manifest.get("summary") or {}

    @property
    def model(self) -> dict:
        return self.manifest.get("model") or {}

    @property
    def label(self) -> str:
        """A short model name: the built-in name, or the last part of a path or repo id."""
        src = self.model.get("source") or self.model.get("path") or self.path.name
        return re.sub(r"\.gguf$", "", str(src).rstrip("/").split("/")[-1])

    @property
    def dtype(self) -> str:
        return (self.manifest.get("settings") or {}).get("dtype") or self.model.get("dtype") or "?"

    @property
    def family(self) -> str:
        """model_type without the text-backbone / MoE suffixes: gemma3_text -> gemma3."""
        mt = (
            self.model.get("model_type") or (self.manifest.get("architecture") or {}).get("model_type") or "?"
        )
        return re.sub(r"(_text|_moe)$", "", mt)

    @property
    def is_moe(self) -> bool:
        kinds = (self.manifest.get("architecture") or {}).get("kinds_found") or []
        return "router" in kinds or "expert" in kinds

    @property
    def n_params(self) -> int | None:
        return self.model.get("n_params")

    @cached_property
    def site_meta(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.manifest.get("sites", [])}

    def source(self, site: str) -> str:
        """The site whose per-channel and histogram data this site shares."""
        meta = self.site_meta.get(site) or {}
        return meta.get("alias_of") or (self.manifest.get("aliases") or {}).get(site) or site

    @property
    def quant(self) -> dict | None:
        q = self.manifest.get("quant")
        return q if isinstance(q, dict) and q else None

    # ---- tables -----------------------------------------------------------------
    @cached_property
    def sites(self) -> list[dict]:
        """sites.parquet rows, in firing order (aliases included)."""
        return read_table(self.path, "sites").to_pylist()

    @cached_property
    def topk(self) -> list[dict]:
        return read_table(self.path, "topk").to_pylist()

    @cached_property
    def samples(self):
        return read_table(self.path, "samples")

    @cached_property
    def _channels(self) -> dict[str, dict[str, np.ndarray]]:
        t = read_table(self.path, "channels")
        site = np.asarray(t.column("site").to_pylist(), dtype=object)
        cols = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.schema.names if c != "site"}
        out: dict[str, dict[str, np.ndarray]] = {}
        # Rows of one site are contiguous and ordered by channel (summary._write_channels).
        bounds = np.flatnonzero(site[1:] != site[:-1]) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(site)], strict=True):
            if hi > lo:
                out[site[lo]] = {c: v[lo:hi] for c, v in cols.items()}
        return out

    def channels(self, site: str) -> dict[str, np.ndarray] | None:
        """Per-channel arrays (absmax, mean, rms, sum_sq, massive, ge6) of a site, alias-resolved."""
        return self._channels.get(self.source(site))

    @cached_property
    def _hist(self) -> dict[str, np.ndarray]:
        t = read_table(self.path, "hist")
        site = t.column("site").to_pylist()
        bins = t.column("bin").to_numpy()
        counts = t.column("count").to_numpy()
        order = {name: i for i, name in enumerate(dict.fromkeys(site))}
        idx = np.fromiter((order[s] for s in site), dtype=np.int64, count=len(site))
        stacked = np.zeros((len(order), H.N_BINS), dtype=np.int64)  # (sites, bins)
        np.add.at(stacked, (idx, bins), counts)
        return {name: stacked[i] for name, i in order.items()}

    def hist(self, site: str) -> np.ndarray | None:
        """The full (N_BINS,) signed histogram of a site, alias-resolved."""
        return self._hist.get(self.source(site))

    def hooked_sites(self) -> list[dict]:
        """Site rows that hold their own data (no aliases), with a finite max|a|."""
        return [r for r in self.sites if r["alias_of"] is None and r["absmax"] is not None]

    def kinds(self) -> list[str]:
        """Site kinds present, in first-firing order."""
        return list(dict.fromkeys(r["kind"] for r in self.sites))

    def kind_hist(self, kind: str) -> np.ndarray:
        """The histogram of all of a kind's (non-alias) sites together."""
        total = np.zeros(H.N_BINS, dtype=np.int64)
        for r in self.sites:
            if r["kind"] == kind and r["alias_of"] is None and (h := self.hist(r["site"])) is not None:
                total += h
        return total

    @cached_property
    def quant_table(self) -> list[dict] | None:
        """Rows of quant.parquet (written by `actscope quant`), if present."""
        path = self.path / "quant.parquet"
        if not path.exists():
            return None
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()


def split_context(context: str | None) -> tuple[str, str, str]:
    """'before[[tok]]after' -> (before, tok, after); the peak token marked by summary._context."""
    if not context:
        return "", "", ""
    i = context.find("[[")
    j = context.find("]]", i + 2)
    if i < 0 or j < 0:
        return context, "", ""
    return context[:i], context[i + 2 : j], context[j + 2 :]


def massive_channels(view: RunView, kind: str = "residual") -> list[dict]:
    """Channels holding massive activations (per-token-median criterion) at sites of `kind`,
    with the number of layers and elements, most frequent first."""
    per: dict[int, dict] = {}
    for r in view.hooked_sites():
        if r["kind"] != kind:
            continue
        ch = view.channels(r["site"])
        if ch is None:
            continue
        for c in np.flatnonzero(ch["massive"] > 0):
            e = per.setdefault(int(c), {"channel": int(c), "layers": 0, "elements": 0, "absmax": 0.0})
            e["layers"] += 1
            e["elements"] += int(ch["massive"][c])
            e["absmax"] = max(e["absmax"], float(ch["absmax"][c]))
    return sorted(per.values(), key=lambda e: (-e["elements"], e["channel"]))
