"""A quantization scheme: format x granularity x static-scale method (+ SmoothQuant), by name.

FORMAT[:GRANULARITY[:METHOD]][+sqALPHA]

int8                       int8, per-tensor static scale, absmax of the calibration split
int8:tensor:p99.99         scale from the 99.99th percentile of |a| (log histogram)
int8:tensor:mse            clip ratio minimising the squared error (search over ratios)
int8:channel               per-channel static absmax
int8:token                 per-token dynamic absmax
int4:group32               per (token, 32 channels) dynamic absmax
fp8_e4m3:tensor            FP8 E4M3, per-tensor static absmax
mxfp4, nvfp4               block formats (their block size is their granularity)
int8:token+sq0.5           SmoothQuant migration with alpha 0.5 first (linear inputs only)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UserError
from .formats import FORMATS, BlockFormat, Format
from .granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken

METHODS = ("absmax", "mse")  # plus percentiles "pNN.NN"
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)$")
_ALIASES = {"fp8": "fp8_e4m3", "e4m3": "fp8_e4m3", "e5m2": "fp8_e5m2", "fp4": "fp4_e2m1"}
_GRAN_RANK = {"tensor": 0, "channel": 1, "token": 2}  # groups rank 3: cost of more scales
SYNTAX = (
    "FORMAT[:GRANULARITY[:METHOD]][+sqALPHA], e.g. int8:tensor:mse, fp8_e4m3:token, mxfp4, int8:token+sq0.5"
)


@dataclass(frozen=True)
class Scheme:
    fmt: Format
    gran: Granularity
    method: str = "absmax"  # static scales: absmax, mse, pNN.NN; dynamic scales: always absmax
    smooth_alpha: float | None = None

    @property
    def name(self) -> str:
        if isinstance(self.fmt, BlockFormat):
            base = self.fmt.name
        elif self.gran.static:
            base = f"{self.fmt.name}:{self.gran.name}:{self.method}"
        else:
            base = f"{self.fmt.name}:{self.gran.name}"
        return base if self.smooth_alpha is None else f"{base}+sq{self.smooth_alpha:g}"

    @property
    def static(self) -> bool:
        return self.gran.static

    @property
    def quantile(self) -> float | None:
        """0.9999 for method p99.99, else None."""
        m = _PERCENTILE.match(self.method)
        return float(m.group(1)) / 100 if m else None

    @property
    def bits(self) -> float:
        """Storage bits per activation element, with shared scales amortised where they are
        stored per block (block formats; per-group int with a 16-bit scale)."""
        if isinstance(self.gran, PerGroup) and not isinstance(self.fmt, BlockFormat):
            return self.fmt.bits + 16 / self.gran.size
        return float(self.fmt.bits)

    @property
    def cost(self) -> tuple[float, int, int]:
        """Sort key, cheapest first: bits, then how many scales, then extra steps (smoothing)."""
        rank = 3 if isinstance(self.gran, PerGroup) else _GRAN_RANK[self.gran.name]
        return (self.bits, rank, int(self.smooth_alpha is not None))


def parse_scheme(spec: str) -> Scheme:
    """`int8:tensor:mse+sq0.5` -> Scheme; UserError naming the bad part otherwise."""
    text = spec.strip().lower()
    base, _, smooth = text.partition("+")
    alpha = _parse_alpha(spec, smooth) if smooth else None
    parts = base.split(":")
    if len(parts) > 3 or not parts[0]:
        raise UserError(f"quantization scheme {spec!r} is malformed", f"write {SYNTAX}")
    fmt = FORMATS.get(_ALIASES.get(parts[0], parts[0]))
    gran_name = parts[1] if len(parts) > 1 else None
    method = parts[2] if len(parts) > 2 else "absmax"
    if isinstance(fmt, BlockFormat):
        if gran_name not in (None, f"group{fmt.block}") or len(parts) > 2:
            raise UserError(
                f"{fmt.name} has its own granularity (blocks of {fmt.block})", f"write just {fmt.name!r}"
            )
        return Scheme(fmt, PerGroup(fmt.block), "absmax", alpha)
    gran = _parse_gran(spec, gran_name or "tensor")
    _check_method(spec, gran, method)
    if alpha is not None and method != "absmax":
        raise UserError(
            f"{spec!r}: SmoothQuant is combined with absmax or dynamic scales only",
            "the calibration histogram is of x, not of the smoothed x / s; drop +sq or use :absmax",
        )
    return Scheme(fmt, gran, method, alpha)


def _parse_alpha(spec: str, smooth: str) -> float:
    m = re.fullmatch(r"sq(\d*\.?\d+)", smooth)
    if not m or not 0.0 <= float(m.group(1)) <= 1.0:
        raise UserError(
            f"SmoothQuant part {smooth!r} of {spec!r} is invalid",
            "write +sqALPHA with 0 <= ALPHA <= 1, e.g. +sq0.5",
        )
    return float(m.group(1))


def _parse_gran(spec: str, name: str) -> Granularity:
    fixed = {"tensor": PerTensor(), "channel": PerChannel(), "token": PerToken()}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"group(\d+)", name)
    if m and int(m.group(1)) >= 2:
        return PerGroup(int(m.group(1)))
    raise UserError(
        f"unknown granularity {name!r} in {spec!r}", "choose tensor, channel, token or groupN (e.g. group128)"
    )


def _check_method(spec: str, gran: Granularity, method: str) -> None:
    if method not in METHODS and not _PERCENTILE.match(method):
        raise UserError(
            f"unknown scale method {method!r} in {spec!r}", "choose absmax, mse or a percentile like p99.99"
        )
    if not gran.static and method != "absmax":
        raise UserError(
            f"{gran.name} scales are dynamic (absmax of each {gran.name}); {method!r} does not apply",
            f"drop ':{method}'",
        )
    if isinstance(gran, PerChannel) and method != "absmax":
        raise UserError(
            f"per-channel scales support absmax only, not {method!r}",
            "use int8:channel or a per-tensor method",
        )


# The paper's check (int8:tensor:absmax / p99.9) and what deployments use, cheapest first by family.
DEFAULT_SCHEMES = (
    "int8:tensor:absmax",
    "int8:tensor:p99.9",
    "int8:tensor:p99.99",
    "int8:tensor:mse",
    "int8:channel",
    "int8:token",
    "int8:group128",
    "int8:tensor:absmax+sq0.5",
    "int8:token+sq0.5",
    "fp8_e4m3:tensor:absmax",
    "fp8_e4m3:token",
    "fp8_e5m2:tensor:absmax",
    "int4:token",
    "int4:group32",
    "mxfp4",
    "nvfp4",
)
DEFAULT_E2E = (
    "int8:tensor:absmax",
    "int8:tensor:mse",
    "int8:token",
    "fp8_e4m3:tensor:absmax",
    "fp8_e4m3:token",
)
