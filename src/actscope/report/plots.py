"""Static charts as inline SVG strings (matplotlib, no JavaScript, prints well).

Every function takes plain data and returns the <svg> element as text; the HTML
template inlines it. Text stays text (svg.fonttype none) so the charts are small,
searchable and sharp in print. Colours are fixed per site kind across charts.
"""

from __future__ import annotations

import io
import itertools
import math

import matplotlib

matplotlib.use("Agg")  # no display; this module only ever writes SVG
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..limits import FP8_E4M3_MAX, FP16_MAX  # noqa: E402
from ..sites import KINDS  # noqa: E402
from ..textsafe import svg as _plain_text  # noqa: E402  (corpus or model names as literal label text)
from ..textsafe import visible  # noqa: E402

_COLORS = dict(
    zip(KINDS, plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2], strict=False)
)
_salt = itertools.count()


def kind_color(kind: str):
    return _COLORS.get(kind, "0.4")


def _figure(w: float = 7.5, h: float = 3.6):
    return plt.subplots(figsize=(w, h), layout="constrained")


def to_svg(fig, title: str) -> str:
    """The figure as an <svg> element with an accessible title; ids unique within the page."""
    buf = io.StringIO()
    # Unique clip-path ids: several charts share one HTML document.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"actscope-{next(_salt)}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Title": title})
    plt.close(fig)
    svg = buf.getvalue()
    # Drop the XML declaration and DOCTYPE. Any control or bidi character left in a label
    # (XML forbids most controls; bidi overrides reorder what the reader sees) becomes an escape.
    svg = visible(svg[svg.index("<svg") :], keep="\n\r\t")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_attr(title)}" class="chart" ', 1)


def _attr(s: str) -> str:
    return s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _legend_outside(ax, title: str | None) -> None:
    ax.legend(
        fontsize=7, title=title, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
    )


def _limits_lines(ax, vmax: float, axis: str = "y") -> None:
    """Dashed FP8-E4M3 and fp16 limits, when the data comes within a decade of them."""
    line = ax.axhline if axis == "y" else ax.axvline
    for v, name, style in ((FP8_E4M3_MAX, "FP8 E4M3 max 448", ":"), (FP16_MAX, "fp16 max 65,504", "--")):
        if vmax >= v / 10:
            line(v, color="crimson", linestyle=style, linewidth=1, label=name)


def layer_curves(per_kind: dict[str, list[tuple[int, float]]]) -> str:
    """max|a| per layer, one line per site kind, log y."""
    fig, ax = _figure()
    vmax = 0.0
    for kind, pts in per_kind.items():
        pts = [(layer, v) for layer, v in pts if v and v > 0]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        vmax = max(vmax, max(ys))
        ax.plot(
            xs, ys, marker="o", markersize=3, linewidth=1.4, color=kind_color(kind), label=_plain_text(kind)
        )
    _limits_lines(ax, vmax)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("max |a| (activation units)")
    ax.grid(True, which="major", alpha=0.3)
    _legend_outside(ax, "site kind")
    return to_svg(fig, "max |a| per layer and site kind")


def heatmap(layers: list[int], kinds: list[str], values: np.ndarray) -> str:
    """values: (kinds, layers) max|a|, nan where a kind has no site in a layer; colour is log10."""
    fig, ax = _figure(7.5, 0.5 + 0.32 * max(len(kinds), 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.where(values > 0, np.log10(values), np.nan)
    im = ax.imshow(logv, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(kinds)), [_plain_text(k) for k in kinds], fontsize=8)
    step = max(1, math.ceil(len(layers) / 24))
    ax.set_xticks(range(0, len(layers), step), [str(x) for x in layers[::step]], fontsize=8)
    ax.set_xlabel("layer")
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("log10 max |a|", fontsize=8)
    return to_svg(fig, "heatmap of log10 max |a|, layers by site kind")


def channel_profile(site: str, absmax: np.ndarray, massive: np.ndarray, label_top: int = 4) -> str:
    """Per-channel max|a| at one site; channels holding massive activations in red."""
    fig, ax = _figure(7.5, 3.2)
    ch = np.arange(absmax.size)
    hot = massive > 0
    ax.vlines(ch[~hot], 0, absmax[~hot], color="steelblue", linewidth=0.6, label="channel")
    if hot.any():
        ax.vlines(ch[hot], 0, absmax[hot], color="crimson", linewidth=1.4, label="massive-activation channel")
    floor = max(float(np.min(absmax[absmax > 0], initial=1.0)) / 2, 1e-6)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    for c in np.argsort(absmax)[::-1][:label_top]:
        ax.annotate(str(c), (c, absmax[c]), textcoords="offset points", xytext=(2, 2), fontsize=7)
    ax.set_xlabel(f"channel of {_plain_text(site)}")
    ax.set_ylabel("max |a| over the corpus")
    ax.set_xlim(-0.5, absmax.size - 0.5)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return to_svg(fig, f"per-channel max |a| at {site}")


def ccdf(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """P(|a| >= x) per site kind, log-log."""
    fig, ax = _figure()
    vmax, lefts = 0.0, []
    for kind, (x, p) in curves.items():
        keep = (x > 0) & (p > 0)
        if keep.any():
            ax.step(
                x[keep], p[keep], where="post", color=kind_color(kind), linewidth=1.3, label=_plain_text(kind)
            )
            vmax = max(vmax, float(x[keep].max()))
            body = x[keep][p[keep] <= 0.999]  # the 0.1% quantile of |a| and up
            if body.size:
                lefts.append(float(body[0]))
    _limits_lines(ax, vmax, axis="x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if lefts:  # start where the tails start: below that every curve is ~1
        ax.set_xlim(left=min(lefts) / 2)
    ax.set_xlabel("|a| (activation units)")
    ax.set_ylabel("P(|a| ≥ x), fraction of elements")
    ax.grid(True, which="major", alpha=0.3)
    _legend_outside(ax, "site kind")
    return to_svg(fig, "tail of |a| per site kind (CCDF)")


def domain_bars(domains: dict[str, float]) -> str:
    """One dot per domain on a log axis, labelled with its value (log bars would start nowhere)."""
    items = sorted(domains.items(), key=lambda kv: kv[1])
    fig, ax = _figure(7.5, 0.8 + 0.3 * max(len(items), 2))
    names = [_plain_text(n) for n, _ in items]
    vals = np.array([v for _, v in items], dtype=float)
    y = np.arange(len(items))
    ax.hlines(y, vals.min() / 10, vals, color="0.75", linewidth=1)
    ax.plot(vals, y, "o", color="slateblue")
    for yi, v in zip(y, vals, strict=True):
        ax.annotate(f"{v:.4g}", (v, yi), textcoords="offset points", xytext=(5, -3), fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(-0.7, len(items) - 0.3)
    ax.set_xscale("log")
    ax.set_xlim(vals.min() / 10, vals.max() * 10)  # at least one decade tick either side
    ax.set_xlabel("max |a| over the domain's samples (activation units)")
    ax.grid(True, axis="x", alpha=0.3)
    return to_svg(fig, "max |a| per corpus domain")


def bootstrap_intervals(boot: list[dict], full_m: float) -> str:
    fig, ax = _figure(7.5, 2.6)
    ns = [b["n"] for b in boot]
    med = np.array([b["median"] for b in boot])
    lo = med - np.array([b["lo95"] for b in boot])
    hi = np.array([b["hi95"] for b in boot]) - med
    ax.errorbar([str(n) for n in ns], med, yerr=[lo, hi], fmt="o", capsize=4, label="median, 95% interval")
    ax.axhline(full_m, color="crimson", linestyle="--", linewidth=1, label=f"full-corpus M = {full_m:.4g}")
    ax.set_xlabel("samples per subset")
    ax.set_ylabel("M of the subset")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return to_svg(fig, "bootstrap intervals of M by subset size")


def compare_bars(rows: list[dict]) -> str:
    """log10 M per model: measured bars, published values as markers."""
    fig, ax = _figure(7.5, 0.9 + 0.38 * max(len(rows), 2))
    labels = [r["model"] for r in rows]
    y = np.arange(len(rows))
    ax.barh(y, [r["log10_M"] or 0 for r in rows], color="steelblue", label="measured")
    pub = [(i, math.log10(r["published_M"])) for i, r in enumerate(rows) if r.get("published_M")]
    if pub:
        ax.plot([p[1] for p in pub], [p[0] for p in pub], "D", color="darkorange", label="published (MA)")
    for v, name, style in (
        (math.log10(FP8_E4M3_MAX), "FP8 E4M3 448", ":"),
        (math.log10(FP16_MAX), "fp16 65,504", "--"),
    ):
        ax.axvline(v, color="crimson", linestyle=style, linewidth=1, label=name)
    ax.set_yticks(y, [_plain_text(n) for n in labels], fontsize=8)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.set_xlabel("log10 M  (M = max |a| over all sites and tokens)")
    ax.grid(True, axis="x", alpha=0.3)
    _legend_outside(ax, None)
    return to_svg(fig, "log10 M per model")


def quant_schemes(rows: list[dict], budget_db: float | None) -> str:
    """Per scheme: median SQNR over linear inputs (bar), the worst linear input and the
    peak residual site (markers), with the SQNR budget."""
    rows = [r for r in rows if r["linear_median"] is not None]
    fig, ax = _figure(7.5, 0.9 + 0.3 * max(len(rows), 2))
    y = np.arange(len(rows))
    med = np.array([_finite_db(r["linear_median"]) for r in rows])
    ax.barh(y, med, color="lightsteelblue", label="median SQNR, linear inputs")
    worst = [(i, _finite_db(r["linear_min"])) for i, r in enumerate(rows) if r["linear_min"] is not None]
    ax.plot([w[1] for w in worst], [w[0] for w in worst], "v", color="crimson", label="worst linear input")
    peak = [(i, _finite_db(r["peak_residual"])) for i, r in enumerate(rows) if r["peak_residual"] is not None]
    if peak:
        ax.plot(
            [p[1] for p in peak], [p[0] for p in peak], "o", color="darkorange", label="peak residual site"
        )
    if budget_db is not None:
        ax.axvline(budget_db, color="0.3", linestyle="--", linewidth=1, label=f"budget {budget_db:g} dB")
    ax.set_yticks(y, [_plain_text(r["scheme"]) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR (dB, held-out samples)")
    ax.grid(True, axis="x", alpha=0.3)
    _legend_outside(ax, None)
    return to_svg(fig, "SQNR per quantization scheme")


def _finite_db(v: float) -> float:
    """Exact (infinite-SQNR) results drawn at 100 dB, off any realistic scale."""
    return 100.0 if v is None or not math.isfinite(v) else v


def trend_lines(result: dict) -> str:
    """M per site kind against training step (or checkpoint), log y, with the FP8 / fp16 limits."""
    fig, ax = _figure()
    points = result["points"]
    numeric = result["x_label"] == "training step"
    xs = [p["x"] for p in points] if numeric else list(range(len(points)))
    kinds = list(dict.fromkeys(k for p in points for k in p["kinds"]))
    vmax = 0.0
    for kind in kinds:
        pts = [(x, p["kinds"].get(kind)) for x, p in zip(xs, points, strict=True)]
        pts = [(x, v) for x, v in pts if v and v > 0]
        if pts:
            vmax = max(vmax, max(v for _, v in pts))
            ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, linewidth=1.4,
                    color=kind_color(kind), label=kind)  # fmt: skip
    _limits_lines(ax, vmax)
    ax.set_yscale("log")
    if not numeric:
        ax.set_xticks(xs, [_plain_text(p["x"]) for p in points], fontsize=7, rotation=30, ha="right")
    ax.set_xlabel(result["x_label"])
    ax.set_ylabel("max |a| per site kind")
    ax.grid(True, which="major", alpha=0.3)
    _legend_outside(ax, "site kind")
    return to_svg(fig, f"max |a| per site kind by {result['x_label']}")
