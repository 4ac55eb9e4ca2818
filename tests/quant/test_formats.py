"""Format grids on hand-computed cases: rounding, saturation, zero, inf and nan."""

from __future__ import annotations

import math

import pytest
import torch

from actscope.quant.formats import FORMATS, FP4_E2M1, FP8_E4M3, FP8_E5M2, INT4, INT8, round_to_float_grid

INF, NAN = math.inf, math.nan


def _r(fmt, values):
    return fmt.round(torch.tensor(values, dtype=torch.float32)).tolist()


@pytest.mark.parametrize(
    "fmt,inp,want",
    [
        # ties to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2
        (INT8, [0.0, 0.4, 0.5, 1.5, 2.5, -2.5, 126.5], [0.0, 0.0, 0.0, 2.0, 2.0, -2.0, 126.0]),
        # saturation at +-127 (symmetric: -128 unused), inf saturates too
        (INT8, [127.4, 127.6, 300.0, -300.0, INF, -INF], [127.0, 127.0, 127.0, -127.0, 127.0, -127.0]),
        (INT4, [3.5, 4.5, 6.6, 7.5, 100.0, -8.0], [4.0, 4.0, 7.0, 7.0, 7.0, -7.0]),
        # FP4 E2M1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}; midpoints go to the even mantissa
        (
            FP4_E2M1,
            [0.25, 0.26, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.1, 7.0, -INF],
            [0.0, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, -6.0],
        ),
        # FP8 E4M3: max 448, 464 is the midpoint to the (absent) 480 -> saturates to 448
        (
            FP8_E4M3,
            [448.0, 464.0, 1e6, -1e6, INF, 2.0**-9, 2.0**-10],
            [448.0, 448.0, 448.0, -448.0, 448.0, 2.0**-9, 0.0],
        ),
        # FP8 E5M2: max 57344; beyond it saturates instead of becoming inf
        (
            FP8_E5M2,
            [57344.0, 60000.0, 1e9, -INF, 2.0**-16, 2.0**-17],
            [57344.0, 57344.0, 57344.0, -57344.0, 2.0**-16, 0.0],
        ),
    ],
)
def test_round_hand_cases(fmt, inp, want):
    assert _r(fmt, inp) == want


@pytest.mark.parametrize("fmt", [INT8, INT4, FP8_E4M3, FP8_E5M2, FP4_E2M1])
def test_nan_stays_nan_and_zero_stays_zero(fmt):
    out = fmt.round(torch.tensor([NAN, 0.0, -0.0]))
    assert math.isnan(out[0]) and out[1] == 0 and out[2] == 0


@pytest.mark.parametrize("fmt,dtype", [(FP8_E4M3, torch.float8_e4m3fn), (FP8_E5M2, torch.float8_e5m2)])
def test_fp8_matches_torch_cast_in_range(fmt, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g) * torch.exp2(
        torch.randint(-20, 16, (200_000,), generator=g).float()
    )
    x = x.clamp(-fmt.max_value, fmt.max_value)
    assert torch.equal(fmt.round(x), x.to(dtype).float())


@pytest.mark.parametrize("fmt,dtype", [(FP8_E4M3, torch.float8_e4m3fn), (FP8_E5M2, torch.float8_e5m2)])
def test_generic_grid_rounding_matches_torch_fp8(fmt, dtype):
    """round_to_float_grid (used for FP4) agrees with torch's own fp8 rounding, ties included."""
    codes = torch.arange(256, dtype=torch.uint8).view(dtype).float()
    codes = codes[torch.isfinite(codes) & (codes.abs() <= fmt.max_value)].unique()
    mids = (codes[1:] + codes[:-1]) / 2  # exact ties between neighbours
    g = torch.Generator().manual_seed(1)
    rand = (torch.rand(100_000, generator=g) * 2 - 1) * fmt.max_value * torch.rand(100_000, generator=g) ** 8
    for x in (codes, mids, rand):
        want = x.to(dtype).float()
        assert torch.equal(round_to_float_grid(x, fmt.mant_bits, fmt.min_exp), want)


def test_fp4_grid_is_the_e2m1_values():
    x = torch.linspace(-7, 7, 20001)
    assert sorted(set(FP4_E2M1.round(x).abs().tolist())) == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def test_registry_names_and_errors():
    assert {"int8", "int4", "fp8_e4m3", "fp8_e5m2", "mxfp4", "nvfp4"} <= set(FORMATS.names())
    from actscope.errors import UserError

    with pytest.raises(UserError, match="did you mean"):
        FORMATS.get("int9")
