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

from ..sites import KINDS  # noqa: E402

FP8_E4M3_MAX, FP16_MAX = 448.0, 65504.0
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
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_attr(title)}" class="chart" ', 1)


def _attr(s: str) -> str:
    return s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


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
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, color=kind_color(kind), label=kind)
    _limits_lines(ax, vmax)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("max |a| (activation units)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best", title="site kind", title_fontsize=7)
    return to_svg(fig, "max |a| per layer and site kind")


def heatmap(layers: list[int], kinds: list[str], values: np.ndarray) -> str:
    """values: (kinds, layers) max|a|, nan where a kind has no site in a layer; colour is log10."""
    fig, ax = _figure(7.5, 0.5 + 0.32 * max(len(kinds), 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.where(values > 0, np.log10(values), np.nan)
    im = ax.imshow(logv, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
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
    ax.set_xlabel(f"channel of {site}")
    ax.set_ylabel("max |a| over the corpus")
    ax.set_xlim(-0.5, absmax.size - 0.5)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return to_svg(fig, f"per-channel max |a| at {site}")


def ccdf(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """P(|a| >= x) per site kind, log-log."""
    fig, ax = _figure()
    vmax = 0.0
    for kind, (x, p) in curves.items():
        keep = (x > 0) & (p > 0)
        if keep.any():
            ax.step(x[keep], p[keep], where="post", color=kind_color(kind), linewidth=1.3, label=kind)
            vmax = max(vmax, float(x[keep].max()))
    _limits_lines(ax, vmax, axis="x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|a| (activation units)")
    ax.set_ylabel("P(|a| ≥ x), fraction of elements")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, title="site kind", title_fontsize=7)
    return to_svg(fig, "tail of |a| per site kind (CCDF)")


def domain_bars(domains: dict[str, float]) -> str:
    items = sorted(domains.items(), key=lambda kv: kv[1])
    fig, ax = _figure(7.5, 0.6 + 0.28 * max(len(items), 3))
    names, vals = zip(*items, strict=True)
    ax.barh(names, vals, color="slateblue")
    ax.set_xscale("log")
    ax.set_xlabel("max |a| over the domain's samples")
    ax.tick_params(axis="y", labelsize=8)
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
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("log10 M  (M = max |a| over all sites and tokens)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return to_svg(fig, "log10 M per model")
