"""The statistics on hand-made activations: padding, merging, provenance, histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actscope.stats import histogram as H
from actscope.stats.accumulator import Accumulator
from actscope.stats.base import BatchContext

STATS = ("extrema", "moments", "histogram", "topk", "massive", "samples")


def ctx_for(lengths, samples, S, device="cpu"):
    """BatchContext for right-padded rows of the given lengths."""
    B = len(lengths)
    mask = torch.zeros(B, S, dtype=torch.bool)
    for r, n in enumerate(lengths):
        mask[r, :n] = True
    flat = mask.reshape(-1)
    rows = flat.nonzero().squeeze(1)
    sample = torch.tensor(samples)[:, None].expand(B, S).reshape(-1)[rows]
    pos = torch.arange(S)[None].expand(B, S).reshape(-1)[rows]
    token = (sample * 1000 + pos)[...]  # a fake token id that encodes its origin
    padded = bool((~flat).any())
    return BatchContext(B, S, rows if padded else None, sample, pos, token)


def heavy(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g) * torch.rand(n, 1, generator=g) * 3
    x[0, 3] = 700.0 + seed  # a massive element at the first token
    return x


def run(acc, acts, lengths, samples, poison=float("nan")):
    """Feed per-sample activations (list of (len, C)) as one right-padded batch."""
    S = max(lengths)
    C = acts[0].shape[1]
    x = torch.full((len(acts), S, C), poison)
    for r, a in enumerate(acts):
        x[r, : a.shape[0]] = a
    acc.begin_batch(ctx_for(lengths, samples, S))
    acc.update(0, x)
    acc.end_batch()


def results(acc):
    out = {}
    for s in acc.stats["site"]:
        out.update({f"{s.name}.{k}": v for k, v in s.state_dict().items()})
    return out


def assert_same(a, b, rel=1e-9):
    """Exact for everything but sums; sums (float64, kernels.py) to `rel`."""
    for k in a:
        x, y = a[k], b[k]
        if x.dtype.is_floating_point and k.startswith("moments."):
            assert torch.allclose(x, y, rtol=rel, atol=1e-12), k
        else:
            assert torch.equal(x, y), k


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), 1e30])
def test_padding_never_leaks(poison):
    acts = [heavy(n, 16, s) for s, n in enumerate([9, 4, 7])]
    padded = Accumulator({"site": 16}, 3, "cpu", STATS)
    run(padded, acts, [9, 4, 7], [0, 1, 2], poison)
    single = Accumulator({"site": 16}, 3, "cpu", STATS)
    for s, a in enumerate(acts):
        run(single, [a], [a.shape[0]], [s])
    assert_same(results(padded), results(single))
    hist = padded.stat("site", "histogram").hist.numpy()
    assert H.nonfinite_counts(hist) == {"posinf": 0, "neginf": 0, "nan": 0}
    assert int(padded.stat("site", "extrema").elements) == 20 * 16


def test_merge_of_halves_equals_whole():
    acts = [heavy(n, 8, s) for s, n in enumerate([5, 6, 3, 8])]
    whole = Accumulator({"site": 8}, 4, "cpu", STATS)
    for s, a in enumerate(acts):
        run(whole, [a], [a.shape[0]], [s])
    a = Accumulator({"site": 8}, 4, "cpu", STATS)
    b = Accumulator({"site": 8}, 4, "cpu", STATS)
    for s, x in enumerate(acts):
        run(a if s < 2 else b, [x], [x.shape[0]], [s])
    a.merge(b)
    assert_same(results(a), results(whole))


def test_state_dict_roundtrip():
    acts = [heavy(6, 8, 1)]
    a = Accumulator({"site": 8}, 1, "cpu", STATS)
    run(a, acts, [6], [0])
    b = Accumulator({"site": 8}, 1, "cpu", STATS)
    b.load_state_dict(a.state_dict())
    assert_same(results(a), results(b), rel=0)
    before = {k: t.clone() for k, t in a.state_dict().items()}
    run(b, [heavy(6, 8, 2) * 50], [6], [0])  # statistics update in place: b holds copies
    assert all(torch.equal(t, before[k]) for k, t in a.state_dict().items())


def test_topk_provenance_points_to_the_element():
    acts = [heavy(n, 16, s) for s, n in enumerate([9, 4, 7])]
    acc = Accumulator({"site": 16}, 3, "cpu", STATS)
    run(acc, acts, [9, 4, 7], [0, 1, 2])
    entries = acc.stat("site", "topk").entries()
    assert len(entries) == 20  # every real token once, fewer than K
    for e in entries:
        v = acts[e["sample"]][e["pos"], e["channel"]].item()
        assert v == e["value"] and abs(v) == e["absval"]
        assert e["token"] == e["sample"] * 1000 + e["pos"]
        assert e["absval"] == acts[e["sample"]][e["pos"]].abs().max().item()
    top = entries[0]
    assert top["absval"] == max(a.abs().max().item() for a in acts)
    assert (top["sample"], top["pos"], top["channel"]) == (2, 0, 3)


def test_topk_ties_broken_by_sample_then_position():
    x = torch.ones(4, 2)
    acc = Accumulator({"site": 2}, 2, "cpu", ("topk",))
    run(acc, [x, x], [4, 4], [1, 0])
    got = [(e["sample"], e["pos"]) for e in acc.stat("site", "topk").entries()]
    assert got == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]


def test_topk_over_many_batches_equals_one_selection_over_all_tokens(monkeypatch):
    """Batches skipped because none of their tokens can enter change nothing: after
    batches below the k-th entry and batches tying it (ahead of it or behind it in
    (sample, position) order), the top-k is the selection over every token at once."""
    from actscope.stats import topk

    monkeypatch.setenv("ACTSCOPE_KERNEL", "eager")  # the torch path (native: test_fast_path)
    calls, real_batch_top = [], topk.batch_top
    monkeypatch.setattr(topk, "batch_top", lambda *a: calls.append(1) or real_batch_top(*a))
    g = torch.Generator().manual_seed(3)
    acc = Accumulator({"site": 4}, 28, "cpu", ("topk",))
    batches = [  # (samples, every token has max|a| 6, one token of the first sample at 6)
        ([8, 9, 10, 11], True, False),  # fills 20 of the 32 slots
        ([12, 13, 14, 15], True, False),  # full: the k-th entry is 6 at (sample 14, pos 1)
        ([16, 17, 18, 19], True, False),  # ties behind the k-th entry: skipped
        ([20, 21, 22, 23], True, False),  # skipped
        ([0, 1, 2], False, True),  # a tie ahead of the k-th entry: enters
        ([3, 4, 5], False, False),  # everything below the k-th entry: skipped
        ([6, 7], False, True),  # enters
        ([24, 25, 26, 27], False, True),  # a tie behind: skipped
    ]
    everything = []
    for samples, all_six, one_six in batches:
        acts = [torch.randint(-5, 6, (5, 4), generator=g).float() for _ in samples]
        for a in acts:
            if all_six:
                a[:, 0] = 6.0
            else:
                a /= 10
        if one_six:
            acts[0][2, 1] = -6.0
        run(acc, acts, [5] * len(samples), samples)
        for s, a in zip(samples, acts):
            everything += [(-a[pos].abs().max().item(), s, pos) for pos in range(5)]
    got = [(-e["absval"], e["sample"], e["pos"]) for e in acc.stat("site", "topk").entries()]
    assert got == sorted(everything)[:32]
    assert len(calls) == 4


def test_extrema_moments_and_per_sample_max():
    acts = [heavy(n, 8, s) for s, n in enumerate([5, 6])]
    acc = Accumulator({"site": 8}, 3, "cpu", STATS)
    run(acc, acts, [5, 6], [0, 2])
    allx = torch.cat(acts).double()
    r = {}
    for s in acc.stats["site"]:
        r.update(s.result())
    assert r["min"] == allx.min().item() and r["max"] == allx.max().item()
    assert math.isclose(r["mean"], allx.mean().item(), rel_tol=1e-9)  # float64 sums
    assert math.isclose(r["std"], allx.std(unbiased=False).item(), rel_tol=1e-9)
    c = allx - allx.mean()
    kurt = (c**4).mean() / (c**2).mean() ** 2 - 3
    assert math.isclose(r["kurtosis"], kurt.item(), rel_tol=1e-9)
    smax = acc.stat("site", "samples").smax
    assert smax.tolist() == [acts[0].abs().max().item(), -1.0, acts[1].abs().max().item()]
    ch = acc.stat("site", "extrema").ch_absmax
    assert torch.equal(ch, torch.cat(acts).abs().amax(0))


def test_massive_activation_counts():
    x = torch.full((3, 2000), 0.01)
    x[0, 5] = 500.0  # 500 >= 1000 x 0.01 and > 100: massive
    x[1, 7] = 150.0  # > 100 and >= 1000 x 0.01: massive
    x[2, :] = 1.0
    x[2, 9] = 120.0  # > 100 but < 1000 x median 1.0: not massive
    acc = Accumulator({"site": 2000}, 1, "cpu", ("massive",))
    run(acc, [x], [3], [0])
    r = acc.stat("site", "massive").result()
    assert r["massive_elements"] == 2 and r["massive_tokens"] == 2 and r["tokens_over_100"] == 3
    assert not r["massive_lower_bound"]
    ch = acc.stat("site", "massive").ch_massive
    assert ch[5] == 1 and ch[7] == 1 and ch.sum() == 2


def test_massive_exact_when_most_tokens_exceed_100():
    # Gemma-like: every token's median is large, only three tokens hold a massive element.
    g = torch.Generator().manual_seed(0)
    x = 150 + 50 * torch.rand(300, 64, generator=g)
    x[[0, 100, 200], [1, 2, 3]] = 1e6
    x[[0, 100, 200]] = torch.where(x[[0, 100, 200]] < 1e6, torch.tensor(0.5), x[[0, 100, 200]])
    acc = Accumulator({"site": 64}, 1, "cpu", ("massive",))
    run(acc, [x], [300], [0])
    r = acc.stat("site", "massive").result()
    assert r["tokens_over_100"] == 300
    assert (r["massive_elements"], r["massive_tokens"], r["massive_lower_bound"]) == (3, 3, False)


def test_nonfinite_counted_and_excluded_from_extrema():
    x = torch.tensor([[1.0, float("nan")], [2.0, -3.0], [float("inf"), float("-inf")]])
    acc = Accumulator({"site": 2}, 1, "cpu", STATS)
    run(acc, [x], [3], [0])
    h = acc.stat("site", "histogram").hist.numpy()
    assert H.nonfinite_counts(h) == {"posinf": 1, "neginf": 1, "nan": 1}
    r = acc.stat("site", "extrema").result()
    assert (r["min"], r["max"], r["absmax"]) == (-3.0, 2.0, 3.0)  # finite elements only
    assert r["nonfinite_channels"] == 2
    m = acc.stat("site", "moments").result()  # of the finite elements 1, 2, -3
    assert m["mean"] == 0.0 and math.isclose(m["std"], math.sqrt(14 / 3), rel_tol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_histogram_quantiles_within_stated_bound(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.distributions.StudentT(2.0).sample((200_000,)) * 3).to(dtype)
    h = H.histogram(x).numpy()
    assert h.sum() == x.numel()
    exact = torch.quantile(x.float().abs()[:16_000_000], torch.tensor([0.5, 0.9, 0.99, 0.999]))
    got = H.quantiles(h, [0.5, 0.9, 0.99, 0.999])
    for e, q in zip(exact.tolist(), got):
        assert abs(q - e) <= H.REL_ERROR * e * 1.0001 + 1e-12, (q, e)
    del g


def test_histogram_bins_are_the_same_for_bf16_and_fp32():
    x = torch.tensor([0.0, 1.0, -1.0, 3.14159, 1e-30, 65504.0, 1e6, float("inf")])
    b = x.to(torch.bfloat16)  # bf16 values are exactly representable in fp32
    assert torch.equal(H.bin_index(b.float()).long(), H.bin_index(b).long())


def test_fraction_above_brackets_truth():
    x = torch.linspace(0, 1000, 10001)
    h = H.histogram(x).numpy()
    for t in (6.0, 100.0, 448.0):
        lo, hi = H.fraction_above(h, [t])[t]
        truth = (x >= t).sum().item() / x.numel()
        assert lo - 1e-12 <= truth <= hi + 1e-12
    assert np.isclose(H.fraction_above(h, [2000.0])[2000.0][1], 0.0)


def test_a_checkpoint_of_another_state_layout_is_a_clear_error():
    """Moments were raw power sums (s1..s4) before they became central moments: such a
    checkpoint cannot be continued, and resuming says so instead of raising a KeyError."""
    from actscope.errors import RunDirError

    a = Accumulator({"site": 8}, 1, "cpu", STATS)
    run(a, [heavy(6, 8, 1)], [6], [0])
    old = {k: t for k, t in a.state_dict().items() if k != "site/moments/cm"}
    old |= {f"site/moments/s{i}": torch.zeros((), dtype=torch.float64) for i in range(1, 5)}
    with pytest.raises(RunDirError, match="site/moments/cm.*another version.*without --resume"):
        Accumulator({"site": 8}, 1, "cpu", STATS).load_state_dict(old)
