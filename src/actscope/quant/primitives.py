"""Fake-quantization as pure functions: amax -> scale -> round onto the grid -> dequantize.

All functions take float32 activations as (N tokens, C channels) and return the
dequantized tensor (same shape, float32) and the number of elements that
saturated (a 0-dim tensor, so that nothing syncs with the host).

    x = torch.randn(5, 64)
    s = amax_to_scale(x.abs().amax(), INT8)                       # () per-tensor
    xq, clipped = fake_quantize(x, INT8, s)                       # (5, 64), ()
    xq, clipped = fake_quantize_dynamic(x, INT8, PerToken())      # scale (5, 1)
    xq, clipped = fake_quantize_block(x, MXFP4)                   # scale (5, 2, 1)
"""

from __future__ import annotations

import math

import torch

from .formats import FP8_E4M3 as _E4M3
from .formats import BlockFormat, FloatFormat, Format
from .granularity import Granularity, PerGroup, dynamic_amax, from_groups, to_groups

# Smallest amax a scale is derived from. An all-zero tensor (or channel) still
# gets a finite, positive scale, so 0 / scale = 0 and nothing becomes nan.
# 1e-12 (torchao's float8 EPS) is far below any activation we measure and far
# above float32's smallest normal, so amax / max_value never underflows.
EPS = 1e-12

# Smallest block-scale code an NVFP4 encoder stores: torchao clamps the E4M3 code to the
# smallest normal, torch.finfo(torch.float8_e4m3fn).tiny = 2**-6.
E4M3_MIN_CODE = 2.0**-6

# Saturation is counted for |x / scale| beyond the grid's top by more than the
# float32 rounding of the division itself: with a dynamic absmax scale the
# largest element lands on max_value up to an ulp and must not count as clipped.
CLIP_TOL = 1e-6


def amax_to_scale(amax: torch.Tensor, fmt: Format) -> torch.Tensor:
    """Scale that maps amax onto the top of the grid: amax / max_value (same shape as amax)."""
    return torch.clamp(amax.float(), min=EPS) / fmt.max_value


def round_up(scale: torch.Tensor, dtype: torch.dtype, target: torch.Tensor, qmax: float) -> torch.Tensor:
    """`scale` in `dtype`, raised by ulps where stored x qmax falls below target (elementwise)."""
    s = scale.to(dtype)
    inf = torch.tensor(float("inf"), dtype=dtype)
    for _ in range(4):  # one ulp always suffices after a round-to-nearest cast; the loop is a guard
        short = (s.double() * qmax < target.double()) | (s <= 0)  # a zero scale would divide by 0
        if not bool(short.any()):
            return s
        s = torch.where(short, torch.nextafter(s, inf.expand_as(s)), s)
    raise AssertionError("scale could not be rounded up")


def stored_scale(threshold: float | torch.Tensor, fmt: Format, dtype: torch.dtype) -> torch.Tensor:
    """threshold / qmax as `dtype`, never below: stored x qmax >= threshold (shape of threshold)."""
    t = torch.as_tensor(threshold, dtype=torch.float32)
    s32 = round_up(amax_to_scale(t, fmt), torch.float32, t, fmt.max_value)
    return round_up(s32, dtype, t, fmt.max_value)


def fake_quantize(x: torch.Tensor, fmt: Format, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round x / scale onto the format's grid (saturating) and scale back.

    scale broadcasts against x: () per tensor, (C,) per channel, (N, 1) per token.
    +-inf inputs saturate and count as clipped; the evaluation pass hands in
    finite values only (metrics.finite_part counts the others).
    """
    xs = x / scale
    clipped = torch.count_nonzero(xs.abs() > fmt.max_value * (1 + CLIP_TOL))
    return fmt.round(xs).mul_(scale), clipped  # round() returns a new tensor: scale it in place


def fake_quantize_dynamic(
    x: torch.Tensor, fmt: Format, gran: Granularity
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token or per-group scales from the tensor itself (absmax of each row or group)."""
    if isinstance(gran, PerGroup):
        g = to_groups(x, gran.size)  # (N, G, size)
        gq, clipped = fake_quantize(g, fmt, amax_to_scale(dynamic_amax(g, gran), fmt))
        return from_groups(gq, x.shape[1]), clipped
    return fake_quantize(x, fmt, amax_to_scale(dynamic_amax(x, gran), fmt))


def mx_block_scale(amax: torch.Tensor, element: FloatFormat) -> torch.Tensor:
    """OCP MX shared scale: the power of two 2**(floor(log2 amax) - emax_element), E8M0 range.

    For FP4 E2M1 emax = 2 (largest value 6 = 1.5 x 2**2), so a block's amax maps
    into [4, 8): blocks whose amax/scale exceeds 6 saturate, as the spec rounds.
    """
    emax = math.floor(math.log2(element.max_value))
    _, e = torch.frexp(amax)  # amax = m * 2**e, 0.5 <= m < 1
    return torch.exp2((e - 1 - emax).clamp(-127, 127).float())


def nv_block_scale(amax: torch.Tensor, element: FloatFormat, global_scale: torch.Tensor) -> torch.Tensor:
    """NVFP4 block scale: amax / 6 in units of global_scale as an FP8 E4M3 code, times global_scale.

    global_scale = tensor amax / (6 x 448) puts the largest block scale at the top
    of E4M3. The code is clamped to [E4M3_MIN_CODE, 448] before it is rounded, as
    torchao's nvfp4_quantize encodes it (torchao/prototype/mx_formats/nvfp4_tensor.py):
    a block far below the tensor's range (a massive activation elsewhere) gets the
    smallest code, and its elements round on that grid, mostly to 0, as a real
    encoder's would. An all-zero block stays 0.
    """
    code = (amax / element.max_value / global_scale).clamp(min=E4M3_MIN_CODE, max=_E4M3.max_value)
    return _E4M3.round(code) * global_scale


def nv_global_scale(tensor_amax: torch.Tensor, element: FloatFormat) -> torch.Tensor:
    return torch.clamp(tensor_amax.float(), min=EPS) / (element.max_value * _E4M3.max_value)


def fake_quantize_block(
    x: torch.Tensor, fmt: BlockFormat, global_scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MXFP4 / NVFP4: one scale per token and block of `fmt.block` channels.

    NVFP4 needs the per-tensor global_scale (static, from calibration).
    """
    g = to_groups(x, fmt.block)  # (N, G, block)
    amax = g.abs().amax(dim=-1, keepdim=True)  # (N, G, 1)
    if fmt.scale_format == "e8m0":
        scale = mx_block_scale(amax, fmt.element)
    else:
        assert global_scale is not None, "NVFP4 needs a per-tensor global scale"
        scale = nv_block_scale(amax, fmt.element, global_scale)
    gq, clipped = fake_quantize(g, fmt.element, scale)
    return from_groups(gq, x.shape[1]), clipped


def sqnr_db(signal_sq: float, noise_sq: float) -> float:
    """SQNR in dB = 10 log10(sum x^2 / sum (x - q(x))^2); +inf when q(x) == x exactly."""
    if noise_sq == 0:
        return math.inf if signal_sq > 0 else math.nan
    if signal_sq == 0:
        return -math.inf
    return 10.0 * math.log10(signal_sq / noise_sq)


def compute_error(x: torch.Tensor, xq: torch.Tensor) -> float:
    """SQNR (dB) of one tensor pair, in float64 (torchao's compute_error, for tests and one-offs)."""
    x64, q64 = x.double(), xq.double()
    return sqnr_db(float(x64.square().sum()), float((x64 - q64).square().sum()))
