"""llama.cpp importance matrices from a run: the GGUF layout and the legacy .dat.

An entry per matmul weight, named as llama.cpp names it (blk.0.attn_q.weight,
blk.3.ffn_down_exps.weight), holds for each of its n_mat matrices (1 for a dense
weight, the number of experts for a fused *_exps weight) sum x^2 and sum x per input
column and the number of rows (tokens, or token-expert pairs) that went in.

GGUF (what llama.cpp writes by default; `llama-quantize --imatrix` and
`llama-imatrix --in-file` read it):
    <name>.in_sum2   F32 ggml ne [n_in, n_mat]  sum x^2            (numpy (n_mat, n_in))
    <name>.counts    F32 ggml ne [1, n_mat]     rows per matrix
    <name>.in_sum    F32 ggml ne [n_in, n_mat]  sum x
    <name>.in_absmax F32 ggml ne [n_in, 1]      max|x| per input column, over every row the
                     weight saw: actscope's extra, which llama.cpp never records; its loader
                     only takes the three suffixes above and skips this one
    general.type = "imatrix", imatrix.datasets, imatrix.chunk_size (tokens per chunk: the
    run's max_length, llama.cpp's n_ctx), imatrix.chunk_count (llama.cpp's rows_to_chunks:
    the largest count / chunk_size, rounded to nearest)

Legacy .dat (ik_llama.cpp, older tools), byte for byte what `llama-imatrix --in-file
x.gguf --output-format dat` writes from the GGUF above: int32 entry count; per entry,
sorted by name, int32 name length, name, int32 ncall = ceil(max count / chunk_size),
int32 nval = n_mat * n_in, float32[nval] = (sum x^2 / count) * ncall, computed in float32
(1 * ncall for a matrix with count 0); trailer int32 chunk_count, int32 length, dataset.

MoE (experts.py): one matrix per expert with the exact per-expert row counts; experts
that no token reached have count 0 (llama-quantize then weighs their columns uniformly)
and are listed in the result, never written as silent zeros.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np

from .experts import moe_entries
from .imatrix_names import Entry, dense_entry, gguf_arch, gguf_tensor_names
from .rundata import RunView

log = logging.getLogger(__name__)


def dense_entries(view: RunView, linear: list[dict]) -> list[Entry]:
    """One single-matrix entry per hooked linear layer input (export.linear_inputs rows)."""
    names = gguf_tensor_names(view, [e["module"] for e in linear])
    return [dense_entry(names[e["module"]], e["channels"], e["tokens"]) for e in linear]


def all_entries(view: RunView, linear: list[dict]) -> list[Entry]:
    """Dense and per-expert entries, sorted by name as llama.cpp sorts them."""
    entries = dense_entries(view, linear) + moe_entries(view)
    seen: dict[str, Entry] = {}
    for e in entries:
        if e.name in seen:  # two modules on one llama.cpp name: the first one wins
            log.warning("%s: two run sites map to this llama.cpp weight; the first is written", e.name)
            continue
        seen[e.name] = e
    return [seen[k] for k in sorted(seen)]


def chunk_size(view: RunView) -> int:
    """Tokens per chunk: the run's max_length (llama.cpp: n_ctx / n_parallel)."""
    return int((view.manifest.get("settings") or {}).get("max_length") or 512)


def rows_to_chunks(rows: int, size: int) -> int:
    """llama.cpp's rows_to_chunks: rounded to nearest, not truncated."""
    return (int(rows) + size // 2) // size


def stored_counts(e: Entry) -> np.ndarray:
    """The counts as llama.cpp reads them back: float32 in the file, then lround."""
    return np.rint(e.counts.astype(np.float32).astype(np.float64)).astype(np.int64)


def chunk_count(entries: list[Entry], size: int) -> int:
    return rows_to_chunks(max(int(stored_counts(e).max()) for e in entries), size)


def dataset_name(view: RunView) -> str:
    return str((view.manifest.get("corpus") or {}).get("name", "actscope"))


def idle(entries: list[Entry]) -> dict[str, list[int]]:
    """entry name -> experts with no rows (dense entries never appear)."""
    return {e.name: np.flatnonzero(e.counts == 0).tolist() for e in entries if (e.counts == 0).any()}


def write_gguf(view: RunView, entries: list[Entry], out: Path) -> dict:
    import gguf

    size = chunk_size(view)
    w = gguf.GGUFWriter(str(out), arch=gguf_arch(view.model.get("model_type")))
    w.add_type("imatrix")
    w.add_array(gguf.Keys.IMatrix.DATASETS, [dataset_name(view)])
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, chunk_count(entries, size))
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, size)
    for e in entries:  # llama.cpp's own order: per entry in_sum2, counts, in_sum
        w.add_tensor(f"{e.name}.in_sum2", e.sum_sq.astype(np.float32))
        w.add_tensor(f"{e.name}.counts", e.counts.astype(np.float32)[:, None])
        w.add_tensor(f"{e.name}.in_sum", e.sums.astype(np.float32))
        w.add_tensor(f"{e.name}.in_absmax", e.absmax.astype(np.float32)[None, :])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"path": str(out), "format": "imatrix", "entries": len(entries), "idle_experts": idle(entries)}


def dat_values(e: Entry, ncall: int) -> np.ndarray:
    """(n_mat * n_in,) float32 (sum x^2 / count) * ncall, in float32 like llama.cpp."""
    v = e.sum_sq.astype(np.float32)  # what the GGUF holds
    c = stored_counts(e).astype(np.float32)[:, None]
    v = np.where(c == 0, np.float32(1), v)  # llama.cpp stores 1 for a matrix without data
    c = np.where(c == 0, np.float32(1), c)
    return ((v / c) * np.float32(ncall)).astype(np.float32).ravel()


def write_dat(view: RunView, entries: list[Entry], out: Path) -> dict:
    size = chunk_size(view)
    kept = [e for e in entries if (stored_counts(e) > 0).any()]  # llama.cpp skips empty entries
    for name in sorted({e.name for e in entries} - {e.name for e in kept}):
        log.warning("%s has no data (no token reached any of its experts); not in the .dat", name)
    parts = [struct.pack("<i", len(kept))]
    for e in kept:
        name = e.name.encode()
        ncall = -(-int(stored_counts(e).max()) // size)  # ceiling: no accidental zeros
        vals = dat_values(e, ncall)
        parts += [struct.pack("<i", len(name)), name, struct.pack("<ii", ncall, vals.size)]
        parts.append(vals.astype("<f4").tobytes())
    ds = dataset_name(view).encode()
    parts += [struct.pack("<ii", chunk_count(entries, size), len(ds)), ds]
    out.write_bytes(b"".join(parts))
    return {"path": str(out), "format": "imatrix-dat", "entries": len(kept), "idle_experts": idle(entries)}


def read_dat(path: str | Path) -> dict:
    """{"entries": {name: (ncall, float32 values)}, "chunk_count", "dataset"}: for tests and checks."""
    data = Path(path).read_bytes()
    (n,), pos = struct.unpack_from("<i", data), 4
    entries = {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4 : pos + 4 + ln].decode()
        ncall, nval = struct.unpack_from("<ii", data, pos + 4 + ln)
        pos += 12 + ln
        entries[name] = (ncall, np.frombuffer(data, dtype="<f4", count=nval, offset=pos))
        pos += 4 * nval
    chunks, ln = struct.unpack_from("<ii", data, pos)
    return {"entries": entries, "chunk_count": chunks, "dataset": data[pos + 8 : pos + 8 + ln].decode()}
