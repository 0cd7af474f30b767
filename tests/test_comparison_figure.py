"""comparison.png: no label runs into another or into a neighbouring panel (measured with
matplotlib's renderer), and every bar carries its row's bootstrap interval as an error bar."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

from eqcg.evaluation import plots
from eqcg.evaluation.figures import comparison_panels
from eqcg.evaluation.results import ComparisonRow

LABELS = ["baseline", "equivariant-full-covariance-no-refinement [long chains]",
          "equivariant [short]", "a-variant-name-without-any-break-in-it-at-all"]


def comparison_rows(n: int, seed: int = 0) -> list[ComparisonRow]:
    """``n`` rows with long labels, a value in every column (but the first row's NLL) and
    intervals around them (none for the speed-up, and one interval with a missing end)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        values = {column: float(rng.uniform(-0.5, 1.0)) for column in ComparisonRow.columns()}
        values["nll"] = None if i == 0 else values["nll"]
        intervals = {column: [v - 0.1, v + 0.2] for column, v in values.items()
                     if v is not None and column != "speedup"}
        if i == 1:
            intervals["rg_r2"] = [None, 0.5]
        rows.append(ComparisonRow(label=f"{LABELS[i % len(LABELS)]} {i}", report="r", **values,
                                  intervals=intervals))
    return rows


def _drawn_texts(fig: plt.Figure) -> list[Text]:
    """The titles, axis labels and tick labels the figure shows."""
    texts = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [t for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = min(low, high), max(low, high)
            texts += [tick.label1 for tick in axis.get_major_ticks()
                      if tick.label1.get_visible() and tick.label1.get_text()
                      and low <= tick.get_loc() <= high]
    return texts


@pytest.mark.parametrize("n_rows", [2, 4, 14])
def test_no_label_of_comparison_png_overlaps_another_or_a_neighbouring_panel(n_rows):
    fig = plots.figure(comparison_panels(comparison_rows(n_rows), ["tau/h"]))
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
        frames = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        assert len(texts) > 4 * len(frames)
        for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
            assert not box_a.overlaps(box_b), (a, b)
        for text, box in texts:
            assert not any(box.overlaps(frame) for frame in frames), text  # all sit outside
            assert (box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1
                    and box.y1 <= fig.bbox.y1), text
    finally:
        plt.close(fig)


def test_every_bar_carries_its_rows_bootstrap_interval_as_its_error_bar():
    rows = comparison_rows(4)
    panels = comparison_panels(rows, ["tau/h"])
    fig = plots.figure(panels)
    try:
        checked = 0
        for ax, panel in zip(fig.axes, panels, strict=False):
            (column,) = panel.series
            expected = {y: row.intervals[column] for y, row in enumerate(rows)
                        if column in row.intervals and None not in row.intervals[column]}
            errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
            drawn = {}
            for container in errorbars:
                _, _, (segments,) = container.lines
                drawn |= {int(round(s[0][1])): [s[0][0], s[1][0]] for s in segments.get_segments()}
            assert drawn.keys() == expected.keys(), column
            for y, interval in expected.items():
                assert drawn[y] == pytest.approx(interval, abs=1e-12), (column, y)
            checked += len(expected)
            labels = ["".join(t.get_text().split()) for t in ax.get_yticklabels()]
            for row, label in zip(rows, labels, strict=True):  # wrapped: compare without spaces
                value = getattr(row, column)
                shown = f"{row.label}: {'n/a' if value is None else f'{value:.3g}'}"
                assert label == "".join(shown.split()), column
        assert checked > 3 * len(panels)
        speedup = panels[[next(iter(p.series)) for p in panels].index("speedup")]
        assert not speedup.intervals or all(i is None for i in speedup.intervals)
    finally:
        plt.close(fig)
