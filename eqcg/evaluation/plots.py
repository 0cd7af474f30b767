"""PNG figures of an evaluation (matplotlib, Agg backend: no display needed).

A figure is a grid of :class:`Panel` s; each panel draws model and reference MD on shared axes
(lines, histograms, a model-vs-reference scatter or bars). :func:`figure` lays a grid out (titles
wrapped to their panel, rows as tall as their bar labels need, so no text runs into a
neighbour's); :func:`draw` writes it as one PNG.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

_DPI = 90
_COLUMNS = 3
_WIDTH, _HEIGHT = 4.4, 3.3  # inches per panel (at least)
_TITLE_CHARS = 40  # characters per title line: narrower than a panel's axes
_BAR_LABEL_CHARS = 20  # characters per line of a bar's label
_BAR_FONT = 7  # points


@dataclass
class Panel:
    """One set of axes.

    Attributes:
        title, xlabel, ylabel: text of the axes.
        kind: ``"line"`` (series are ``(x, y)``), ``"hist"`` (series are samples, drawn as
            normalised histograms on shared bins), ``"scatter"`` (one series ``(reference,
            model)`` with the identity line; ``names`` annotate the points) or ``"bar"`` (one
            series ``(labels, values)``: horizontal bars, first at the top, each labelled with
            its value, ``None`` values shown as "n/a").
        series: label -> data, as described for ``kind``.
        log: log-log axes (line and scatter panels; non-positive points are dropped).
        xlog: a logarithmic x axis only (line panels; non-positive x are dropped).
        spans: label -> ``(x0, x1)`` shaded in that series' colour (fit windows).
        hline: y of a dashed horizontal guide (g(r) = 1, C = 0).
        names: point labels of a scatter panel.
        intervals: bar panels: each bar's ``[low, high]`` (drawn as an error bar from low to
            high; ``None``, or one with a ``None`` end, draws none).
    """

    title: str
    xlabel: str
    ylabel: str
    kind: str = "line"
    series: Mapping[str, object] = field(default_factory=dict)
    log: bool = False
    xlog: bool = False
    spans: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    hline: float | None = None
    names: Sequence[str] = ()
    intervals: Sequence[Sequence[float | None] | None] = ()


def _line(ax: plt.Axes, panel: Panel) -> None:
    for label, (x, y) in panel.series.items():
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if panel.log or panel.xlog:
            keep = (x > 0) & ((y > 0) | (not panel.log))
            x, y = x[keep], y[keep]
        (line,) = ax.plot(x, y, label=label, lw=1.2)
        if label in panel.spans:
            ax.axvspan(*panel.spans[label], color=line.get_color(), alpha=0.12)
    if panel.log or panel.xlog:
        ax.set_xscale("log")
    if panel.log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)


def _hist(ax: plt.Axes, panel: Panel, bins: int = 50) -> None:
    samples = {label: np.ravel(v) for label, v in panel.series.items() if np.size(v)}
    low = min(float(v.min()) for v in samples.values())
    high = max(float(v.max()) for v in samples.values())
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    for label, values in samples.items():
        ax.hist(values, bins=edges, density=True, histtype="step", lw=1.3, label=label)
    ax.legend(fontsize=7)


def _scatter(ax: plt.Axes, panel: Panel) -> None:
    (reference, model), = panel.series.values()
    reference, model = np.asarray(reference, float), np.asarray(model, float)
    keep = np.isfinite(reference) & np.isfinite(model)
    if panel.log:
        keep &= (reference > 0) & (model > 0)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.scatter(reference[keep], model[keep], s=16)
    if keep.any():
        low = min(reference[keep].min(), model[keep].min())
        high = max(reference[keep].max(), model[keep].max())
        if panel.log:  # square axes; minor ticks at 2 and 5 only, so their labels fit
            ends = [low / 1.2, high * 1.2]
            ax.set(xlim=ends, ylim=ends)
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
        else:
            pad = 0.05 * (high - low) if high > low else 0.05 * abs(high) + 1e-12
            ends = [low - pad, high + pad]
        ax.plot(ends, ends, "k--", lw=0.8)
    if 0 < keep.sum() <= 12 and len(panel.names):
        names = np.asarray(panel.names)[keep]
        for name, x, y in zip(names, reference[keep], model[keep], strict=True):
            ax.annotate(str(name), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")


def _bar_labels(panel: Panel) -> list[str]:
    """Each bar's label with its value, wrapped to :data:`_BAR_LABEL_CHARS` per line."""
    (labels, values), = panel.series.values()
    return [textwrap.fill(f"{label}: {'n/a' if v is None else f'{float(v):.3g}'}",
                          _BAR_LABEL_CHARS, break_long_words=True)
            for label, v in zip(labels, values, strict=True)]


def _bar(ax: plt.Axes, panel: Panel) -> None:
    (_, values), = panel.series.values()
    widths = np.array([np.nan if v is None else float(v) for v in values])
    positions = np.arange(len(widths))
    ax.barh(positions, np.nan_to_num(widths))
    shown = [(y, *interval) for y, interval in zip(positions, panel.intervals, strict=False)
             if interval is not None and None not in interval]
    if shown:  # centred on the interval: it spans [low, high] wherever the value lies
        y, low, high = np.array(shown, dtype=float).T
        ax.errorbar((low + high) / 2, y, xerr=(high - low) / 2, fmt="none", ecolor="black",
                    elinewidth=1.0, capsize=3)
    ax.set_yticks(positions, _bar_labels(panel), fontsize=_BAR_FONT)
    ax.invert_yaxis()  # the first bar on top, as in the table
    ax.axvline(0.0, color="black", lw=0.6)


def _height(panel: Panel) -> float:
    """Inches a panel needs: :data:`_HEIGHT`, or more for the wrapped labels of many bars."""
    if panel.kind != "bar":
        return _HEIGHT
    lines = [label.count("\n") + 1 for label in _bar_labels(panel)]
    label_inches = sum(n * _BAR_FONT * 1.3 + 6 for n in lines) / 72
    return max(_HEIGHT, label_inches + 1.5)  # + title, x axis and margins


_DRAWERS = {"line": _line, "hist": _hist, "scatter": _scatter, "bar": _bar}


def figure(panels: Sequence[Panel]) -> plt.Figure:
    """``panels`` in a grid, up to three per row, titles wrapped to their panel and each row as
    tall as its tallest panel needs (:func:`_height`)."""
    n_cols = min(_COLUMNS, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    heights = [max(_height(p) for p in panels[row * n_cols:(row + 1) * n_cols])
               for row in range(n_rows)]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(_WIDTH * n_cols, sum(heights)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes.ravel(), panels, strict=False):  # spare axes hidden below
        _DRAWERS[panel.kind](ax, panel)
        if panel.hline is not None:
            ax.axhline(panel.hline, color="grey", ls="--", lw=0.8)
        ax.set_title(textwrap.fill(panel.title, _TITLE_CHARS), fontsize=9)
        ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def draw(path: str | os.PathLike, panels: Sequence[Panel]) -> Path:
    """Draw ``panels`` (:func:`figure`) into the PNG ``path``; return ``path``."""
    fig = figure(panels)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=_DPI)
    finally:
        plt.close(fig)
    return path
