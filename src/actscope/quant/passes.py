"""The two streaming passes: calibrate (statistics on one split) and evaluate (errors on the other).

Both run on the measurement engine (engine.stream: the input device, provenance,
hooks and the forward call of `actscope measure`); padding is dropped by SiteView.
The calibration pass keeps per site max|a| (per channel), moments and the
log histogram (the statistics of stats/); the evaluation pass fake-quantizes
each hooked site with every scheme inside the hook and keeps only error sums.
"""

from __future__ import annotations

import contextlib

import torch

from ..engine import input_device, stream
from ..stats.accumulator import Accumulator
from ..stats.base import SiteView
from .metrics import ErrorSums
from .quantizer import Quantizer, SiteCalibration
from .scales import weight_input_amax

CALIBRATION_STATS = ("extrema", "moments", "histogram")
EVALUATION_STATS = ("extrema", "moments")


def calibrate(
    model, bindings, channels: dict[str, int], batches, n_samples: int, linear_modules
) -> dict[str, SiteCalibration]:
    """{hooked site name -> SiteCalibration}; linear_modules: site name -> modules reading it."""
    device = input_device(model)
    acc = Accumulator(channels, n_samples, device, CALIBRATION_STATS)
    stream(model, bindings, batches, acc.update, acc.begin_batch, acc.end_batch)
    kinds = {b.site.name: b.site.kind for b in bindings}
    out = {}
    for name in acc.names:
        ext, mom, hist = (acc.stat(name, s) for s in CALIBRATION_STATS)
        e, m = ext.result(), mom.result()
        mods = linear_modules.get(name)
        out[name] = SiteCalibration(
            name=name,
            kind=kinds[name],
            channels=channels[name],
            amax=e["absmax"] or 0.0,
            rms=m["rms"] or 0.0,
            ch_amax=ext.ch_absmax.clone(),
            hist=hist.hist.cpu().numpy(),
            weight_amax=_weight_amax(mods).to(device) if mods else None,
        )
    return out


def _weight_amax(modules) -> torch.Tensor:
    """max|W| per input channel; offloaded weights (--device-map) are brought in for the read."""
    from accelerate.utils import align_module_device

    with contextlib.ExitStack() as stack:
        for m in modules:
            stack.enter_context(align_module_device(m))
        return weight_input_amax(modules)


class EvalSink:
    """Hook sink of the evaluation pass: every quantizer of the site on the batch's real tokens."""

    def __init__(
        self, channels: dict[str, int], quantizers: dict[str, list[Quantizer | None]], n_samples, device
    ):
        self.names = list(channels)
        self.stats = Accumulator(channels, n_samples, device, EVALUATION_STATS)
        self.quantizers = [quantizers[n] for n in self.names]
        self.errors = [ErrorSums(len(quantizers[n]), device) for n in self.names]

    def update(self, i: int, x: torch.Tensor) -> None:
        view = SiteView(x.detach(), self.stats.ctx)  # drops padding once for all users
        for s in self.stats.stats[self.names[i]]:
            s.update(view)
        x0 = self.errors[i].add_site(view.x)  # (N, C) float32, nonfinite -> 0 (counted)
        for j, q in enumerate(self.quantizers[i]):
            if q is not None:  # None: scheme does not apply to this site (SmoothQuant off linear inputs)
                xq, clipped = q(x0)
                self.errors[i].update(j, x0, xq, clipped)


def evaluate(model, bindings, channels, quantizers, batches, n_samples: int) -> EvalSink:
    device = input_device(model)
    sink = EvalSink(channels, quantizers, n_samples, device)
    stream(model, bindings, batches, sink.update, sink.stats.begin_batch, sink.stats.end_batch)
    return sink
