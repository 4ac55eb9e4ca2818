"""Deploy schemes: what a checkpoint quantizes and how, by name, and the run's recommendation as one.

    fp8-static     FP8 E4M3 weights per output channel, static per-tensor input scales from the run
    fp8-dynamic    FP8 E4M3 weights per channel, per-token input scales at run time
    int8-static    INT8 symmetric weights per channel, static per-tensor input scales (W8A8)
    int8-dynamic   INT8 weights per channel, per-token input scales at run time
    recommended    what `actscope quant` recommended for the run: its scheme, and its
                   16-bit sites left unquantized (in `ignore`)

Each names the `actscope quant` scheme whose fake-quant end-to-end figure predicts it
(`quant_scheme`), so a deployment is compared with exactly that prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..quant.formats import FP8_E4M3, INT8, FloatFormat, IntFormat
from ..quant.granularity import PerTensor, PerToken
from ..quant.scheme import parse_scheme

CLIPS = ("absmax", "p99.99", "mse")


@dataclass(frozen=True)
class DeployScheme:
    name: str
    fmt: IntFormat | FloatFormat  # weights and activations
    static: bool  # static per-tensor input scales (else per-token dynamic)
    clip: str = "absmax"  # static scales: quant/scales.py's rule
    keep: tuple[str, ...] = ()  # hooked linear-input sites kept in 16 bits (recommended)

    @property
    def quant_scheme(self) -> str:
        """The `actscope quant` scheme name that predicts this deployment."""
        return f"{self.fmt.name}:tensor:{self.clip}" if self.static else f"{self.fmt.name}:token"

    @property
    def kind(self) -> str:
        """compressed-tensors' argument type: float or int."""
        return "float" if isinstance(self.fmt, FloatFormat) else "int"


_BASE = {
    "fp8-static": (FP8_E4M3, True),
    "fp8-dynamic": (FP8_E4M3, False),
    "int8-static": (INT8, True),
    "int8-dynamic": (INT8, False),
}
NAMES = (*_BASE, "recommended")


def deploy_scheme(name: str, clip: str = "absmax", quant: dict | None = None) -> DeployScheme:
    """The scheme `name` (quant: the run's quant section, for `recommended`)."""
    if clip not in CLIPS:
        raise UserError(f"unknown --clip {clip!r}", f"choose {', '.join(CLIPS)}")
    if name == "recommended":
        return _recommended(quant)
    if name not in _BASE:
        raise UserError(f"unknown scheme {name!r}", f"choose {', '.join(NAMES)}")
    fmt, static = _BASE[name]
    return DeployScheme(name, fmt, static, clip if static else "absmax")


def _recommended(quant: dict | None) -> DeployScheme:
    rec = (quant or {}).get("recommendation")
    if not quant or rec is None:
        raise UserError(
            "the run has no quantization recommendation yet", "run `actscope quant RUN` first, then deploy"
        )
    if not rec.get("scheme"):
        raise UserError(
            f"`actscope quant` found no scheme within budget for this run ({rec.get('reason', 'no reason')})",
            "deploy a named scheme (--scheme fp8-static ...) or loosen the budget of `actscope quant`",
        )
    s = parse_scheme(rec["scheme"])
    ok_fmt = s.fmt in (FP8_E4M3, INT8)
    ok_gran = isinstance(s.gran, PerTensor) or isinstance(s.gran, PerToken)
    if not ok_fmt or not ok_gran or s.smooth_alpha is not None:
        raise UserError(
            f"the recommended scheme {s.name!r} has no checkpoint format here",
            "deploy one of fp8-static, fp8-dynamic, int8-static, int8-dynamic",
        )
    base = ("fp8" if s.fmt is FP8_E4M3 else "int8") + ("-static" if s.static else "-dynamic")
    keep = tuple(rec.get("keep_high_precision") or ())
    return DeployScheme(f"recommended ({base})", s.fmt, s.static, s.method if s.static else "absmax", keep)
