"""Streaming, mergeable statistics, masked for padding.

Each statistic is a small class (base.Statistic): update(view) from hooks,
merge(other), state_dict() / load_state_dict(), result(). The heavy work of a
batch, one pass over every element of a site, happens once per site in
kernels.py (a C kernel on the CPU, torch elsewhere); update() folds the few
partials a statistic needs into its state. On the CPU the C kernel does those
folds as well (accumulator.py, `native_slots`): a site costs one call per batch.
"""

from ..registry import Registry
from .base import BatchContext, SiteView, Statistic
from .distribution import Histogram
from .extrema import Extrema
from .moments import Moments
from .tokens import Massive, SampleMax
from .topk import TopK

STATISTICS: Registry[type[Statistic]] = Registry("statistic")
for _cls in (Extrema, Moments, Histogram, TopK, Massive, SampleMax):
    STATISTICS.register(_cls.name, _cls)

DEFAULT_STATISTICS = ("extrema", "moments", "histogram", "topk", "massive", "samples")

__all__ = ["STATISTICS", "DEFAULT_STATISTICS", "BatchContext", "SiteView", "Statistic"]
