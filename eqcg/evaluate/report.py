"""Judge a learned rollout against its reference MD (:func:`evaluate`); line up several
evaluations side by side (:func:`compare`).

For every system of ``ROLLOUT_DIR/rollout.h5`` the reference system named in its attributes is
coarse-grained with the rollout's CG settings, and properties are computed on four views:

* ``model`` — the whole rollout, up to its first non-finite frame;
* ``reference_matched`` — the reference beads at the rollout's frames (located by time from
  ``start_frame``), over the span both cover;
* ``model_matched`` — the rollout over that same span (the whole finite rollout when the
  reference is long enough);
* ``reference`` — the whole reference trajectory at its own frame interval.

Cross-system agreement pairs ``model_matched`` with ``reference_matched`` (same simulated span,
same frame spacing) and, separately, ``model`` with ``reference`` (whole trajectories).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.stats

from eqcg.cg.mapping import CGSettings
from eqcg.data.store import ROLLOUT_FILE, TrajectoryDataset, load_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError
from eqcg.evaluate import plots
from eqcg.evaluate.beads import BeadTrajectory, check_same_beads, reference_beads, rollout_beads
from eqcg.evaluate.markdown import image, json_ready, table
from eqcg.evaluate.properties import (
    DEFAULT_OPTIONS,
    PropertyOptions,
    TrajectoryProperties,
    default_rdf_r_max,
    species_pairs,
    trajectory_properties,
)
from eqcg.metrics.agreement import agreement
from eqcg.metrics.dynamics import diffusivity_unit
from eqcg.metrics.stability import COLLISION_THRESHOLDS, collision_report
from eqcg.run_info import write_run_info
from eqcg.systems.generate import LAMMPS_DIR
from eqcg.systems.lammps import lammps_finished, lammps_wall_seconds
from eqcg.units import unit_system

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
COMPARISON_FILES = ("comparison.md", "comparison.json", "comparison.csv")
ROLLOUT_ATTRS = ("reference_system", "cg_level", "whole_molecule_max_atoms", "cg_seed",
                 "start_frame", "dilation", "wall_seconds", "model")
VIEWS = ("model", "model_matched", "reference_matched", "reference")
AGREEMENT_PAIRS = {"matched": ("reference_matched", "model_matched"),
                   "whole": ("reference", "model")}
DEFINITIONS = {
    "pearson_r_squared": "squared Pearson correlation over systems (the r² of Fu et al.)",
    "identity_r2": "coefficient of determination of model = reference: "
                   "1 - sum (model - ref)² / sum (ref - mean ref)²",
    "rg": "mass-weighted radius of gyration of each molecule with more than one bead",
    "relaxation integrated": "dt (1/2 + sum_k C(k)) over Sokal's window (c = 5)",
    "relaxation exponential": "least-squares fit of A exp(-t / tau) to C(t) from lag 0 to the "
                              "first lag where C < acf_floor",
    "diffusivity": "slope / 6 of a straight line through the MSD over fit_window (periodic "
                   "systems: centre-of-mass drift removed first)",
    "collision": "two beads closer than collision_threshold (minimum image)",
}


@dataclass
class _SystemResult:
    """Properties of one system's four views and its JSON summary."""

    name: str
    views: dict[str, TrajectoryProperties]
    summary: dict


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _rollout_settings(system: SystemTrajectory) -> CGSettings:
    missing = [key for key in ROLLOUT_ATTRS if key not in system.attrs]
    if missing:
        raise DataError(f"rollout system {system.name!r}: attributes {missing} are missing")
    a = system.attrs
    return CGSettings(int(a["cg_level"]), int(a["whole_molecule_max_atoms"]), int(a["cg_seed"]))


def _matched_frames(
    model: BeadTrajectory, reference: BeadTrajectory, start_frame: int
) -> np.ndarray:
    """``(n_matched,)`` reference frames at the model's frames, while the reference lasts.

    The model's frame 0 sits at reference frame ``start_frame``; later frames are located by
    time, so rollouts saved every few learned steps match too.
    """
    where = f"rollout system {model.name!r}"
    if reference.n_frames < 2 or not 0 <= start_frame < reference.n_frames:
        raise DataError(f"{where}: start_frame {start_frame} is outside the reference's "
                        f"{reference.n_frames} frames (at least 2 needed)")
    if abs(model.time[0] - reference.time[start_frame]) > 1e-3 * reference.dt:
        raise DataError(f"{where}: starts at time {model.time[0]} but reference frame "
                        f"{start_frame} is at {reference.time[start_frame]}")
    offset = (model.time - model.time[0]) / reference.dt
    frames = start_frame + np.round(offset).astype(np.int64)
    if np.abs(offset - np.round(offset)).max() > 1e-3:
        raise DataError(f"{where}: frame times are not multiples of the "
                        f"reference frame interval {reference.dt}")
    return frames[frames < reference.n_frames]


def _property_values(props: TrajectoryProperties) -> dict[str, float]:
    """The per-system numbers that cross-system agreement is computed for."""
    factor, _ = diffusivity_unit(props.units)
    values = {"rg_mean": props.rg_mean}
    for name in ("rg_relaxation", "end_to_end_relaxation"):
        relaxation = getattr(props, name)
        values[f"{name}_integrated"] = relaxation.integrated.tau if relaxation else np.nan
        values[f"{name}_exponential"] = relaxation.exponential.tau if relaxation else np.nan
    for species, fit in props.diffusivity.items():
        values[f"diffusivity[{species}]"] = fit.diffusivity * factor if fit else np.nan
    return values


def _property_unit(key: str, units: str) -> str:
    system = unit_system(units)
    if key.startswith("diffusivity"):
        return diffusivity_unit(units)[1]
    return system.length if key == "rg_mean" else system.time


def _speed(
    rollout: SystemTrajectory, reference: BeadTrajectory, reference_dir: Path
) -> dict[str, object]:
    """Simulated time per wall-clock hour of the model rollout and of the reference LAMMPS run.

    The reference rate divides the recorded trajectory span by LAMMPS' "Total wall time", which
    also covers any unrecorded equilibration, so it is a lower bound on the MD's speed.
    """
    units = unit_system(rollout.units)
    factor, unit = (1e-3, "ns/h") if units.name == "real" else (1.0, f"{units.time}/h")
    wall = rollout.attrs["wall_seconds"]
    span = float(rollout.time[-1] - rollout.time[0])
    out: dict[str, object] = {"unit": unit, "model_wall_seconds": wall,
                              "model": span / wall * 3600 * factor if wall else None,
                              "reference_md": None, "reference_wall_seconds": None,
                              "speedup": None, "reference_log": None}
    workdir = reference_dir / LAMMPS_DIR / reference.name
    if not lammps_finished(workdir):
        out["reference_note"] = f"no finished LAMMPS log in {workdir}"
        return out
    reference_wall = lammps_wall_seconds(workdir)
    out["reference_wall_seconds"] = reference_wall
    out["reference_log"] = str(workdir)
    if reference_wall > 0:
        out["reference_md"] = reference.span / reference_wall * 3600 * factor
        if out["model"] is not None:
            out["speedup"] = out["model"] / out["reference_md"]
    return out


def _evaluate_system(
    rollout: SystemTrajectory,
    reference_data: TrajectoryDataset,
    threshold: float,
    options: PropertyOptions,
) -> _SystemResult:
    settings = _rollout_settings(rollout)
    reference_name = str(rollout.attrs["reference_system"])
    try:
        reference_system = reference_data[reference_name]
    except KeyError:
        raise DataError(f"rollout system {rollout.name!r}: the reference dataset has no system "
                        f"{reference_name!r}") from None
    model = rollout_beads(rollout)
    reference = reference_beads(reference_system, settings)
    check_same_beads(model, reference)

    stability = collision_report(model.positions, model.box, model.pbc, threshold)
    n_finite = stability.first_nonfinite_frame
    n_finite = model.n_frames if n_finite is None else n_finite
    if n_finite == 0:
        raise DataError(f"rollout system {rollout.name!r}: its first frame is not finite")
    start_frame = int(rollout.attrs["start_frame"])
    matched = _matched_frames(model.frames(slice(0, n_finite)), reference, start_frame)
    n_matched = matched.shape[0]
    traj = {
        "model": model.frames(slice(0, n_finite)),
        "model_matched": model.frames(slice(0, n_matched)),
        "reference_matched": reference.frames(matched),
        "reference": reference,
    }
    r_max = default_rdf_r_max([model.box, reference.box], options) if model.pbc else None
    views = {"model": trajectory_properties(traj["model"], options, r_max)}
    views["model_matched"] = (views["model"] if n_matched == n_finite else
                              trajectory_properties(traj["model_matched"], options, r_max))
    for view in ("reference_matched", "reference"):
        views[view] = trajectory_properties(traj[view], options, r_max)
    reference_stability = collision_report(traj["reference_matched"].positions,
                                           traj["reference_matched"].box, model.pbc, threshold)

    summary = {
        "reference_system": reference_name,
        "model": rollout.attrs["model"],
        "n_beads": model.n_beads,
        "species": {name: int((model.species == i).sum())
                    for i, name in enumerate(model.species_names)},
        "cg_settings": asdict(settings),
        "frames": {"rollout": model.n_frames, "finite": n_finite, "matched": n_matched,
                   "reference": reference.n_frames, "start_frame": start_frame,
                   "dilation": rollout.attrs["dilation"],
                   "reference_frames_per_rollout_frame": model.dt / reference.dt
                   if model.n_frames > 1 else None},
        "span": {"rollout": model.span, "matched": traj["model_matched"].span,
                 "reference": reference.span, "unit": unit_system(model.units).time},
        "reference_covers_rollout": n_matched == model.n_frames,
        "stability": {"model": stability.summary(),
                      "reference_matched": reference_stability.summary()},
        "properties": {view: views[view].summary() for view in VIEWS},
        "values": {view: _property_values(views[view]) for view in VIEWS},
        "distribution_distance": _distribution_distances(views),
        "speed": _speed(rollout, reference, Path(reference_data.path).parent),
    }
    return _SystemResult(rollout.name, views, summary)


def _distribution_distances(views: dict[str, TrajectoryProperties]) -> dict[str, float | None]:
    """Wasserstein-1 distances (length unit) between model and reference MD distributions of Rg
    and CG bond length over the matched span."""
    model, reference = views["model_matched"], views["reference_matched"]
    out: dict[str, float | None] = {}
    for name, attr in (("rg_wasserstein", "rg"), ("bond_length_wasserstein", "bond_lengths")):
        a, b = getattr(model, attr), getattr(reference, attr)
        out[name] = (float(scipy.stats.wasserstein_distance(a.ravel(), b.ravel()))
                     if a is not None and b is not None else None)
    return out


_PLOT_LABELS = {"model": "model", "reference_matched": "MD (same span)", "reference": "MD (whole)"}


def _system_plots(
    out: Path, name: str, views: dict[str, TrajectoryProperties], units: str
) -> dict[str, str]:
    """Draw one system's figures (Rg, MSD, structure); return kind -> path relative to ``out``.

    Model curves are the whole finite rollout; MD curves the reference at the rollout's frames
    ("same span") and, for distributions and MSDs, the whole reference.
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
    folder = out / PLOTS_DIR / _safe(name)
    return {kind: plots.draw(folder / f"{kind}.png", figure).relative_to(out).as_posix()
            for kind, figure in panels.items() if figure}


def _agreement_entry(reference: np.ndarray, model: np.ndarray) -> dict[str, object]:
    try:
        return agreement(reference, model).to_dict()
    except ValueError as exc:
        n = int((np.isfinite(reference) & np.isfinite(model)).sum())
        return {"n": n, "pearson_r": None, "pearson_p": None, "pearson_r_squared": None,
                "spearman_rho": None, "spearman_p": None, "identity_r2": None,
                "reason": str(exc)}


def _aggregate(results: list[_SystemResult], out: Path, units: str, draw_plots: bool) -> dict:
    names = [r.name for r in results]
    stability = [r.summary["stability"]["model"] for r in results]
    keys = sorted({key for r in results for view in VIEWS for key in r.summary["values"][view]})

    def column(view: str, key: str) -> np.ndarray:
        return np.array([r.summary["values"][view].get(key, np.nan) for r in results])

    agreements = {pair: {key: _agreement_entry(column(ref, key), column(mod, key)) for key in keys}
                  for pair, (ref, mod) in AGREEMENT_PAIRS.items()}
    scatter = []
    for key in keys:
        ref, mod = column("reference_matched", key), column("model_matched", key)
        if (np.isfinite(ref) & np.isfinite(mod)).any():
            r2 = agreements["matched"][key]["pearson_r_squared"]
            stat = f"r² = {r2:.3f}" if r2 is not None and np.isfinite(r2) else "r² n/a"
            unit = _property_unit(key, units)
            scatter.append(plots.Panel(f"{key} ({stat})", f"reference MD [{unit}]",
                                       f"model [{unit}]", kind="scatter",
                                       series={key: (ref, mod)}, names=names))
    figures = {}
    if scatter and draw_plots:
        path = plots.draw(out / PLOTS_DIR / "agreement.png", scatter)
        figures["agreement"] = path.relative_to(out).as_posix()
    speeds = [r.summary["speed"] for r in results]

    def median(field: str) -> float | None:
        values = [s[field] for s in speeds if s[field] is not None]
        return float(np.median(values)) if values else None

    n = len(results)
    return {
        "n_systems": n,
        "stability": {
            "finite_fraction": sum(s["finite"] for s in stability) / n,
            "collision_free_fraction": sum(s["collision_free"] for s in stability) / n,
            "stable_fraction": sum(s["stable"] for s in stability) / n,
            "reference_collision_free_fraction": sum(
                r.summary["stability"]["reference_matched"]["collision_free"] for r in results) / n,
            "first_collision_frame": {r.name: s["first_collision_frame"]
                                      for r, s in zip(results, stability, strict=True)},
        },
        "agreement": agreements,
        "mean_over_systems": {key: {view: float(np.nanmean(column(view, key)))
                                    if np.isfinite(column(view, key)).any() else None
                                    for view in VIEWS} for key in keys},
        "units": {key: _property_unit(key, units) for key in keys},
        "speed": {"unit": speeds[0]["unit"], "model_median": median("model"),
                  "reference_median": median("reference_md"), "speedup_median": median("speedup")},
        "plots": figures,
    }


def evaluate(
    rollout_dir: str | os.PathLike,
    reference: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    collision_threshold: float | None = None,
    options: PropertyOptions = DEFAULT_OPTIONS,
    draw_plots: bool = True,
    run: str | os.PathLike | None = None,
    calibrate: bool = True,
) -> dict:
    """Evaluate every system of a rollout against the reference MD it started from.

    Args:
        rollout_dir: directory holding ``rollout.h5`` (see module docstring).
        reference: the reference dataset (its directory or ``dataset.h5``); the LAMMPS run of a
            system, when present, is read from ``<dataset dir>/lammps/<system>/``.
        out_dir: where ``metrics.json``, ``report.md`` and ``plots/*.png`` are written.
        collision_threshold: beads closer than this collide (Å or sigma; default by unit
            system: 1 Å, 0.5 sigma).
        options: analysis choices (fit windows, RDF range, frames for structure).
        draw_plots: draw the PNG figures (``False``: numbers and ``report.md`` only).
        run: the run whose model made the rollout, for the calibration of its one-step
            predictions on the rollout's reference systems (default: the ``run`` recorded in
            the rollout's ``run.json``).
        calibrate: measure that calibration (:mod:`eqcg.evaluate.calibration`).

    Returns the content of ``metrics.json`` (NaN written as null).
    """
    rollout_file = Path(rollout_dir) / ROLLOUT_FILE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with load_dataset(rollout_file) as rollouts, load_dataset(reference) as reference_data:
        if rollouts.units != reference_data.units:
            raise DataError(f"{rollout_file} is in {rollouts.units!r} units but the reference "
                            f"{reference_data.path} in {reference_data.units!r}")
        if collision_threshold is None:
            collision_threshold = COLLISION_THRESHOLDS[rollouts.units]
        results = [_evaluate_system(system, reference_data, collision_threshold, options)
                   for system in rollouts]
        units = rollouts.units
        reference_path = str(reference_data.path)
        val_nll = next((s.attrs["val_nll"] for s in rollouts
                        if s.attrs.get("val_nll") is not None), None)
        calibration = (_calibration(run or _recorded_run(Path(rollout_dir)), reference_data,
                                    [str(s.attrs["reference_system"]) for s in rollouts])
                       if calibrate else {"note": "not measured (calibrate=False)"})
    for r in results:
        r.summary["plots"] = _system_plots(out, r.name, r.views, units) if draw_plots else {}
    variants = sorted({str(r.summary["model"]) for r in results} - {""})
    metrics = json_ready({
        "label": Path(rollout_dir).resolve().name,
        "model": " + ".join(variants),
        "nll": val_nll,
        "rollout": str(rollout_file),
        "reference": reference_path,
        "units": asdict(unit_system(units)) | {"diffusivity": diffusivity_unit(units)[1]},
        "options": {"collision_threshold": collision_threshold, **asdict(options)},
        "views": {"model": "whole rollout up to its first non-finite frame",
                  "model_matched": "rollout over the span the reference covers",
                  "reference_matched": "reference beads at the rollout's frames",
                  "reference": "whole reference trajectory"},
        "definitions": DEFINITIONS,
        "systems": {r.name: r.summary for r in results},
        "aggregate": _aggregate(results, out, units, draw_plots),
        "calibration": calibration,
    })
    if draw_plots and "curve_observed" in calibration:
        metrics["aggregate"]["plots"]["calibration"] = _calibration_plot(out, calibration)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    write_run_info(out, None, None, [], extra={"rollout": str(rollout_file),
                                               "reference": reference_path})
    (out / REPORT_FILE).write_text(_report_markdown(metrics))
    return metrics


_AGREEMENT_HEADERS = ["property", "n", "r² (Pearson²)", "Pearson r", "Spearman ρ",
                      "R² of y = x", "note"]


def _recorded_run(rollout_dir: Path) -> str | None:
    """The run directory recorded in ``rollout_dir/run.json`` by ``eqcg rollout``, if any."""
    info = rollout_dir / "run.json"
    return json.loads(info.read_text()).get("run") if info.exists() else None


def _calibration(run: str | os.PathLike | None, reference: TrajectoryDataset,
                 names: list[str]) -> dict:
    """Calibration of ``run``'s one-step predictions on the reference systems ``names``."""
    if run is None or not Path(run).exists():
        return {"note": f"not measured: run {run!r} not found (pass run=...)"}
    from eqcg.evaluate.calibration import one_step_calibration
    from eqcg.graphs.system import prepare_systems
    from eqcg.models.checkpoint import load_simulator

    simulator, config, _ = load_simulator(run)
    settings = CGSettings.from_config(config.data)
    systems = prepare_systems(reference, settings, simulator.vocabulary, sorted(set(names)))
    result = one_step_calibration(simulator, systems, config.data.dilation)
    return {"run": str(run), "covariance": config.model.covariance,
            "model": config.model.variant, **result.to_dict()}


def _calibration_plot(out: Path, calibration: dict) -> str:
    nominal, observed = calibration["curve_nominal"], calibration["curve_observed"]
    panel = plots.Panel(
        f"one-step calibration (mean d² = {calibration['mean_mahalanobis_squared']:.2f}, "
        "3 when calibrated)", "nominal coverage of the predicted Gaussian",
        "observed fraction of true accelerations inside", kind="line",
        series={"model": (nominal, observed), "calibrated": (nominal, nominal)})
    return plots.draw(out / PLOTS_DIR / "calibration.png", [panel]).relative_to(out).as_posix()


def _agreement_rows(entries: dict) -> list[list[object]]:
    return [[key, e["n"], e["pearson_r_squared"], e["pearson_r"], e["spearman_rho"],
             e["identity_r2"], e.get("reason", "")] for key, e in entries.items()]


def _report_markdown(metrics: dict) -> str:
    agg = metrics["aggregate"]
    stability, speed = agg["stability"], agg["speed"]
    lines = [
        f"# Evaluation of `{metrics['label']}`", "",
        f"- rollout: `{metrics['rollout']}`", f"- reference MD: `{metrics['reference']}`",
        f"- systems: {agg['n_systems']}; collision threshold "
        f"{metrics['options']['collision_threshold']} {metrics['units']['length']}", "",
        "## Stability and speed", "",
        table(["quantity", "value"], [
            ["finite fraction", stability["finite_fraction"]],
            ["collision-free fraction", stability["collision_free_fraction"]],
            ["stable fraction (finite and collision-free)", stability["stable_fraction"]],
            ["reference MD collision-free fraction",
             stability["reference_collision_free_fraction"]],
            [f"model simulated time per hour, median [{speed['unit']}]", speed["model_median"]],
            [f"reference MD simulated time per hour, median [{speed['unit']}]",
             speed["reference_median"]],
            ["speed-up, median", speed["speedup_median"]],
        ]), "",
        "## Cross-system agreement", "",
        "r² (Pearson²) is the squared Pearson correlation (the paper's r²); R² of y = x is the "
        "coefficient of determination of the identity line (1 only when the values agree).", "",
        "### Same simulated span (model vs reference MD at the rollout's frames)", "",
        table(_AGREEMENT_HEADERS, _agreement_rows(agg["agreement"]["matched"])), "",
        "### Whole trajectories", "",
        table(_AGREEMENT_HEADERS, _agreement_rows(agg["agreement"]["whole"])), "",
        "## Calibration of one-step predictions", "", _calibration_markdown(metrics), "",
    ]
    lines += [image(path, key) + "\n" for key, path in agg["plots"].items()]
    lines += ["## Systems", "", table(
        ["system", "frames (finite/matched)", "Rg model", "Rg MD", "τ_Rg model", "τ_Rg MD",
         "collisions", "first collision frame", f"speed model [{speed['unit']}]",
         f"speed MD [{speed['unit']}]"],
        [[name, f"{s['frames']['finite']}/{s['frames']['matched']}",
          s["values"]["model_matched"]["rg_mean"], s["values"]["reference_matched"]["rg_mean"],
          s["values"]["model_matched"]["rg_relaxation_integrated"],
          s["values"]["reference_matched"]["rg_relaxation_integrated"],
          s["stability"]["model"]["total_collisions"],
          s["stability"]["model"]["first_collision_frame"], s["speed"]["model"],
          s["speed"]["reference_md"]] for name, s in metrics["systems"].items()],
    ), ""]
    for name, s in metrics["systems"].items():
        lines += [f"### {name}", "", _diffusivity_table(s), ""]
        lines += [image(path, f"{name} {kind}") + "\n" for kind, path in s["plots"].items()]
    return "\n".join(lines)


def _calibration_markdown(metrics: dict) -> str:
    calibration = metrics.get("calibration") or {}
    if "mean_mahalanobis_squared" not in calibration:
        return calibration.get("note", "not measured")
    return ("Coverage of the predicted acceleration Gaussian on clean held-out histories "
            f"({calibration['n_samples']} bead predictions; calibrated: 0.68, 0.95 and 3).\n\n"
            + table(["covariance", "inside 68 % ellipsoid", "inside 95 % ellipsoid",
                     "mean squared Mahalanobis distance"],
                    [[calibration["covariance"], calibration["coverage_68"],
                      calibration["coverage_95"], calibration["mean_mahalanobis_squared"]]]))


def _diffusivity_table(summary: dict) -> str:
    rows = []
    for view in ("model_matched", "reference_matched", "reference"):
        for species, fit in summary["properties"][view]["diffusivity"].items():
            if fit is not None:
                rows.append([view, species, fit["value"], fit["unit"],
                             f"{fit['fit_window'][0]:.4g}–{fit['fit_window'][1]:.4g}",
                             fit["fit_r2"]])
    return table(["view", "species", "D", "unit", f"fit window [{summary['span']['unit']}]",
                  "fit R²"], rows)


# ----------------------------------------------------------------------------------- compare


def _nll(metrics: dict) -> float | None:
    value = metrics.get("nll")
    return value.get("mean") if isinstance(value, dict) else value


def _matched_stat(
    key: str | Callable[[dict], str | None], stat: str
) -> Callable[[dict], float | None]:
    """A reader of statistic ``stat`` of the same-span agreement entry ``key`` (a property name,
    or a function choosing one from the entries)."""

    def read(metrics: dict) -> float | None:
        entries = metrics["aggregate"]["agreement"]["matched"]
        entry = entries.get(key(entries) if callable(key) else key)
        return entry[stat] if entry else None

    return read


def _diffusivity_key(entries: dict) -> str | None:
    """``diffusivity[Li]`` when there is one, else the first species' diffusivity."""
    keys = sorted(k for k in entries if k.startswith("diffusivity["))
    return "diffusivity[Li]" if "diffusivity[Li]" in keys else (keys[0] if keys else None)


COMPARISON_COLUMNS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    "nll": ("NLL", _nll),
    "rg_r2": ("Rg r² (Pearson²)", _matched_stat("rg_mean", "pearson_r_squared")),
    "rg_identity_r2": ("Rg R² of y = x", _matched_stat("rg_mean", "identity_r2")),
    "relaxation_r2": ("Rg relaxation time (integrated) r² (Pearson²)",
                      _matched_stat("rg_relaxation_integrated", "pearson_r_squared")),
    "diffusivity_spearman": ("diffusivity (Li, else first species) Spearman ρ",
                             _matched_stat(_diffusivity_key, "spearman_rho")),
    "collision_free_fraction": ("collision-free fraction",
                                lambda m: m["aggregate"]["stability"]["collision_free_fraction"]),
    "stable_fraction": ("stable fraction",
                        lambda m: m["aggregate"]["stability"]["stable_fraction"]),
    "calibration": ("one-step mean d² (3 = calibrated)",
                    lambda m: (m.get("calibration") or {}).get("mean_mahalanobis_squared")),
    "model_speed": ("model sim. time per hour (median)",
                    lambda m: m["aggregate"]["speed"]["model_median"]),
    "speedup": ("speed-up over MD (median)", lambda m: m["aggregate"]["speed"]["speedup_median"]),
}


READING = {"nll": "lower is better", "calibration": "closer to 3 is better"}  # else: higher


def compare(report_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict:
    """Line up evaluations (directories written by :func:`evaluate`) in one table and plots.

    Writes ``comparison.md``, ``comparison.json``, ``comparison.csv`` and
    ``plots/comparison.png`` (side-by-side bar charts, one per column that has a value) into
    ``out_dir``. Each report is labelled by its model variant, with its directory name added
    where labels repeat. ``nll`` is read from a report's ``metrics.json`` when something put it
    there (a number or ``{"mean": ...}``). Agreement columns are over systems at the same
    simulated span (``matched``).

    Returns the content of ``comparison.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for directory in map(Path, report_dirs):
        path = directory / METRICS_FILE
        if not path.exists():
            raise DataError(f"{directory}: no {METRICS_FILE}; run evaluate there first")
        reports.append((directory, json.loads(path.read_text())))
    labels = [m.get("label") or d.name for d, m in reports]
    labels = [f"{label} ({d.name})" if labels.count(label) > 1 else label
              for label, (d, _) in zip(labels, reports, strict=True)]
    rows = [{"label": label, "report": str(d),
             **{col: reader(m) for col, (_, reader) in COMPARISON_COLUMNS.items()}}
            for label, (d, m) in zip(labels, reports, strict=True)]
    speed_units = sorted({m["aggregate"]["speed"]["unit"] for _, m in reports})
    panels = [plots.Panel(f"{title} ({READING.get(col, 'higher is better')})", "",
                          title + (f" [{', '.join(speed_units)}]" if col == "model_speed" else ""),
                          kind="bar", series={col: (labels, [row[col] for row in rows])})
              for col, (title, _) in COMPARISON_COLUMNS.items()
              if any(row[col] is not None for row in rows)]
    bar_plots = {}
    if panels:
        bar_plots["comparison"] = plots.draw(out / PLOTS_DIR / "comparison.png",
                                             panels).relative_to(out).as_posix()
    comparison = json_ready({"columns": {c: t for c, (t, _) in COMPARISON_COLUMNS.items()},
                             "speed_unit": speed_units, "rows": rows, "plots": bar_plots})
    md_path, json_path, csv_path = (out / name for name in COMPARISON_FILES)
    json_path.write_text(json.dumps(comparison, indent=2))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "report", *COMPARISON_COLUMNS])
        writer.writeheader()
        writer.writerows(comparison["rows"])
    md = ["# Comparison", "", table(
        ["label", *(t for t, _ in COMPARISON_COLUMNS.values())],
        [[row["label"], *(row[c] for c in COMPARISON_COLUMNS)] for row in comparison["rows"]],
    ), "", f"Speeds in {', '.join(speed_units)}. r² (Pearson²) over systems at the same "
           "simulated span; R² of y = x is the coefficient of determination of the identity.", ""]
    md += [image(path, "comparison of the columns above") for path in bar_plots.values()]
    md_path.write_text("\n".join(md))
    return comparison
