"""The largest finite values of the number formats actscope judges against, from torch.finfo.

One place for these numbers: the summary's safety verdicts, the histogram's
threshold fractions, the report's charts and the quantization formats all read them here.
"""

from __future__ import annotations

import torch

FP16_MAX = float(torch.finfo(torch.float16).max)  # 65,504, representable: a value of exactly 65,504 fits
# Where float16 overflows: values round to nearest (ties to even) and 65,520 is the midpoint
# between 65,504 and 2**16, so |a| >= 65,520 becomes inf and 65,504 <= |a| < 65,520 does not.
FP16_OVERFLOW = 65520.0
BF16_MAX = float(torch.finfo(torch.bfloat16).max)
FP8_E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
FP8_E5M2_MAX = float(torch.finfo(torch.float8_e5m2).max)  # 57,344
