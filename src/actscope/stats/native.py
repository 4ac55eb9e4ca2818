"""The CPU kernel: native.c, built once with the system C compiler and cached.

Why a C kernel on the CPU: the statistics need about a dozen reductions over
every element (rows, columns and a histogram). torch.compile fuses the row
reductions well but reads the tensor again for the column ones and scatters the
histogram through atomics or an index tensor; one hand-written pass with private
per-thread histograms costs a third of that. It is the same work the torch
implementation does (kernels.torch_partials) and tests hold the two equal.

Two calls: site_partials (the partials of kernels.Partials, for the contract and
its tests) and site_update (the measuring path: the partials folded straight into
the statistics' state, described once per site by a FoldTable, so that a site
costs one call and no torch ops).

The shared object is keyed by the source, compiler, flags and CPU, and lives in
the actscope cache (ACTSCOPE_CACHE, else ~/.cache/actscope). It links libgomp,
which resolves to the copy torch has already loaded, so its threads are torch's.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ..cache import cache_root
from . import histogram as H

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
FLAGS = [
    "-O3",
    "-fno-math-errno",
    "-fno-trapping-math",  # no -ffast-math: nan and inf must keep their meaning
    "-fno-strict-aliasing",  # histogram bins read the float rows as uint32
    "-std=c11",
    "-shared",
    "-fPIC",
    f"-DNB={H.N_BINS}",
    f"-DSHIFT={H.SHIFT32}",
]
# Tried in order: the cache key includes the CPU, so -march=native never serves another CPU;
# without OpenMP the kernel runs on one thread.
OPTIONAL = (["-march=native", "-fopenmp"], ["-fopenmp"], ["-fopenmp-simd"], [])
_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_OUT_FIELDS = (  # native.c out_t, in order
    "tok_abs", "ch_max", "ch_nonfinite", "ch_s1", "ch_s2", "ch_ge6", "ch_massive", "hist", "sd", "mom", "si"
)  # fmt: skip


class _Out(ctypes.Structure):
    _fields_ = [(f, _P) for f in _OUT_FIELDS]


class _Fold(ctypes.Structure):  # native.c fold_t
    _fields_ = [("slot", _I64), ("n", _I64), ("dst", _P)]


class _Batch(ctypes.Structure):  # native.c batch_t
    _fields_ = [("keep", _P), ("rowmap", _P), ("sample", _P), ("pos", _P), ("token", _P), ("n", _I64)]


# What each slot of native.c takes: dtype and length (C: channels, NB: histogram bins,
# n: corpus samples, k: the top-k size, any but the same for all six; () a scalar; an
# int: that many). native.c lists the names itself (slot_names), and the two must agree.
_f32, _f64, _i64 = torch.float32, torch.float64, torch.int64
SLOT_TYPES = {
    "elements": (_i64, ()),
    "tokens": (_i64, ()),
    "min": (_f64, ()),
    "max": (_f64, ()),
    "ch_absmax": (_f32, "C"),
    "ch_nonfinite": (_i64, "C"),
    "moments": (_f64, 5),  # count, mean, M2, M3, M4 (moments.py)
    "ch_s1": (_f64, "C"),
    "ch_s2": (_f64, "C"),
    "hist": (_i64, "NB"),
    **{f: (_i64, ()) for f in ("tokens_over_100", "candidates", "massive_elements", "massive_tokens")},
    "unchecked_tokens": (_i64, ()),
    "ch_ge6": (_i64, "C"),
    "ch_massive": (_i64, "C"),
    "sample_max": (_f32, "n"),  # n: samples in the corpus
    "topk_absval": (_f32, "k"),
    "topk_value": (_f32, "k"),
    **{f"topk_{f}": (_i64, "k") for f in ("sample", "pos", "channel", "token")},
}


_lib: ctypes.CDLL | None = None
_error: str | None = None


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def _compile(cc: str, out_dir: Path, src: bytes) -> Path:
    errors = []
    for extra in OPTIONAL:
        flags = FLAGS + extra
        key = hashlib.sha256(b"\0".join([src, cc.encode(), " ".join(flags).encode(), _cpu_id().encode()]))
        so = out_dir / f"site-{key.hexdigest()[:20]}.so"
        if so.exists():
            return so
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        res = subprocess.run([cc, *flags, str(SOURCE), "-o", str(tmp), "-lm"], capture_output=True, text=True)
        if res.returncode == 0:
            os.chmod(tmp, 0o755)
            os.replace(tmp, so)  # atomic: concurrent builders race harmlessly
            if extra != OPTIONAL[0]:
                log.info("native kernel built without %s", " ".join(OPTIONAL[0]))
            return so
        errors.append(res.stderr.strip()[-300:])
    raise RuntimeError(f"{cc} failed: {errors[-1] if errors else '?'}")


def _build() -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    out_dir = cache_root() / "kernels"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        out_dir = Path(tempfile.gettempdir()) / f"actscope-kernels-{os.getuid()}"
        out_dir.mkdir(parents=True, exist_ok=True)
    lib = ctypes.CDLL(str(_compile(cc, out_dir, SOURCE.read_bytes())))
    lib.site_partials.argtypes = [_P, _I64, _I64, _P, ctypes.POINTER(_Out), ctypes.c_int]
    lib.site_partials.restype = ctypes.c_int
    lib.site_update.argtypes = [_P, _I64, _I64, ctypes.POINTER(_Batch), _P, ctypes.c_int, ctypes.c_int]
    lib.site_update.restype = ctypes.c_int
    lib.slot_names.restype = ctypes.c_char_p
    names = tuple(lib.slot_names().decode().strip(",").split(","))
    if set(names) != set(SLOT_TYPES):
        raise RuntimeError(f"native.c slots {names} differ from native.py's")
    lib.slots = {name: i for i, name in enumerate(names)}
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on first use; None (with the reason in error()) if it cannot be."""
    global _lib, _error
    if _lib is None and _error is None:
        try:
            _lib = _build()
        except Exception as e:  # noqa: BLE001 - any failure means: use the torch implementation
            _error = f"{type(e).__name__}: {e}"
    return _lib


def error() -> str | None:
    return _error


def supports(x: torch.Tensor) -> bool:
    """(R, C) float32 CPU rows the kernel reads in place (uint32 counters bound the size)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2 and x.numel() < 2**32


class ThreadChoice:
    """One thread or all of torch's, whichever the kernel has recently run faster with.

    Results do not depend on the thread count (native.c), only speed does: on an idle
    machine all threads win, on one shared with other busy processes a single thread
    often does (a descheduled thread stalls the others at every fork and join). Costs
    are per element, per size class (small sites pay the fork/join more), as moving
    averages; the option not chosen is re-tried every EXPLORE calls.
    """

    EXPLORE = 32
    DECAY = 0.8

    def __init__(self):
        self.cost: dict[tuple[int, int], float] = {}
        self.calls = 0

    def pick(self, most: int, elements: int) -> int:
        if most <= 1:
            return 1
        size = elements.bit_length()
        self.calls += 1
        one, all_ = self.cost.get((1, size)), self.cost.get((most, size))
        if one is None or all_ is None:
            return 1 if one is None else most
        best, other = (1, most) if one <= all_ else (most, 1)
        return other if self.calls % self.EXPLORE == 0 else best

    def record(self, threads: int, elements: int, seconds: float) -> None:
        key = (threads, elements.bit_length())
        c = seconds / max(elements, 1)
        old = self.cost.get(key)
        self.cost[key] = c if old is None else self.DECAY * old + (1 - self.DECAY) * c


THREADS = ThreadChoice()


def _timed_call(fn, elements: int, threads: int | None) -> int:
    n = threads or THREADS.pick(torch.get_num_threads(), elements)
    t = time.perf_counter()
    rc = fn(n)
    if threads is None and rc == 0:
        THREADS.record(n, elements, time.perf_counter() - t)
    return rc


def site_partials(
    x: torch.Tensor, keep: torch.Tensor | None, threads: int | None = None
) -> dict[str, torch.Tensor] | None:
    """The partials of kernels.Partials for (R, C) float32 CPU rows; keep: (R,) uint8 or None.
    threads: None to let THREADS choose. None if the kernel is unavailable or out of memory."""
    lib = library()
    if lib is None:
        return None
    x = x.contiguous()
    R, C = x.shape
    f32, f64, i64 = torch.float32, torch.float64, torch.int64
    out = {
        "tok_abs": torch.empty(R, dtype=f32),
        "ch_max": torch.empty(C, dtype=f32),
        "ch_nonfinite": torch.empty(C, dtype=i64),
        "ch_s1": torch.empty(C, dtype=f64),
        "ch_s2": torch.empty(C, dtype=f64),
        "ch_ge6": torch.empty(C, dtype=i64),
        "ch_massive": torch.empty(C, dtype=i64),
        "hist": torch.empty(H.N_BINS, dtype=i64),
        "sd": torch.empty(2, dtype=f64),
        "mom": torch.empty(5, dtype=f64),
        "si": torch.empty(5, dtype=i64),
    }
    o = _Out(*(out[f].data_ptr() for f in _OUT_FIELDS))
    keep = keep.contiguous() if keep is not None else None  # held until the call returns
    kp = keep.data_ptr() if keep is not None else None
    rc = _timed_call(lambda n: lib.site_partials(x.data_ptr(), R, C, kp, ctypes.byref(o), n), R * C, threads)
    return out if rc == 0 else None


class BatchTable:
    """The provenance of one batch's real rows (stats.base.BatchContext) as native.c reads it;
    holds the tensors it points to."""

    def __init__(self, ctx, n_samples: int):
        self.tensors = [t.to("cpu", torch.int64).contiguous() for t in (ctx.sample, ctx.pos, ctx.token)]
        sample, n = self.tensors[0], self.tensors[0].shape[0]
        if n and (int(sample.min()) < 0 or int(sample.max()) >= n_samples):
            raise ValueError(f"sample index outside [0, {n_samples})")
        self.rows = ctx.batch * ctx.seq
        keep = rowmap = None
        if ctx.rows is not None:
            rowmap = ctx.rows.to("cpu", torch.int64).contiguous()
            if n != rowmap.shape[0] or (n and (int(rowmap.min()) < 0 or int(rowmap.max()) >= self.rows)):
                raise ValueError("padding row map does not match the batch")
            keep = ctx.keep.to("cpu", torch.uint8).contiguous()
            self.tensors += [rowmap, keep]
        elif n != self.rows:
            raise ValueError("provenance of an unpadded batch must cover every row")
        optional = [t.data_ptr() if t is not None else None for t in (keep, rowmap)]
        self.struct = _Batch(*optional, *(t.data_ptr() for t in self.tensors[:3]), n)


class FoldTable:
    """Where one site's statistics receive the kernel's results: (slot, state tensor) pairs,
    checked once (dtype, length, contiguity) and handed to native.c as one array."""

    def __init__(self, lib, channels: int, n_samples: int, pairs: list[tuple[str, torch.Tensor]]):
        lengths = {"C": channels, "NB": H.N_BINS, "n": n_samples}
        self.tensors = [t for _, t in pairs]  # holds what the table points to
        k = {t.numel() for slot, t in pairs if slot.startswith("topk_")}
        if len(k) > 1:
            raise ValueError("top-k state arrays of different lengths")
        entries = []
        for slot, t in pairs:
            dtype, length = SLOT_TYPES[slot]
            want = (
                length if isinstance(length, int) else 1 if length == () else lengths.get(length, t.numel())
            )
            if t.dtype != dtype or t.device.type != "cpu" or not t.is_contiguous() or t.numel() != want:
                raise ValueError(
                    f"state for native slot {slot!r}: {t.dtype} x{t.numel()}, wants {dtype} x{want}"
                )
            entries.append((lib.slots[slot], t.numel(), t.data_ptr()))
        self.array = (_Fold * len(entries))(*entries)
        self.n = len(entries)


def site_update(x: torch.Tensor, batch: BatchTable, folds: FoldTable, threads: int | None = None) -> bool:
    """Fold one batch of one site, (R, C) float32 CPU rows, into the state tensors of `folds`.
    False if the kernel is unavailable or out of memory (nothing was changed)."""
    lib = library()
    if lib is None or not supports(x) or x.shape[0] != batch.rows:
        return False
    x = x.contiguous()
    R, C = x.shape
    xp, bp, fp = x.data_ptr(), ctypes.byref(batch.struct), folds.array
    rc = _timed_call(lambda n: lib.site_update(xp, R, C, bp, fp, folds.n, n), R * C, threads)
    if rc == -2:
        raise RuntimeError("native.c rejected a fold table (a bug: FoldTable checks them)")
    return rc == 0
