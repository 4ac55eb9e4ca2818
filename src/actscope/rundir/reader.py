"""Reading a run directory: the manifest, the tables and the state, each checked as it is read.

RunView is the one reader that show, report, compare, card, export, merge and quant
use. It reads run.json and the Parquet tables (never the model); it can also wrap
tables still in memory (RunView.of), which is how measure() computes the summary
from exactly what it is about to write.

Aliased sites (one tensor seen under several names, e.g. q/k/v_proj inputs that
are the input norm's output) have a row in sites.parquet but store their
per-channel and histogram data under the source site's name: `source(name)`
resolves that.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..errors import RunDirError
from ..stats import histogram as H
from .manifest import check
from .schema import MANIFEST, STATE, schema

# Columns a table must have for the views to read it (all the others are optional).
REQUIRED = {
    "sites": ("site", "alias_of", "kind", "layer", "module", "absmax", "tokens", "channels", "elements"),
    "channels": ("site", "channel"),
    "samples": ("sample", "sample_id", "domain", "source", "tokens"),
    "quant": ("site", "kind", "scheme", "sqnr_db"),
}


def read_manifest(run: str | Path) -> dict:
    path = Path(run) / MANIFEST
    if not path.is_file():
        raise RunDirError(
            f"{run} is not an actscope run directory (no {MANIFEST})",
            "give the --out directory of a measure run",
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(f"{path} is corrupt (not JSON)", "re-run the measurement") from None
    except OSError as e:
        raise RunDirError(
            f"cannot read {path} ({e.strerror})", "check the path and its permissions"
        ) from None
    return check(manifest, path)


def read_table(run: str | Path, name: str) -> pa.Table:
    """A table of the run, checked against its schema (fixed columns; variable ones by prefix)."""
    path = Path(run) / f"{name}.parquet"
    if not path.is_file():
        raise RunDirError(f"{run} has no {name} table", "the run may be incomplete; resume it with --resume")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise RunDirError(
            f"{path} is damaged ({str(e).splitlines()[0][:80]})", "re-run the measurement"
        ) from None
    _check_columns(path, name, table)
    return table


def _check_columns(path: Path, name: str, table: pa.Table) -> None:
    """The columns every reader relies on must be there with their types (the rest may vary:
    sites and channels by the statistics measured, samples by the sites, quant by the schemes)."""
    want = [f for f in schema(name) if f.name in REQUIRED[name]] if name in REQUIRED else list(schema(name))
    have = table.schema
    for field in want:
        i = have.get_field_index(field.name)
        if i < 0:
            raise RunDirError(f"{path} is damaged (no column {field.name!r})", "re-run the measurement")
        t = have.field(i).type
        if t != field.type and not pa.types.is_null(t):
            raise RunDirError(
                f"{path} is damaged (column {field.name!r} is {t}, expected {field.type})",
                "re-run the measurement",
            )


def load_state(out: Path, name: str = STATE) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(out) / name
    if not path.exists():
        raise RunDirError(f"{out} has no checkpoint to resume from", "start the run again without --resume")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        return load_file(str(path)), meta
    except Exception:
        raise RunDirError(
            f"checkpoint {path} is corrupt", "delete it and start the run again without --resume"
        ) from None


class RunView:
    """A read-only view of one run: run.json and its tables (from disk, or in memory)."""

    def __init__(self, path: str | Path, manifest: dict | None = None, tables: dict | None = None):
        self.path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        self._mem: dict[str, pa.Table] = dict(tables or {})

    @classmethod
    def measured(cls, path: str | Path) -> RunView:
        """A view of a finished measurement, for the views that present one as a result (report,
        card, compare, export): interrupted, running, quant-only and empty runs are refused."""
        view = cls(path)
        status, m = view.status, view.manifest
        if status in ("running", "interrupted"):
            raise RunDirError(
                f"{path} is an unfinished run (status {status})",
                "finish it with the same `actscope measure` command and --resume",
            )
        if status == "quant-only" or "summary" not in m:
            raise RunDirError(
                f"{path} holds no measurement (status {status})", "run `actscope measure` into it first"
            )
        if (m.get("tokens") or {}).get("measured") == 0:
            raise RunDirError(f"{path} measured no token", "measure a corpus (or shard) that has samples")
        if view.summary.get("M") is None:
            raise RunDirError(
                f"{path} holds no finite activation (every value was inf or nan)",
                "measure in float32 or bfloat16",
            )
        return view

    @property
    def partial(self) -> bool:
        """A merge of some shards only (status partial): its numbers cover part of the corpus."""
        return self.status == "partial"

    @classmethod
    def of(cls, path, manifest: dict, tables: dict[str, pa.Table]) -> RunView:
        """A view of tables not written yet (measure and merge compute the summary from it)."""
        return cls(path, manifest, tables)

    def table(self, name: str) -> pa.Table:
        """Any run-directory table as a pyarrow Table (sites, channels, hist, topk, samples, quant ...)."""
        if name not in self._mem:
            self._mem[name] = read_table(self.path, name)
        return self._mem[name]

    def has_table(self, name: str) -> bool:
        return name in self._mem or (self.path / f"{name}.parquet").is_file()

    # ---- manifest ---------------------------------------------------------------
    @property
    def summary(self) -> dict:
        return self.manifest.get("summary") or {}

    @property
    def status(self) -> str:
        return self.manifest["status"]

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

    @property
    def deployments(self) -> list[dict]:
        """Checkpoints `actscope deploy` wrote from this run (run.json "deployments"), oldest first."""
        d = self.manifest.get("deployments")
        return d if isinstance(d, list) else []

    @property
    def audits(self) -> list[dict]:
        """Checkpoints `actscope audit` judged against this run (run.json "audits"); rows in audit.parquet."""
        a = self.manifest.get("audits")
        return a if isinstance(a, list) else []

    @cached_property
    def audit_table(self) -> list[dict] | None:
        """Rows of audit.parquet (the latest audit, worst first), if present."""
        return self.table("audit").to_pylist() if self.has_table("audit") else None

    # ---- tables -----------------------------------------------------------------
    @cached_property
    def sites(self) -> list[dict]:
        """sites.parquet rows, in firing order (aliases included)."""
        return self.table("sites").to_pylist()

    @cached_property
    def topk(self) -> list[dict]:
        return self.table("topk").to_pylist()

    @cached_property
    def topk_by_site(self) -> dict[str, list[dict]]:
        """site -> its top-k rows, largest first."""
        out: dict[str, list[dict]] = {}
        for r in self.topk:
            out.setdefault(r["site"], []).append(r)
        return out

    @cached_property
    def samples(self) -> pa.Table:
        return self.table("samples")

    def sample_max(self) -> dict[str, np.ndarray]:
        """hooked site -> (n_samples,) max|a| per sample (-1: not measured)."""
        fixed = {"sample", "sample_id", "domain", "source", "tokens"}
        t = self.samples
        return {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.schema.names if c not in fixed}

    @cached_property
    def _channels(self) -> dict[str, dict[str, np.ndarray]]:
        t = self.table("channels")
        site = np.asarray(t.column("site").to_pylist(), dtype=object)
        cols = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.schema.names if c != "site"}
        out: dict[str, dict[str, np.ndarray]] = {}
        # Rows of one site are contiguous and ordered by channel (tables.channel_table).
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
        t = self.table("hist")
        site = t.column("site").to_pylist()
        bins = t.column("bin").to_numpy()
        counts = t.column("count").to_numpy()
        order = {name: i for i, name in enumerate(dict.fromkeys(site))}
        idx = np.fromiter((order[s] for s in site), dtype=np.int64, count=len(site))
        if len(bins) and (bins.min() < 0 or bins.max() >= H.N_BINS):
            raise RunDirError(
                f"{self.path}/hist.parquet is damaged (bin out of range)", "re-run the measurement"
            )
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
        return self.table("quant").to_pylist() if self.has_table("quant") else None
