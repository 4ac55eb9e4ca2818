"""Quantization verification: what the measured range does to INT8, FP8, INT4 and FP4 blocks.

formats.py      number formats as frozen specs (int8, int4, fp8 e4m3/e5m2, fp4, MXFP4, NVFP4)
granularity.py  per-tensor / per-channel (static), per-token / per-group (dynamic)
primitives.py   pure functions: amax -> scale -> fake-quantize; SQNR
scheme.py       "int8:tensor:mse+sq0.5" <-> Scheme; default scheme grid
scales.py       static scales: absmax, histogram percentile, MSE clip search, SmoothQuant
quantizer.py    a scheme with its calibrated scales for one site
splits.py       calibration / evaluation splits, disjoint by sample
passes.py       streaming calibration and evaluation passes (hooks, no stored activations)
metrics.py      error sums -> SQNR, rel RMSE / MAE, clip and underflow rates
e2e.py          fake-quantized linear inputs: CE, perplexity and KL vs the float model
covariance.py   Pearson / Spearman of log max|a| vs SQNR
recommend.py    cheapest scheme within a budget, sites to keep in high precision
pipeline.py     run_quant(): all of the above, written into the run directory
"""

from .config import QuantConfig
from .formats import FORMATS, FP8_E4M3, FP8_E5M2, INT4, INT8, MXFP4, NVFP4
from .pipeline import run_quant
from .scheme import Scheme, parse_scheme

__all__ = [
    "FORMATS",
    "FP8_E4M3",
    "FP8_E5M2",
    "INT4",
    "INT8",
    "MXFP4",
    "NVFP4",
    "QuantConfig",
    "Scheme",
    "parse_scheme",
    "run_quant",
]
