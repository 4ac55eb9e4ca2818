"""The CPU kernel: native.c, built once with the system C compiler and cached.

Why a C kernel on the CPU: the statistics need about a dozen reductions over
every element (rows, columns and a histogram). torch.compile fuses the row
reductions well but reads the tensor again for the column ones and scatters the
histogram through atomics or an index tensor; one hand-written pass with private
per-thread histograms costs a third of that. It is the same work the torch
implementation does (kernels.torch_partials) and tests hold the two equal.

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
_OUT_FIELDS = ("tok_abs", "mkey", "ch_max", "ch_s1", "ch_s2", "ch_ge6", "ch_massive", "hist", "sd", "si")


class _Out(ctypes.Structure):
    _fields_ = [(f, _P) for f in _OUT_FIELDS]


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
    from ..models.cache import cache_root

    out_dir = cache_root() / "kernels"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        out_dir = Path(tempfile.gettempdir()) / f"actscope-kernels-{os.getuid()}"
        out_dir.mkdir(parents=True, exist_ok=True)
    lib = ctypes.CDLL(str(_compile(cc, out_dir, SOURCE.read_bytes())))
    lib.site_partials.argtypes = [_P, ctypes.c_int64, ctypes.c_int64, _P, ctypes.POINTER(_Out), ctypes.c_int]
    lib.site_partials.restype = ctypes.c_int
    lib.topk_merge.argtypes = [_P, ctypes.c_int64, _P, ctypes.c_int64, _P, _P, _P, _P, ctypes.c_int64] + [
        _P
    ] * 6
    lib.topk_merge.restype = ctypes.c_int64
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
        "mkey": torch.empty(R, dtype=f32),
        "ch_max": torch.empty(C, dtype=f32),
        "ch_s1": torch.empty(C, dtype=f64),
        "ch_s2": torch.empty(C, dtype=f64),
        "ch_ge6": torch.empty(C, dtype=i64),
        "ch_massive": torch.empty(C, dtype=i64),
        "hist": torch.empty(H.N_BINS, dtype=i64),
        "sd": torch.empty(6, dtype=f64),
        "si": torch.empty(5, dtype=i64),
    }
    o = _Out(*(out[f].data_ptr() for f in _OUT_FIELDS))
    keep = keep.contiguous() if keep is not None else None  # held until the call returns
    kp = keep.data_ptr() if keep is not None else None
    n = threads or THREADS.pick(torch.get_num_threads(), R * C)
    t = time.perf_counter()
    if lib.site_partials(x.data_ptr(), R, C, kp, ctypes.byref(o), n) != 0:
        return None
    if threads is None:
        THREADS.record(n, R * C, time.perf_counter() - t)
    return out


def topk_merge(
    x: torch.Tensor, tok_abs: torch.Tensor, rowmap: torch.Tensor | None, sample, pos, token, state
) -> bool:
    """Merge one batch's rows into top-k state arrays in place (native.c states the order).
    x: (full rows, C) float32 CPU; tok_abs, sample, pos, token: (N,) over real rows;
    rowmap: (N,) full-row index of each real row, or None; state: the six arrays of
    topk._FIELDS, contiguous. False if the kernel cannot run (nothing was changed)."""
    lib = library()
    if lib is None or not supports(x) or not x.is_contiguous():
        return False
    f32 = (tok_abs, *state[:2])
    i64 = [t for t in (sample, pos, token, rowmap, *state[2:]) if t is not None]
    if any(t.dtype != torch.float32 for t in f32) or any(t.dtype != torch.int64 for t in i64):
        return False
    if not all(t.is_contiguous() for t in state):  # updated in place
        return False
    tok_abs, sample, pos, token = (t.contiguous() for t in (tok_abs, sample, pos, token))
    rm = rowmap.contiguous() if rowmap is not None else None
    k = state[0].shape[0]
    lib.topk_merge(
        x.data_ptr(),
        x.shape[1],
        tok_abs.data_ptr(),
        tok_abs.shape[0],
        rm.data_ptr() if rm is not None else None,
        sample.data_ptr(),
        pos.data_ptr(),
        token.data_ptr(),
        k,
        *(t.data_ptr() for t in state),
    )
    return True
