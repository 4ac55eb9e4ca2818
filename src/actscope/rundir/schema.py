"""The run directory's tables: one Arrow schema per Parquet file, and what each column means.

The statistics declare the columns they contribute (Statistic.columns and
channel_columns); the rest is fixed here. docs/run-format.md lists exactly these
columns (tests/test_run_format_docs.py holds the two equal), so this module is
the one place that says what a run directory contains.

Tables whose columns depend on the run: `sites` (the statistics measured) and
`samples` (one column per hooked site); `schema(name, ...)` builds those.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
MANIFEST = "run.json"
STATE = "state/accumulators.safetensors"
TABLES = ("sites", "channels", "hist", "topk", "samples")  # written by measure and merge
QUANT_TABLES = ("quant", "quant_corr", "quant_kv")  # written by `actscope quant`
DEPLOY_TABLES = ("audit",)  # written by `actscope audit`

_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}

# (column, type, meaning). Statistic columns come between SITE_HEAD and SITE_TAIL.
SITE_HEAD = (
    ("site", "string", "site name, e.g. `layers.12.resid.out`"),
    ("alias_of", "string", "the hooked site whose tensor this one is (null: hooked itself)"),
)
SITE_TAIL = (
    ("kind", "string", "site kind (embedding, residual, attention, mlp, gate, act, linear_input, ...)"),
    ("layer", "int64", "decoder layer index (null outside the layers)"),
    ("module", "string", "module path in the model"),
    ("note", "string", "how the adapter found the site, where it says"),
)
SITE_STAT_MEANINGS = {
    "elements": "elements measured (real tokens x channels)",
    "tokens": "real tokens measured",
    "channels": "channels C of the site's (tokens, C) view",
    "min": "smallest finite value",
    "max": "largest finite value",
    "absmax": "max\\|a\\| over finite values",
    "absmax_signed": "the signed value of absmax",
    "zero_channels": "channels exactly 0 on every token (MoE routing sites: experts that got no token)",
    "nonfinite_channels": "channels that held a nan or inf",
    "mean": "mean of the finite elements",
    "std": "standard deviation",
    "rms": "root mean square",
    "kurtosis": "excess kurtosis (central)",
    "posinf": "+inf elements",
    "neginf": "-inf elements",
    "nan": "nan elements",
    "massive_elements": "massive activations (Sun et al., per-token median)",
    "massive_tokens": "tokens holding at least one massive activation (at this site)",
    "massive_lower_bound": "true when the massive counts are lower bounds",
    "tokens_over_100": "tokens with max\\|a\\| > 100",
}
CHANNEL_HEAD = (
    ("site", "string", "hooked site"),
    ("channel", "int64", "channel index"),
)
CHANNEL_MEANINGS = {
    "absmax": "max\\|a\\| of the channel's finite values",
    "nonfinite": "nan and inf elements in the channel",
    "mean": "mean of the channel",
    "rms": "rms of the channel",
    "sum_sq": "sum of x^2 (what llama.cpp's imatrix stores)",
    "massive": "massive elements in the channel",
    "ge6": "tokens with \\|a\\| >= 6 in the channel",
}
HIST = (
    ("site", "string", "hooked site"),
    ("bin", "int64", "bin index (sign, exponent, 5 mantissa bits of the float32 encoding)"),
    ("sign", "int64", "+1 or -1"),
    ("lower", "float64", "lower \\|a\\| edge"),
    ("upper", "float64", "upper \\|a\\| edge"),
    ("count", "int64", "elements in the bin"),
)
TOPK = (
    ("site", "string", "hooked site"),
    ("rank", "int64", "0 = largest"),
    ("value", "float64", "signed value at the token's argmax channel"),
    ("absval", "float64", "max\\|a\\| of the token"),
    ("sample", "int64", "corpus sample index"),
    ("sample_id", "string", "corpus sample id"),
    ("domain", "string", "corpus domain"),
    ("pos", "int64", "token position in the sample (BOS included)"),
    ("channel", "int64", "argmax channel"),
    ("token", "int64", "token id"),
    ("token_text", "string", "the token, decoded"),
    ("context", "string", "the measured tokens around it, the peak token in `[[ ]]`"),
)
SAMPLES_HEAD = (
    ("sample", "int64", "corpus sample index"),
    ("sample_id", "string", "corpus sample id"),
    ("domain", "string", "corpus domain"),
    ("source", "string", "where the sample came from"),
    ("tokens", "int64", "tokens measured (0: not measured)"),
)
SAMPLES_SITE = (
    "SITE",
    "float64",
    "one column per hooked site: the sample's max\\|a\\| there (-1: not measured)",
)
QUANT = (
    ("site", "string", "hooked site"),
    ("kind", "string", "site kind"),
    ("layer", "int64", "decoder layer"),
    ("aliases", "string", "sites sharing the tensor, comma-separated"),
    ("channels", "int64", "channels"),
    ("scheme", "string", "scheme name, FORMAT:GRANULARITY:METHOD[+sqALPHA]"),
    ("format", "string", "number format"),
    ("granularity", "string", "tensor, channel, token or group size"),
    ("method", "string", "absmax, pX, mse, or dynamic"),
    ("smooth_alpha", "float64", "SmoothQuant alpha (null: none)"),
    ("bits", "float64", "storage bits per element, shared scales included"),
    ("sqnr_db", "float64", "signal-to-quantization-noise ratio on the held-out split"),
    ("rel_rmse", "float64", "relative RMS error"),
    ("rel_mae", "float64", "relative mean absolute error"),
    ("clip_rate", "float64", "fraction of elements that saturated"),
    ("underflow_rate", "float64", "fraction of nonzero elements that became 0"),
    ("elements", "int64", "elements evaluated"),
    ("nonfinite", "int64", "nonfinite elements (excluded)"),
    ("absmax", "float64", "max\\|a\\| on the evaluation split"),
    ("rms", "float64", "rms on the evaluation split"),
    ("calib_absmax", "float64", "max\\|a\\| on the calibration split"),
    ("threshold", "float64", "the static scale's clip threshold (null: dynamic)"),
    ("threshold_rel_error", "float64", "bound on the threshold's relative error (histogram percentiles)"),
    ("clip_ratio", "float64", "threshold / calibration max\\|a\\|"),
)
QUANT_CORR = (
    ("scheme", "string", "scheme name"),
    ("sites", "string", "site set (all, linear_input, residual ...)"),
    ("feature", "string", "log10_absmax or log10_absmax_over_rms"),
    ("n", "int64", "sites in the correlation"),
    ("pearson", "float64", "Pearson correlation with SQNR"),
    ("spearman", "float64", "Spearman correlation with SQNR"),
)
QUANT_KV = (
    ("scheme", "string", "KV scheme, FORMAT:GRANULARITY (`fp8-e4m3:tensor`, `int8:head` ...)"),
    ("format", "string", "fp8-e4m3, fp8-e5m2 or int8"),
    ("granularity", "string", "tensor (one scale per layer for K and for V) or head (one per KV head)"),
    ("layer", "int64", "decoder layer"),
    ("tensor", "string", "k or v"),
    ("head", "int64", "KV head (-1: all heads of the layer)"),
    ("sqnr_db", "float64", "SQNR of the fake-quantized cache on the held-out split"),
    ("clip_rate", "float64", "fraction of elements above scale x qmax"),
    ("absmax", "float64", "the run's max\\|a\\| of the head (of the layer for head -1)"),
    ("scale", "float64", "the static scale (head -1 under per-head scales: the largest of the layer)"),
)
AUDIT = (
    ("module", "string", "module path of the checkpoint's quantized linear layer"),
    ("site", "string", "the run's linear-input site of that module (null: not measured)"),
    ("format", "string", "activation number format (fp8_e4m3, int8)"),
    ("input_scale", "float64", "the checkpoint's static input scale"),
    ("representable", "float64", "input_scale x qmax: the largest \\|a\\| it holds"),
    ("measured_peak", "float64", "max\\|a\\| of the module's input over the run"),
    ("headroom", "float64", "representable / measured_peak (below 1: saturates)"),
    ("clip_fraction", "float64", "measured elements with \\|a\\| >= representable (histogram upper bound)"),
    ("sqnr_db", "float64", "SQNR at that scale, from the run's histogram"),
    ("verdict", "string", "saturates, headroom xN, or not measured"),
)
QUANT_COMPARE = QUANT_CORR  # `quant --with`: the same columns over the pooled runs


def _schema(cols) -> pa.Schema:
    return pa.schema([pa.field(name, _TYPES[t]) for name, t, *_ in cols])


def statistic_classes(stat_names) -> list:
    from ..stats import STATISTICS

    return [STATISTICS.get(s) for s in stat_names]


def site_meaning(column: str) -> str:
    if column.startswith("frac_ge_"):
        return f"fraction of elements with \\|a\\| >= {column[8:]} (upper bound)"
    if column.startswith("q") and column[1:].replace(".", "").isdigit():
        return f"the {column[1:]} quantile of \\|a\\| (histogram bin midpoint)"
    return SITE_STAT_MEANINGS[column]


def site_columns(stat_names) -> list[tuple[str, str, str]]:
    cols = [(n, t, site_meaning(n)) for cls in statistic_classes(stat_names) for n, t in cls.columns.items()]
    return [*SITE_HEAD, *cols, *SITE_TAIL]


def channel_columns(stat_names) -> list[tuple[str, str, str]]:
    cols = [
        (n, t, CHANNEL_MEANINGS[n])
        for cls in statistic_classes(stat_names)
        for n, t in cls.channel_columns.items()
    ]
    return [*CHANNEL_HEAD, *cols]


def columns(name: str, stat_names=None, sites=()) -> list[tuple[str, str, str]]:
    """(column, type, meaning) of a table; `sites` names the samples table's per-site columns."""
    from ..stats import DEFAULT_STATISTICS

    stat_names = stat_names or DEFAULT_STATISTICS
    fixed = {
        "hist": HIST,
        "topk": TOPK,
        "quant": QUANT,
        "quant_corr": QUANT_CORR,
        "quant_kv": QUANT_KV,
        "quant_compare": QUANT_COMPARE,
        "audit": AUDIT,
    }
    if name in fixed:
        return list(fixed[name])
    if name == "sites":
        return site_columns(stat_names)
    if name == "channels":
        return channel_columns(stat_names)
    if name == "samples":
        return [*SAMPLES_HEAD, *((s, "float64", SAMPLES_SITE[2]) for s in sites)]
    raise KeyError(f"no table {name!r}")


def schema(name: str, stat_names=None, sites=()) -> pa.Schema:
    return _schema(columns(name, stat_names, sites))


DOC_TABLES = ("sites", "channels", "hist", "topk", "samples", "quant", "quant_corr", "quant_kv", "audit")


def markdown(name: str) -> str:
    """The column table of `name` as docs/run-format.md shows it (scripts/gen_run_format.py)."""
    cols = columns(name, sites=("SITE",)) if name == "samples" else columns(name)
    if name == "samples":
        cols = [c if c[0] != "SITE" else SAMPLES_SITE for c in cols]
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {m} |" for n, t, m in cols]
    return "\n".join(lines)
