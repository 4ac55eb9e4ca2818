"""amax -> scale -> fake-quantize on hand-computed cases; SQNR of exact input is infinite."""

from __future__ import annotations

import math

import torch

from actscope.quant.formats import FP8_E4M3, INT4, INT8, MXFP4, NVFP4
from actscope.quant.granularity import PerGroup, PerToken, from_groups, to_groups
from actscope.quant.primitives import (
    EPS,
    amax_to_scale,
    compute_error,
    fake_quantize,
    fake_quantize_block,
    fake_quantize_dynamic,
    mx_block_scale,
    nv_global_scale,
    sqnr_db,
)


def test_per_tensor_int8_hand_case():
    x = torch.tensor([[-127.0, 0.6, 1.5, 2.5, 200.0]])
    xq, clipped = fake_quantize(x, INT8, torch.tensor(1.0))
    assert xq.tolist() == [[-127.0, 1.0, 2.0, 2.0, 127.0]]
    assert int(clipped) == 1
    s = amax_to_scale(torch.tensor(254.0), INT8)  # scale 2: 3 -> 1.5 -> 2 -> 4
    xq, _ = fake_quantize(torch.tensor([3.0, 5.0, 254.0]), INT8, s)
    assert xq.tolist() == [4.0, 4.0, 254.0]


def test_zero_tensor_gets_a_finite_scale_and_stays_zero():
    x = torch.zeros(3, 8)
    s = amax_to_scale(x.abs().amax(), INT8)
    assert math.isclose(s.item(), EPS / 127, rel_tol=1e-6) and s.item() > 0
    xq, clipped = fake_quantize(x, INT8, s)
    assert torch.equal(xq, x) and int(clipped) == 0
    assert math.isnan(compute_error(x, xq))  # 0 / 0: no signal, no noise


def test_nan_and_inf_inputs():
    s = torch.tensor(1.0)
    xq, clipped = fake_quantize(torch.tensor([math.nan, math.inf, -math.inf, 3.0]), FP8_E4M3, s)
    assert math.isnan(xq[0]) and xq[1:].tolist() == [448.0, -448.0, 3.0]
    assert int(clipped) == 2  # the infinities saturate; nan does not


def test_exactly_representable_input_has_infinite_sqnr():
    ints = torch.randint(-127, 128, (64, 32)).float()
    scale = torch.tensor(0.25)
    x = ints * scale
    x[0, 0] = 127 * 0.25  # amax hits the top of the grid
    xq, _ = fake_quantize(x, INT8, amax_to_scale(x.abs().amax(), INT8))
    assert compute_error(x, xq) == math.inf
    fp8 = torch.randn(100).to(torch.float8_e4m3fn).float()
    xq, _ = fake_quantize(fp8, FP8_E4M3, torch.tensor(1.0))
    assert compute_error(fp8, xq) == math.inf
    assert sqnr_db(1.0, 0.0) == math.inf


def test_sqnr_value():
    assert sqnr_db(100.0, 1.0) == 20.0
    x = torch.tensor([3.0, 4.0])
    assert math.isclose(compute_error(x, x + torch.tensor([0.3, 0.4])), 20.0, rel_tol=1e-6)  # float32 input


def test_per_token_dynamic_scales_each_row():
    x = torch.tensor([[1.0, -0.5, 0.25], [1000.0, 3.0, -1.0]])
    xq, clipped = fake_quantize_dynamic(x, INT8, PerToken())
    assert torch.equal(xq[0], torch.round(x[0] * 127) / 127)  # row 0: scale 1/127
    assert xq[1, 0] == 1000.0 and xq[1, 2] == 0.0  # row 1: step 7.87; -1 underflows to 0
    assert int(clipped) == 0  # a dynamic absmax never saturates


def test_per_group_pads_the_last_group_with_zeros():
    x = torch.randn(4, 70)
    g = to_groups(x, 32)
    assert g.shape == (4, 3, 32) and torch.equal(g[:, 2, 6:], torch.zeros(4, 26))
    assert torch.equal(from_groups(g, 70), x)
    xq, _ = fake_quantize_dynamic(x, INT4, PerGroup(32))
    assert xq.shape == x.shape
    top = x[:, 64:].abs().amax(1)  # the 6-channel tail group keeps its own amax exactly
    assert torch.allclose(xq[:, 64:].abs().amax(1), top)


def test_mx_block_scale_is_a_power_of_two_below_amax():
    amax = torch.tensor([6.0, 7.9, 8.0, 1.0, 0.1])
    # 2 ** (floor(log2 amax) - 2): 6 -> 1, 7.9 -> 1, 8 -> 2, 1 -> 0.25, 0.1 -> 2**-6
    assert mx_block_scale(amax, MXFP4.element).tolist() == [1.0, 1.0, 2.0, 0.25, 2.0**-6]


def test_mxfp4_hand_case_and_its_clipping():
    x = torch.zeros(1, 32)
    x[0, :4] = torch.tensor([7.9, 3.0, 0.7, -0.2])  # scale 1: 7.9 saturates to 6
    xq, clipped = fake_quantize_block(x, MXFP4)
    assert xq[0, :4].tolist() == [6.0, 3.0, 0.5, 0.0] and int(clipped) == 1


def test_nvfp4_block_scale_is_e4m3_times_global():
    x = torch.zeros(2, 16)
    x[0, 0], x[0, 1], x[1, 0] = 6.0, 1.0, 600.0
    gs = nv_global_scale(torch.tensor(600.0), NVFP4.element)  # 600 / (6 * 448)
    xq, clipped = fake_quantize_block(x, NVFP4, gs)
    assert torch.allclose(xq[1, 0], torch.tensor(600.0)) and int(clipped) == 0
    assert torch.allclose(xq[0, :2], torch.tensor([6.0, 1.0]), rtol=0.07)  # e4m3 block scale: ~6% steps


def test_nvfp4_block_far_below_the_tensor_range_gets_the_smallest_code():
    """A block whose E4M3 scale code rounds to 0 used to get scale 1.0, which no encoder
    produces: the absolute FP4 grid {0, 0.5, 1, ...}. torchao's nvfp4_quantize clamps the
    code to the smallest normal E4M3 value (2**-6) before rounding; so do we."""
    x = torch.zeros(2, 16)
    x[0, 0] = 1e5  # a massive activation sets the tensor's global scale
    x[1] = torch.linspace(-0.2, 0.2, 16)  # amax / 6 / global = 9e-4: rounds to code 0 in E4M3
    gs = nv_global_scale(x.abs().amax(), NVFP4.element)
    code = x[1].abs().amax() / 6 / gs
    assert code.to(torch.float8_e4m3fn).float() == 0.0
    xq, _ = fake_quantize_block(x, NVFP4, gs)
    # torchao's recipe, step by step: clamp the code, cast to E4M3, data / (global x code) on the FP4 grid
    scale = (
        torch.clamp(code, min=torch.finfo(torch.float8_e4m3fn).tiny, max=448.0)
        .to(torch.float8_e4m3fn)
        .float()
    )
    total = gs * scale
    want = NVFP4.element.round(torch.clamp(x[1] / total, -6, 6)) * total
    assert torch.equal(xq[1], want)
    assert (xq[1] != 0).sum() == 6  # |x| >= total / 4 keeps a level; scale 1.0 zeroed them all
