"""The run directory's tables from an accumulator's results: pure functions, one per table.

    results = collect(acc)                       # the statistics' public results, host values
    tables = build_tables(results, manifest, provenance)   # {name: pa.Table}, typed by schema.py

Provenance supplies what the statistics do not store: each sample's id, domain
and source, and the text of a top-k token and of the measured tokens around it.
measure() builds it from the corpus and the very token ids it measured
(MeasuredProvenance); merge builds it from the shards' own tables (TableProvenance),
without the tokenizer or the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..stats import histogram as H
from .schema import schema

CONTEXT_WIDTH = 8  # tokens shown on each side of a top-k token


@dataclass
class SiteResult:
    """Everything the statistics of one hooked site report (host values)."""

    scalars: dict = field(default_factory=dict)  # sites.parquet columns
    channels: dict[str, np.ndarray] = field(default_factory=dict)  # channels.parquet columns
    tables: dict[str, object] = field(default_factory=dict)  # "hist" / "topk" / "samples" data


@dataclass
class Results:
    stat_names: tuple[str, ...]
    sites: dict[str, SiteResult]  # hooked site -> results, in firing order
    sample_tokens: np.ndarray  # (n_samples,) tokens measured per sample


def collect(acc) -> Results:
    """The results of every statistic of every hooked site, through the statistics' public API."""
    sites = {}
    for name in acc.names:
        r = SiteResult()
        for s in acc.stats[name]:
            r.scalars.update(s.result())
        for s in acc.stats[name]:  # a statistic may read what those before it gave (channel_*)
            seen = {f"channel_{k}": v for k, v in r.channels.items()}
            r.channels.update(s.channel_result({**r.scalars, **seen}))
            if s.table is not None:
                r.tables[s.table] = s.table_data()
        sites[name] = r
    return Results(acc.stat_names, sites, acc.sample_tokens.cpu().numpy())


class MeasuredProvenance:
    """Sample metadata from the corpus; token text and context from the measured token ids."""

    def __init__(self, corpus, tok, seqs):
        self.samples = corpus.samples
        self.tok = tok
        self._ids: dict[int, list[tuple[int, list[int]]]] = {}
        for s in seqs:  # a sample's windows (--overflow window) in order of their offset
            self._ids.setdefault(s.sample, []).append((s.offset, list(s.ids)))

    def sample(self, i: int) -> tuple[str, str, str]:
        s = self.samples[i]
        return s.id, s.domain, s.source

    def n_samples(self) -> int:
        return len(self.samples)

    def texts(self, e: dict) -> tuple[str, str]:
        """(token text, context) of a top-k entry, from the ids measured at its sample and position."""
        token_text = self.tok.decode([e["token"]])
        ids, start = self._window_ids(e["sample"], e["pos"])
        if ids is None:
            return token_text, ""
        at = e["pos"] - start
        before = self.tok.decode(ids[max(0, at - CONTEXT_WIDTH) : at])
        after = self.tok.decode(ids[at + 1 : at + 1 + CONTEXT_WIDTH])
        return token_text, f"{before}[[{self.tok.decode([ids[at]])}]]{after}"

    def _window_ids(self, sample: int, pos: int) -> tuple[list[int] | None, int]:
        """The measured ids of the sample's consecutive windows joined, and where they start."""
        windows = sorted(self._ids.get(sample, []))
        ids: list[int] = []
        start = windows[0][0] if windows else 0
        for off, w in windows:
            if off != start + len(ids):  # not contiguous (should not happen): keep what holds pos
                if off <= pos:
                    ids, start = [], off
                else:
                    break
            ids += w
        return (ids, start) if start <= pos < start + len(ids) else (None, 0)


class TableProvenance:
    """Provenance read back from runs' own tables (merge: the shards' samples and topk tables)."""

    def __init__(self, views):
        t = views[0].samples
        self._meta = list(zip(*(t.column(c).to_pylist() for c in ("sample_id", "domain", "source"))))
        self._texts = {}
        for v in views:
            for r in v.topk:
                self._texts[(r["sample"], r["pos"])] = (r["token_text"], r["context"])

    def sample(self, i: int) -> tuple[str, str, str]:
        return self._meta[i]

    def n_samples(self) -> int:
        return len(self._meta)

    def texts(self, e: dict) -> tuple[str, str]:
        return self._texts[(e["sample"], e["pos"])]


def build_tables(results: Results, manifest: dict, prov) -> dict[str, pa.Table]:
    return {
        "sites": site_table(results, manifest),
        "channels": channel_table(results),
        "hist": hist_table(results),
        "topk": topk_table(results, prov),
        "samples": samples_table(results, prov),
    }


def site_table(results: Results, manifest: dict) -> pa.Table:
    """One row per site (aliases included, with their source's statistics), in firing order."""
    sch = schema("sites", results.stat_names)
    rows = []
    for m in manifest["sites"]:
        scalars = results.sites[m["alias_of"] or m["name"]].scalars
        rows.append(
            {"site": m["name"], "alias_of": m["alias_of"], **scalars}
            | {"kind": m["kind"], "layer": m["layer"], "module": m["module"], "note": m["note"]}
        )
    return pa.Table.from_pylist(rows, schema=sch)


def channel_table(results: Results) -> pa.Table:
    """One row per (hooked site, channel), sites contiguous and ordered by channel."""
    sch = schema("channels", results.stat_names)
    parts = []
    for name, r in results.sites.items():
        c = next(iter(r.channels.values())).shape[0] if r.channels else 0
        cols = {"site": pa.array([name] * c, pa.string()), "channel": pa.array(np.arange(c), pa.int64())}
        cols.update({k: pa.array(v) for k, v in r.channels.items()})
        parts.append(pa.table({f.name: cols[f.name].cast(f.type) for f in sch}, schema=sch))
    return pa.concat_tables(parts) if parts else sch.empty_table()


def hist_table(results: Results) -> pa.Table:
    """The nonzero bins of every hooked site's signed histogram, with their |a| edges."""
    cols: dict[str, list] = {k: [] for k in ("site", "bin", "sign", "lower", "upper", "count")}
    for name, r in results.sites.items():
        h = r.tables.get("hist")
        if h is None:
            continue
        nz = np.nonzero(h)[0]
        j = nz % H.HALF
        cols["site"] += [name] * len(nz)
        cols["bin"] += nz.tolist()
        cols["sign"] += np.where(nz >= H.HALF, -1, 1).tolist()
        cols["lower"] += H.EDGES[j].tolist()
        cols["upper"] += H.EDGES[np.minimum(j + 1, H.HALF)].tolist()
        cols["count"] += h[nz].tolist()
    return pa.Table.from_pydict(cols, schema=schema("hist"))


def topk_table(results: Results, prov) -> pa.Table:
    rows = []
    for name, r in results.sites.items():
        for rank, e in enumerate(r.tables.get("topk") or []):
            sample_id, domain, _ = prov.sample(e["sample"])
            token_text, context = prov.texts(e)
            rows.append(
                {
                    **e,
                    "site": name,
                    "rank": rank,
                    "sample_id": sample_id,
                    "domain": domain,
                    "token_text": token_text,
                    "context": context,
                }
            )
    return pa.Table.from_pylist(rows, schema=schema("topk"))


def samples_table(results: Results, prov) -> pa.Table:
    n = prov.n_samples()
    meta = [prov.sample(i) for i in range(n)]
    smax = {name: r.tables["samples"] for name, r in results.sites.items() if "samples" in r.tables}
    cols = {
        "sample": np.arange(n),
        "sample_id": [m[0] for m in meta],
        "domain": [m[1] for m in meta],
        "source": [m[2] for m in meta],
        "tokens": results.sample_tokens.astype(np.int64),
        **{name: v.astype(np.float64) for name, v in smax.items()},
    }
    return pa.Table.from_pydict(cols, schema=schema("samples", sites=list(smax)))
