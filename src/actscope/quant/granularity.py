"""Granularities: which elements of an (N tokens, C channels) activation share one scale.

    PerTensor()    static: one scale, calibrated once              scale shape ()
    PerChannel()   static: one scale per input channel, calibrated  scale shape (C,)
    PerToken()     dynamic: one scale per token, from its own row    scale shape (N, 1)
    PerGroup(128)  dynamic: one scale per token and group of 128
                   consecutive channels (C padded with zeros to a
                   multiple of the group)                            scale shape (N, ceil(C/128), 1)

Static scales are fixed before evaluation, from the calibration split;
dynamic scales are computed from the tensor being quantized, as a kernel
that quantizes on the fly would. Per-channel activation scales cannot be
applied inside an INT8 GEMM directly; they stand for what SmoothQuant-style
migration of the scale into the weights can reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PerTensor:
    name = "tensor"
    static = True


@dataclass(frozen=True)
class PerChannel:
    name = "channel"
    static = True


@dataclass(frozen=True)
class PerToken:
    name = "token"
    static = False


@dataclass(frozen=True)
class PerGroup:
    size: int = 128
    static = False

    @property
    def name(self) -> str:
        return f"group{self.size}"


Granularity = PerTensor | PerChannel | PerToken | PerGroup


def to_groups(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C) -> (N, ceil(C / size), size), zero-padding the last group (zeros change no amax)."""
    n, c = x.shape
    pad = -c % size
    if pad:
        x = F.pad(x, (0, pad))
    return x.reshape(n, -1, size)


def from_groups(g: torch.Tensor, channels: int) -> torch.Tensor:
    """Inverse of to_groups: (N, G, size) -> (N, C)."""
    return g.reshape(g.shape[0], -1)[:, :channels]


def dynamic_amax(x: torch.Tensor, gran: Granularity) -> torch.Tensor:
    """max|x| over the elements sharing a dynamic scale, broadcastable against the view.

    PerToken: (N, C) -> (N, 1); PerGroup: (N, G, size) grouped view -> (N, G, 1).
    nan in a row propagates to its amax (the row is unusable anyway);
    inf makes the amax inf, and the whole row then quantizes to 0 or nan.
    """
    if isinstance(gran, (PerToken, PerGroup)):
        return x.abs().amax(dim=-1, keepdim=True)
    raise AssertionError(f"{gran} has a static scale")
