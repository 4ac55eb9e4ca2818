"""The fused statistics kernels against a plain reference, and against each other.

native (C, CPU), compiled (torch.compile) and eager (torch ops) must give the
same Partials as `reference` below, which computes every field the obvious way
in numpy, token by token: exact for extremes, counts, histogram and massive
activations; sums and moments (float64 in all three) to 1e-9 of what could cancel
(the sum of |terms|).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from actscope.stats import histogram as H
from actscope.stats import kernels, native
from actscope.stats.accumulator import Accumulator
from actscope.stats.base import BatchContext
from actscope.stats.kernels import FIELDS, Partials, site_partials
from actscope.stats.topk import batch_top, select_top

STATS = ("extrema", "moments", "histogram", "topk", "massive", "samples")
EXACT = ("tok_abs", "ch_max", "ch_nonfinite", "ch_ge6", "ch_massive", "hist", "sd", "si")
needs_native = pytest.mark.skipif(native.library() is None, reason=f"no native kernel: {native.error()}")


def heavy_rows(R, C, seed, nonfinite=True):
    """Student-t rows with a spread of scales, massive tokens, zeros, subnormals, inf and nan."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.distributions.StudentT(2.0).sample((R, C)) * torch.rand(R, 1, generator=g) * 4
    x[0] = 0.01 * torch.randn(C, generator=g)  # a BOS-like token: one huge element, tiny median
    x[0, 3] = 2500.0
    x[1, :] = 1.0
    x[1, 5] = 150.0  # > 100 but not 1000 x its median
    x[2, 1] = -700.0
    x[2, 2:] = 1e-4
    x[3, 0], x[3, 1] = 1e-42, -0.0  # subnormal, negative zero
    if C >= 40 and R > 8:  # candidates whose median is 0.5: elements >= 500 are massive
        x[7] = 0.5
        x[7, 10:30] = torch.logspace(math.log10(150), 6, 20)  # many > 100: the quickselect path
        x[8, :32], x[8, 32:] = -0.5, 50.0  # the lower median (32nd of 64 smallest) is 0.5
        x[8, [33, 39, 47, 51, 60]] = torch.tensor([150.0, 499.9, 500.0, -501.0, 2e5])  # 500: both boundaries
    if nonfinite:
        x[4, 2] = float("nan")
        x[5, 0], x[5, 1] = float("inf"), float("-inf")
        x[6, C - 1] = float("inf")
    return x


def adversarial_rows(R, C, seed):
    """heavy_rows plus what the audit of issue 14 threw at the kernels: nan and inf in the
    first element (the moments' shift must skip them), a row with no finite element, a
    constant row, a row of mean 1000 and sd 0.1, cancelling magnitudes near float32's top,
    values in the top float32 bin, and a median of 0.2f with 200 and its next float above
    (1000 x 0.2f > 200 exactly, though the float32 product is 200)."""
    assert R >= 24 and C >= 40
    x = heavy_rows(R, C, seed)
    g = torch.Generator().manual_seed(seed)
    x[9, 0], x[9, 5] = float("nan"), float("-inf")
    x[10] = float("inf")
    x[10, 1::2] = float("nan")
    x[11] = 7.77
    x[12] = 1000 + 0.1 * torch.randn(C, generator=g)
    x[13] = torch.randn(C, generator=g)
    x[13, 0], x[13, 1], x[13, 2] = 3e38, -3e38, 3.39e38
    x[14] = 0.2
    x[14, C // 2 + 1 :] = 0.25
    x[14, 3], x[14, 4] = 200.0, float(np.nextafter(np.float32(200), np.float32(np.inf)))
    x[15] = x[14]
    x[15, 4] = 0.2  # its max is exactly 200: not even a candidate
    x[16, 2] = float("inf")  # an inf in a row whose other elements are ordinary
    return x


def reference(x: torch.Tensor, keep: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Every Partials field from first principles (numpy, one token at a time; Sun et al.'s
    test decided in float64, where 1000 x a float32 is exact)."""
    a32 = x.float().numpy()
    R, C = a32.shape
    real = np.ones(R, bool) if keep is None else keep.numpy().astype(bool)
    need = (C - 1) // 2 + 1
    tok_abs = np.full(R, -1, np.float32)
    ch_massive = np.zeros(C, np.int64)
    si = np.zeros(5, np.int64)
    for r in np.nonzero(real)[0]:
        row = a32[r]
        fin = np.isfinite(row)
        if fin.any():
            tok_abs[r] = np.abs(row[fin]).max()
        ta = np.float64(tok_abs[r])
        if not fin.all() or ta <= 100:
            continue
        si[0] += 1
        a = np.abs(row).astype(np.float64)
        med = np.sort(a)[need - 1]  # lower median
        if 1000 * med <= ta:
            si[1] += 1
            hit = (a > 100) & (a >= 1000 * med)
            ch_massive += hit
            si[2] += hit.sum()
            si[3] += hit.any()
    rows = a32[real]
    fin = np.isfinite(rows)
    d = np.where(fin, rows, 0).astype(np.float64)
    v = rows[fin].astype(np.float64)  # every finite element
    mu = v.mean() if v.size else 0.0
    c = v - mu
    bins = (rows.view(np.uint32) >> H.SHIFT32).astype(np.int64)
    return {
        "tok_abs": tok_abs,
        "ch_max": np.where(fin, np.abs(rows), 0).max(0) if len(rows) else np.zeros(C, np.float32),
        "ch_nonfinite": (~fin).sum(0),
        "ch_s1": d.sum(0),
        "ch_s2": (d**2).sum(0),
        "ch_ge6": (np.abs(np.nan_to_num(rows, nan=0.0)) >= 6).sum(0),
        "ch_massive": ch_massive,
        "hist": np.bincount(bins.reshape(-1), minlength=H.N_BINS),
        "sd": np.array([v.min(initial=np.inf), v.max(initial=-np.inf)]),
        "mom": np.array([v.size, mu, (c**2).sum(), (c**3).sum(), (c**4).sum()]),
        "si": si,
        "_mom_scale": [0, np.abs(v).mean() if v.size else 0, (c**2).sum(), np.abs(c**3).sum(), (c**4).sum()],
        "_ch_scale": np.abs(d).sum(0),
    }


def assert_matches(p: Partials, ref: dict, rel=1e-9):
    for f in EXACT:
        got = getattr(p, f).cpu().numpy()
        np.testing.assert_array_equal(got, ref[f], err_msg=f)
    mom = p.mom.cpu().numpy()
    for i, scale in enumerate(ref["_mom_scale"]):  # count exact, the rest to rel of what could cancel
        assert abs(mom[i] - ref["mom"][i]) <= rel * scale, (i, mom[i], ref["mom"][i])
    for f, scale in (("ch_s1", ref["_ch_scale"]), ("ch_s2", ref["ch_s2"])):
        g, e = getattr(p, f).cpu().numpy(), ref[f]
        assert np.all(np.abs(g - e) <= rel * scale + 1e-300), f


def keep_mask(R, seed):
    g = torch.Generator().manual_seed(seed)
    keep = (torch.rand(R, generator=g) > 0.3).to(torch.uint8)
    keep[:4] = 1  # the special rows are real tokens
    return keep


CASES = [(R, C, padded) for R, C in [(40, 64), (33, 7), (17, 1), (300, 640)] for padded in (False, True)]


@pytest.mark.parametrize("R,C,padded", CASES)
@pytest.mark.parametrize("kernel", [pytest.param("native", marks=needs_native), "eager"])
def test_kernel_equals_reference(kernel, R, C, padded):
    x = heavy_rows(R, C, seed=R + C) if C > 1 else torch.randn(R, 1) * 200
    keep = keep_mask(R, R) if padded else None
    assert_matches(site_partials(x, keep, kernel), reference(x, keep))


@pytest.mark.parametrize("R,C,padded", [(40, 64, False), (40, 64, True), (300, 640, True)])
@pytest.mark.parametrize("kernel", [pytest.param("native", marks=needs_native), "eager"])
def test_adversarial_rows_equal_the_reference(kernel, R, C, padded):
    x = adversarial_rows(R, C, seed=R)
    keep = keep_mask(R, R) if padded else None
    if keep is not None:
        keep[:17] = 1
    assert_matches(site_partials(x, keep, kernel), reference(x, keep))


def test_compiled_equals_reference():
    """One compile (float32, padded) per test session; other shapes reuse it (dynamic)."""
    for R, C, seed in [(40, 64, 0), (300, 640, 1)]:
        for rows in (heavy_rows, adversarial_rows):
            x, keep = rows(R, C, seed), keep_mask(R, seed)
            keep[:17] = 1
            assert_matches(site_partials(x, keep, "compiled"), reference(x, keep))
    assert not kernels._compile_failed


@needs_native
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(dtype):
    x = heavy_rows(50, 96, 3).to(dtype)
    keep = keep_mask(50, 3)
    ref = reference(x, keep)  # of the upcast values: bins of bf16 / fp16 values are those of float32
    assert_matches(site_partials(x, keep, "native"), ref)
    assert_matches(site_partials(x, keep, "eager"), ref)


@needs_native
def test_native_is_independent_of_threads():
    """Float64 sums are kept per fixed chunk of rows and added in chunk order: bitwise
    the same results for any number of threads."""
    x, keep = heavy_rows(3000, 256, 5), keep_mask(3000, 5)
    runs = [native.site_partials(x, keep, threads=n) for n in (1, 2, 3)]
    for f in FIELDS:
        a = runs[0][f].nan_to_num(-7)
        for other in runs[1:]:
            assert torch.equal(a, other[f].nan_to_num(-7)), f


def test_thread_choice_follows_the_faster_option():
    tc = native.ThreadChoice()
    assert tc.pick(1, 10**6) == 1
    first, second = tc.pick(4, 10**6), None
    tc.record(first, 10**6, 1.0)
    second = tc.pick(4, 10**6)
    assert {first, second} == {1, 4}
    tc.record(second, 10**6, 0.1)  # the second option is ten times faster
    picks = [tc.pick(4, 10**6) for _ in range(2 * tc.EXPLORE)]
    assert picks.count(second) >= 2 * tc.EXPLORE - 2 and picks.count(first) >= 1  # still explores


@needs_native
def test_more_candidates_than_the_torch_cap():
    """Every token may hold a massive activation: native checks all of them, torch the
    first CANDIDATES and reports the rest as unchecked (a flagged lower bound)."""
    R, C = kernels.CANDIDATES + 36, 32
    x = torch.full((R, C), 0.01)
    x[:, 4] = 500.0
    nat, eag = site_partials(x, None, "native"), site_partials(x, None, "eager")
    assert nat.si.tolist() == [R, R, R, R, 0]
    assert eag.si.tolist() == [R, R, kernels.CANDIDATES, kernels.CANDIDATES, R - kernels.CANDIDATES]
    assert_matches(nat, reference(x, None))


def test_no_native_library_falls_back_to_torch(monkeypatch, caplog):
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_error", "RuntimeError: no C compiler")
    monkeypatch.setattr(kernels, "_warned", set())
    x, keep = heavy_rows(40, 64, 2), keep_mask(40, 2)
    with caplog.at_level(logging.WARNING):
        p = site_partials(x, keep, "auto")
    assert "no C compiler" in caplog.text
    assert_matches(p, reference(x, keep))


def test_env_selects_the_kernel(monkeypatch):
    monkeypatch.setenv("ACTSCOPE_COMPILE", "0")
    assert kernels.choice() == "eager"
    monkeypatch.delenv("ACTSCOPE_COMPILE")
    monkeypatch.setenv("ACTSCOPE_KERNEL", "fast")
    with pytest.raises(ValueError, match="auto, native, compiled, eager"):
        kernels.choice()


def _ctx(B, S, lengths, samples=None):
    mask = torch.zeros(B, S, dtype=torch.bool)
    for r, n in enumerate(lengths):
        mask[r, :n] = True
    rows = mask.reshape(-1).nonzero().squeeze(1)
    ids = torch.arange(B) if samples is None else torch.tensor(samples)
    sample = ids[:, None].expand(B, S).reshape(-1)[rows]
    pos = torch.arange(S)[None].expand(B, S).reshape(-1)[rows]
    padded = len(rows) < B * S
    return BatchContext(B, S, rows if padded else None, sample, pos, sample * 1000 + pos)


def assert_states_equal(a_state, b_state):
    """Exact but for float64 moments (sums agree to ~1e-15 across implementations)."""
    assert a_state.keys() == b_state.keys()
    for f, a in a_state.items():
        b = b_state[f]
        if a.dtype == torch.float64 and "moments" in f:
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-9, equal_nan=True), f
        else:
            assert torch.equal(a.nan_to_num(-7), b.nan_to_num(-7)), f


def feed(acc, batches, between=None):
    for i, (x, lengths) in enumerate(batches):
        B, S = x.shape[:2]
        acc.begin_batch(_ctx(B, S, lengths))
        acc.update(0, x)
        acc.end_batch()
        if between is not None:
            between(acc, i)


def states_by_kernel(monkeypatch, kernels, batches, between=None, check=None):
    """{kernel: accumulator state} after feeding the same batches through each kernel."""
    states = {}
    for k in kernels:
        monkeypatch.setenv("ACTSCOPE_KERNEL", k)
        acc = Accumulator({"site": 64}, 4, "cpu", STATS)
        feed(acc, batches, between)
        if check is not None:
            check(acc, k)
        states[k] = acc.state_dict()
    return states


def padded_batches(C=64, dtype=torch.float32):
    return [
        (heavy_rows(3 * 12, C, seed).reshape(3, 12, C).to(dtype), lengths)
        for seed, lengths in enumerate([[9, 4, 7], [12, 11, 12], [5, 12, 1]])
    ]


@pytest.mark.parametrize("kernel", [pytest.param("native", marks=needs_native), "compiled"])
def test_accumulator_state_equals_eager(monkeypatch, kernel):
    """Whole statistics (folds included) through each kernel equal the eager ones; on the
    CPU the native kernel folds into the state itself (native.c site_update)."""

    def native_fold_ran(acc, k):
        assert (acc._folds[0] is not None) == (k == "native")

    batches = padded_batches()[:2]  # padded: one compile
    states = states_by_kernel(monkeypatch, ("eager", kernel), batches, check=native_fold_ran)
    assert_states_equal(states["eager"], states[kernel])


@needs_native
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_native_folds_low_precision_inputs(monkeypatch, dtype):
    states = states_by_kernel(monkeypatch, ("eager", "native"), padded_batches(dtype=dtype))
    assert_states_equal(states["eager"], states["native"])


@needs_native
def test_native_folds_follow_replaced_state(monkeypatch):
    """Restoring or merging replaces state tensors; the native fold tables follow them."""

    def restore(acc, i):  # every batch: a copy of the state back in, then a merge of an empty one
        acc.load_state_dict({k: t.clone() for k, t in acc.state_dict().items()})
        acc.merge(Accumulator({"site": 64}, 4, "cpu", STATS))

    states = states_by_kernel(monkeypatch, ("eager", "native"), padded_batches(), between=restore)
    assert_states_equal(states["eager"], states["native"])


@needs_native
def test_statistics_without_native_slots_still_update(monkeypatch):
    """A statistic the kernel does not fold updates from the SiteView next to the native ones."""
    from actscope.stats import STATISTICS
    from actscope.stats.base import Statistic

    class RowCount(Statistic):
        name = "rowcount"
        merge_rules = {"n": "sum"}

        def __init__(self, channels, n_samples, device):
            super().__init__(channels, n_samples, device)
            self.n = torch.zeros((), dtype=torch.int64)

        def update(self, v):
            self.n += v.ctx.n_rows

    monkeypatch.setitem(STATISTICS._entries, "rowcount", RowCount)
    monkeypatch.setenv("ACTSCOPE_KERNEL", "native")
    acc = Accumulator({"site": 64}, 4, "cpu", ("extrema", "rowcount"))
    feed(acc, padded_batches())
    assert int(acc.stat("site", "rowcount").n) == 20 + 35 + 18
    assert int(acc.stat("site", "extrema").tokens) == 20 + 35 + 18


@needs_native
def test_fold_tables_check_what_they_point_to():
    lib = native.library()
    with pytest.raises(ValueError, match="ch_s1"):
        native.FoldTable(lib, 8, 4, [("ch_s1", torch.zeros(8, dtype=torch.float32))])
    with pytest.raises(ValueError, match="hist"):
        native.FoldTable(lib, 8, 4, [("hist", torch.zeros(10, dtype=torch.int64))])
    with pytest.raises(ValueError, match="sample index"):
        native.BatchTable(_ctx(2, 3, [3, 3], samples=[0, 4]), n_samples=4)
    assert set(lib.slots) == set(native.SLOT_TYPES)


def test_native_kernel_builds_where_there_is_a_compiler():
    """A C compiler is on every machine this project supports: the kernel must build there
    (a failure would silently move every CPU run to the slower torch path)."""
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("no C compiler")
    assert native.library() is not None, native.error()


@needs_native
def test_native_topk_merge_equals_the_torch_path(monkeypatch):
    """The one-scan native merge keeps exactly the entries the torch path keeps: ties of
    equal values across batches (BOS-like rows), padding, nan/inf rows, and a batch fed
    twice (equal keys: the held entry stays first)."""
    g = torch.Generator().manual_seed(11)
    batches = []
    for b in range(7):
        B, S = 3, 10
        x = torch.randint(-40, 41, (B, S, 16), generator=g).float() / 4  # many equal maxima
        x[:, :3, 2] = 30.0  # the same top value at positions 0-2 of every sample
        if b == 2:
            x[1, 4, 0], x[2, 5, 3] = float("nan"), float("inf")
        lengths = [S, S - 3 - b % 3, S - 1] if b % 2 else [S] * B
        samples = [(3 * b + i * 5) % 21 for i in range(B)]
        batches.append((x, lengths, samples))
    batches.append(batches[3])  # the same batch again
    states = {}
    for k in ("eager", "native"):
        monkeypatch.setenv("ACTSCOPE_KERNEL", k)
        acc = Accumulator({"site": 16}, 21, "cpu", ("topk",))
        for x, lengths, samples in batches:
            acc.begin_batch(_ctx(3, 10, lengths, samples))
            acc.update(0, x)
            acc.end_batch()
        states[k] = acc.state_dict()
    assert states["eager"]["site/topk/absval"][-1] == 30.0  # ties at the k-th entry happened
    for f, a in states["eager"].items():
        assert torch.equal(a, states["native"][f]), f


def test_batch_top_orders_like_select_top():
    """One int64 top-k gives select_top's order: |a| descending, then (sample, pos)."""
    g = torch.Generator().manual_seed(0)
    n = 500
    absval = torch.randint(0, 6, (n,), generator=g).float() * 0.5 - 1.0  # many ties, -1 and +-0
    absval[absval == 0] = torch.tensor([0.0, -0.0]).repeat(n)[: int((absval == 0).sum())]
    ctx = BatchContext(
        1, n, None, torch.randint(0, 7, (n,), generator=g), torch.randperm(n, generator=g), None
    )
    rows = batch_top(absval, ctx.rank, 40)
    ref = select_top({"absval": absval, "sample": ctx.sample, "pos": ctx.pos, "row": torch.arange(n)}, 40)
    assert torch.equal(rows, ref["row"])


@pytest.mark.parametrize("kernel", [pytest.param("native", marks=needs_native), "eager"])
def test_batching_does_not_change_the_state(monkeypatch, kernel):
    """The same tokens in one batch, one token per batch, or padded batches of mixed sizes:
    the same state (moments to float64 rounding), nan and inf included."""
    x = adversarial_rows(36, 64, 7)  # 36 one-token samples
    monkeypatch.setenv("ACTSCOPE_KERNEL", kernel)
    states = []
    for groups in (
        [list(range(36))],
        [[i] for i in range(36)],
        [[0, 5], list(range(1, 5)), list(range(6, 36))],
    ):
        acc = Accumulator({"site": 64}, 36, "cpu", STATS)
        for samples in groups:
            S = 3  # every sample one real token, then padding
            batch = torch.full((len(samples), S, 64), float("nan"))
            batch[:, 0] = x[samples]
            acc.begin_batch(_ctx(len(samples), S, [1] * len(samples), samples))
            acc.update(0, batch)
            acc.end_batch()
        states.append({k: t for k, t in acc.state_dict().items() if k != "_run/batches_done"})
    for other in states[1:]:
        assert_states_equal(states[0], other)
