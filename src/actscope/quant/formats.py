"""Number formats as frozen specs, and how a scaled value is rounded onto each grid.

Every format rounds an already-scaled tensor `x / scale` onto its grid and
saturates: values beyond +-max_value become +-max_value (inf too), nan stays
nan. Rounding is round-to-nearest, ties to even, as the hardware does.

    IntFormat(8)      levels -127..127 (symmetric: -128 unused so that 0 is the centre)
    IntFormat(4)      levels -7..7
    FloatFormat e4m3  torch.float8_e4m3fn cast, max 448
    FloatFormat e5m2  torch.float8_e5m2 cast, max 57,344
    FloatFormat e2m1  FP4 element grid {0, 0.5, 1, 1.5, 2, 3, 4, 6}, rounded by round_to_float_grid
    BlockFormat       FP4 elements sharing one scale per block of channels (MXFP4, NVFP4)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..limits import FP8_E4M3_MAX, FP8_E5M2_MAX
from ..registry import Registry


@dataclass(frozen=True)
class IntFormat:
    """Symmetric integer grid: round(x) clamped to [-qmax, qmax], qmax = 2**(bits-1) - 1."""

    name: str
    bits: int

    @property
    def max_value(self) -> float:
        return float(2 ** (self.bits - 1) - 1)

    def round(self, x: torch.Tensor) -> torch.Tensor:
        # torch.round is half-to-even; clamp after rounding so that 127.4 -> 127, inf -> 127.
        return torch.round(x).clamp_(-self.max_value, self.max_value)


@dataclass(frozen=True)
class FloatFormat:
    """A small float grid: `exp_bits` exponent bits, `mant_bits` mantissa bits, saturating.

    `dtype` is the torch dtype whose cast does the rounding (fp8); None for grids
    torch has no dtype for (FP4 E2M1), rounded by round_to_float_grid instead.
    `min_exp` is the exponent of the smallest normal number (below it: subnormals).
    """

    name: str
    bits: int
    mant_bits: int
    min_exp: int
    max_value: float
    dtype: torch.dtype | None = None

    def round(self, x: torch.Tensor) -> torch.Tensor:
        # Clamp first: torch's e5m2 cast overflows to inf and e4m3fn has no inf,
        # so saturation must not depend on what the cast does out of range.
        x = x.clamp(-self.max_value, self.max_value)
        if self.dtype is not None:
            return x.to(self.dtype).to(x.dtype)
        return round_to_float_grid(x, self.mant_bits, self.min_exp)


def round_to_float_grid(x: torch.Tensor, mant_bits: int, min_exp: int) -> torch.Tensor:
    """Round to the nearest float with `mant_bits` mantissa bits (ties to even), no overflow check.

    The spacing of the grid around x is 2**(e - mant_bits), e = floor(log2|x|)
    but at least min_exp (subnormals share the smallest normal's spacing).
    Dividing by the spacing makes the grid the integers, where torch.round is
    half-to-even, and an even integer is an even mantissa.
    """
    _, e = torch.frexp(x)  # x = m * 2**e, 0.5 <= |m| < 1, so floor(log2|x|) = e - 1
    step = torch.exp2((torch.clamp(e - 1, min=min_exp) - mant_bits).to(x.dtype))
    out = torch.round(x / step) * step
    return torch.where(torch.isfinite(x), out, x)


@dataclass(frozen=True)
class BlockFormat:
    """Elements of `element` format sharing one scale per `block` consecutive channels.

    (N, C) activations -> (N, C / block) scales, each quantized to `scale_format`:
      MXFP4 (OCP MX v1.0): block 32, scale E8M0 = a power of two, 2**(floor(log2 amax) - 2);
                           elements above 6 x scale saturate (the spec's known clipping).
      NVFP4: block 16, scale FP8 E4M3 of amax / 6, times a per-tensor fp32 scale
             (amax_calibration / (6 x 448)) that keeps block scales in E4M3 range;
             the block scale rounds to nearest, so a block's largest element can
             saturate by up to ~6% (counted as clipping).
    """

    name: str
    element: FloatFormat
    block: int
    scale_format: str  # "e8m0" or "e4m3"
    scale_bits: int

    @property
    def bits(self) -> float:
        """Storage bits per element including the shared scale."""
        return self.element.bits + self.scale_bits / self.block

    @property
    def max_value(self) -> float:
        return self.element.max_value

    def round(self, x: torch.Tensor) -> torch.Tensor:
        return self.element.round(x)


Format = IntFormat | FloatFormat | BlockFormat

INT8 = IntFormat("int8", 8)
INT4 = IntFormat("int4", 4)
FP8_E4M3 = FloatFormat(
    "fp8_e4m3", 8, mant_bits=3, min_exp=-6, max_value=FP8_E4M3_MAX, dtype=torch.float8_e4m3fn
)
FP8_E5M2 = FloatFormat(
    "fp8_e5m2", 8, mant_bits=2, min_exp=-14, max_value=FP8_E5M2_MAX, dtype=torch.float8_e5m2
)
FP4_E2M1 = FloatFormat("fp4_e2m1", 4, mant_bits=1, min_exp=0, max_value=6.0)
MXFP4 = BlockFormat("mxfp4", FP4_E2M1, block=32, scale_format="e8m0", scale_bits=8)
NVFP4 = BlockFormat("nvfp4", FP4_E2M1, block=16, scale_format="e4m3", scale_bits=8)

FORMATS: Registry[Format] = Registry("quantization format")
for _f in (INT8, INT4, FP8_E4M3, FP8_E5M2, FP4_E2M1, MXFP4, NVFP4):
    FORMATS.register(_f.name, _f)
