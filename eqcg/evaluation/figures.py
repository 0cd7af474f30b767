"""Which panels the figures of an evaluation and a comparison hold (drawn by
:mod:`eqcg.evaluation.plots`). Each function writes its PNGs under ``out/plots/`` and returns
their paths relative to ``out``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from eqcg.evaluation import plots
from eqcg.evaluation.aggregate import property_column, property_unit
from eqcg.evaluation.properties import (
    ALL_BEADS,
    CHAIN_COM,
    TrajectoryProperties,
    lag_ratio,
    species_pairs,
)
from eqcg.evaluation.results import Aggregate, ComparisonRow, SystemEvaluation
from eqcg.units import unit_system

PLOTS_DIR = "plots"
_PLOT_LABELS = {"model": "model", "reference_matched": "MD (same span)", "reference": "MD (whole)"}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _draw(out: Path, relative: str, panels: list[plots.Panel]) -> str:
    return plots.draw(out / PLOTS_DIR / relative, panels).relative_to(out).as_posix()


def _msd_curve(props: TrajectoryProperties, key: str) -> np.ndarray | None:
    return props.msd_beads if key == ALL_BEADS else props.msd.get(key)


def dynamics_panels(
    name: str, model: TrajectoryProperties, reference: TrajectoryProperties, units: str,
    exact_com: float | None = None,
) -> list[plots.Panel]:
    """Panels of the whole rollout against the whole MD at the same step: MSDs of all beads and
    of chain centres of mass (with the exact ``6 D t`` where ``exact_com`` gives D), their
    ratio, velocity autocorrelations and the bead step correlation along the chain."""
    u = unit_system(units)
    sides = {"model": model, "MD (whole)": reference}
    panels = []
    for key, what in ((ALL_BEADS, "all beads"), (CHAIN_COM, "chain centres of mass")):
        series = {label: (p.lag_time, _msd_curve(p, key)) for label, p in sides.items()
                  if p.lag_time is not None and _msd_curve(p, key) is not None}
        if key == CHAIN_COM and exact_com is not None and series:
            lag = reference.lag_time
            series["exact 6 D t"] = (lag, 6.0 * exact_com * lag)
        if series:
            panels.append(plots.Panel(f"{name}: MSD of {what}", f"lag [{u.time}]",
                                      f"MSD [{u.length}²]", log=True, series=series))
    ratios = {}
    for key in (ALL_BEADS, CHAIN_COM):
        a, b = _msd_curve(model, key), _msd_curve(reference, key)
        if a is not None and b is not None:
            ratios[key] = lag_ratio(model.lag_time, a, reference.lag_time, b)
    if ratios:
        panels.append(plots.Panel(f"{name}: MSD model / MD", f"lag [{u.time}]", "ratio",
                                  xlog=True, series=ratios, hline=1.0))
    for key, what in ((ALL_BEADS, "beads"), (CHAIN_COM, "chain centres of mass")):
        series = {label: (p.step_time * np.arange(p.vacf[key].shape[0]), p.vacf[key])
                  for label, p in sides.items() if key in p.vacf}
        if series:
            panels.append(plots.Panel(f"{name}: step-velocity autocorrelation, {what}",
                                      f"lag [{u.time}]", "C(t)", series=series, hline=0.0))
    series = {label: p.correlation_profile for label, p in sides.items()
              if p.correlation_profile is not None and p.correlation_profile[0].size}
    if series:
        panels.append(plots.Panel(f"{name}: one-step correlation of two beads",
                                  "CG bonds between them", "<dx_i.dx_j> / (|dx_i| |dx_j|)",
                                  series=series, hline=0.0))
    return panels


def system_figures(
    out: Path, name: str, views: dict[str, TrajectoryProperties], units: str,
    exact_com: float | None = None,
) -> dict[str, str]:
    """Draw one system's figures (``rg``, ``msd``, ``structure``, ``dynamics``, those that
    have panels).

    Model curves are the whole finite rollout; MD curves the reference at the rollout's frames
    ("same span") and, for distributions and MSDs, the whole reference. ``dynamics``:
    :func:`dynamics_panels` (``exact_com``: the exact chain centre-of-mass D, if known).
    """
    u = unit_system(units)
    shown = {label: views[view] for view, label in _PLOT_LABELS.items()}
    panels: dict[str, list[plots.Panel]] = {"rg": [], "msd": [], "structure": []}
    if views["model"].rg is not None:
        panels["rg"].append(plots.Panel(
            f"{name}: Rg (mean over chains)", f"time since rollout start [{u.time}]",
            f"Rg [{u.length}]", series={label: (p.time, p.rg.mean(axis=1))
                                        for label, p in shown.items() if label != "MD (whole)"}))
        panels["rg"].append(plots.Panel(
            f"{name}: Rg distribution", f"Rg [{u.length}]", "probability density", kind="hist",
            series={label: p.rg for label, p in shown.items()}))
    for attr, title in (("rg_relaxation", "Rg"), ("end_to_end_relaxation", "end-to-end vector")):
        series = {}
        for label, p in shown.items():
            relaxation = getattr(p, attr)
            if relaxation is not None:
                half = relaxation.acf.shape[0] // 2 + 1  # longer lags have too few origins
                series[label] = (p.time[:half], relaxation.acf[:half])
        if series:
            panels["rg"].append(plots.Panel(f"{name}: {title} autocorrelation",
                                            f"lag [{u.time}]", "C(t)", series=series, hline=0.0))
    for species in views["model"].msd:
        panels["msd"].append(plots.Panel(
            f"{name}: MSD of {species} (shading in a line's colour: its fit window)",
            f"lag [{u.time}]",
            f"MSD [{u.length}²]", log=True,
            series={label: (p.lag_time, p.msd[species]) for label, p in shown.items()
                    if species in p.msd},
            spans={label: p.diffusivity[species].fit_window for label, p in shown.items()
                   if p.diffusivity.get(species)}))
    if views["model"].rdf is not None:
        names = views["model"].species_names
        panels["structure"] += [plots.Panel(
            f"{name}: g(r) {names[a]} – {names[b]}", f"r [{u.length}]", "g(r)", hline=1.0,
            series={label: (p.rdf.r, p.rdf.g[a, b]) for label, p in shown.items()})
            for a, b in species_pairs(len(names))]
    if views["model"].bond_lengths is not None:
        panels["structure"].append(plots.Panel(
            f"{name}: CG bond lengths", f"bond length [{u.length}]", "probability density",
            kind="hist", series={label: p.bond_lengths for label, p in shown.items()}))
    panels["dynamics"] = dynamics_panels(name, views["model"], views["reference"], units,
                                         exact_com)
    return {kind: _draw(out, f"{_safe(name)}/{kind}.png", figure)
            for kind, figure in panels.items() if figure}


def agreement_figures(
    out: Path, systems: dict[str, SystemEvaluation], aggregate: Aggregate, units: str
) -> dict[str, str]:
    """Draw model against reference MD over systems at the same span, one panel per property
    with a finite pair (``agreement``; nothing when there is none)."""
    evaluations = list(systems.values())
    scatter = []
    for key, entry in aggregate.agreement["matched"].items():
        ref = property_column(evaluations, "reference_matched", key)
        mod = property_column(evaluations, "model_matched", key)
        if (np.isfinite(ref) & np.isfinite(mod)).any():
            r2 = entry.pearson_r_squared
            stat = f"r² = {r2:.3f}" if r2 is not None and np.isfinite(r2) else "r² n/a"
            unit = property_unit(key, units)
            scatter.append(plots.Panel(f"{key} ({stat})", f"reference MD [{unit}]",
                                       f"model [{unit}]", kind="scatter",
                                       series={key: (ref, mod)}, names=list(systems)))
    return {"agreement": _draw(out, "agreement.png", scatter)} if scatter else {}


def calibration_figure(out: Path, calibration: dict[str, Any]) -> str:
    """Draw the one-step coverage curve against the calibrated diagonal."""
    nominal, observed = calibration["curve_nominal"], calibration["curve_observed"]
    panel = plots.Panel(
        f"one-step calibration (mean d² = {calibration['mean_mahalanobis_squared']:.2f}, "
        "3 when calibrated)", "nominal coverage of the predicted Gaussian",
        "observed fraction of true accelerations inside", kind="line",
        series={"model": (nominal, observed), "calibrated": (nominal, nominal)})
    return _draw(out, "calibration.png", [panel])


def comparison_panels(rows: list[ComparisonRow], speed_units: list[str]) -> list[plots.Panel]:
    """One bar panel per comparison column that has a value: a bar per row, with the row's
    bootstrap interval of the column as its error bar."""
    labels = [row.label for row in rows]
    readings = ComparisonRow.readings()
    panels = []
    for col, title in ComparisonRow.columns().items():
        values = [getattr(row, col) for row in rows]
        if any(v is not None for v in values):
            unit = f" [{', '.join(speed_units)}]" if col == "model_speed" else ""
            panels.append(plots.Panel(f"{title}{unit} ({readings[col]})", "", "", kind="bar",
                                      series={col: (labels, values)},
                                      intervals=[row.intervals.get(col) for row in rows]))
    return panels


def comparison_figures(
    out: Path, rows: list[ComparisonRow], speed_units: list[str]
) -> dict[str, str]:
    """Draw :func:`comparison_panels` (``comparison``; nothing when no column has a value)."""
    panels = comparison_panels(rows, speed_units)
    return {"comparison": _draw(out, "comparison.png", panels)} if panels else {}
