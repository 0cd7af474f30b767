"""PNG figures of an evaluation (matplotlib, Agg backend: no display needed).

A figure is a grid of :class:`Panel` s; each panel draws model and reference MD on shared axes
(lines, histograms, a model-vs-reference scatter or bars). :func:`draw` writes one PNG.
"""

from __future__ import annotations

import math
import os
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


@dataclass
class Panel:
    """One set of axes.

    Attributes:
        title, xlabel, ylabel: text of the axes.
        kind: ``"line"`` (series are ``(x, y)``), ``"hist"`` (series are samples, drawn as
            normalised histograms on shared bins), ``"scatter"`` (one series ``(reference,
            model)`` with the identity line; ``names`` annotate the points) or ``"bar"`` (one
            series ``(labels, values)``, ``None`` values shown as "n/a").
        series: label -> data, as described for ``kind``.
        log: log-log axes (line and scatter panels; non-positive points are dropped).
        xlog: a logarithmic x axis only (line panels; non-positive x are dropped).
        spans: label -> ``(x0, x1)`` shaded in that series' colour (fit windows).
        hline: y of a dashed horizontal guide (g(r) = 1, C = 0).
        names: point labels of a scatter panel.
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


def _bar(ax: plt.Axes, panel: Panel) -> None:
    (labels, values), = panel.series.values()
    heights = np.array([np.nan if v is None else float(v) for v in values])
    positions = np.arange(len(labels))
    ax.bar(positions, np.nan_to_num(heights))
    for x, h in zip(positions, heights, strict=True):
        ax.annotate("n/a" if np.isnan(h) else f"{h:.3g}", (x, np.nan_to_num(h)), ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(positions, labels, rotation=20, ha="right", fontsize=7)
    ax.axhline(0.0, color="black", lw=0.6)


_DRAWERS = {"line": _line, "hist": _hist, "scatter": _scatter, "bar": _bar}


def draw(path: str | os.PathLike, panels: Sequence[Panel]) -> Path:
    """Draw ``panels`` in a grid (up to three per row) into the PNG ``path``; return ``path``."""
    n_cols = min(_COLUMNS, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.4 * n_cols, 3.3 * n_rows), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels, strict=False):  # spare axes hidden below
        _DRAWERS[panel.kind](ax, panel)
        if panel.hline is not None:
            ax.axhline(panel.hline, color="grey", ls="--", lw=0.8)
        ax.set_title(panel.title, fontsize=9)
        ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path
