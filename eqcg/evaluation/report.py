"""Judge a learned rollout against its reference MD: :func:`evaluate` writes ``metrics.json``
(an :class:`~eqcg.evaluation.results.EvaluationSummary`), ``report.md`` and PNG figures.

Each rollout system is evaluated on its own (:mod:`eqcg.evaluation.system_evaluation`), then
over all systems (:mod:`eqcg.evaluation.aggregate`); :mod:`eqcg.evaluation.figures` lays out the
plots, :mod:`eqcg.evaluation.report_markdown` the report.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from eqcg.data.rollout_file import ROLLOUT_FILE, RolloutAttrs
from eqcg.data.store import TrajectoryDataset, load_dataset
from eqcg.errors import ConfigError, DataError
from eqcg.evaluation.aggregate import aggregate
from eqcg.evaluation.figures import agreement_figures, calibration_figure, system_figures
from eqcg.evaluation.properties import DEFAULT_OPTIONS, PropertyOptions
from eqcg.evaluation.provenance import check_reference, check_time_axes, rollout_record
from eqcg.evaluation.report_markdown import report_markdown
from eqcg.evaluation.results import DEFINITIONS, VIEWS, EvaluationSummary
from eqcg.evaluation.system_evaluation import evaluate_system
from eqcg.metrics.dynamics import diffusivity_unit
from eqcg.metrics.stability import COLLISION_THRESHOLDS
from eqcg.runtime.arguments import positive_number
from eqcg.runtime.outputs import claims_output
from eqcg.runtime.run_info import write_run_info
from eqcg.units import unit_system

REPORT_FILE = "report.md"


def _recorded_run(rollout_dir: Path) -> str | None:
    """The run directory recorded in ``rollout_dir/run.json`` by ``eqcg rollout``, if any."""
    return rollout_record(rollout_dir).get("run")


def _groups(reference: TrajectoryDataset, systems: dict[str, str], attribute: str
            ) -> dict[str, str]:
    """Rollout system name -> the value of ``attribute`` of its reference system (the
    ``systems`` mapping gives each one's reference); :class:`DataError` naming a system that
    lacks it."""
    out = {}
    for name, reference_name in systems.items():
        attrs = reference[reference_name].attrs
        if attribute not in attrs:
            raise DataError(f"{reference.path}: system {reference_name!r} has no attribute "
                            f"{attribute!r} to group by (it has: {', '.join(sorted(attrs))})")
        out[name] = str(attrs[attribute])
    return out


@claims_output("report", "out_dir")
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
    group_by: str | None = None,
    overwrite: bool = False,
    force_reference: bool = False,
) -> dict:
    """Evaluate every system of a rollout against the reference MD it started from.

    Args:
        rollout_dir: directory holding ``rollout.h5`` (see
            :mod:`eqcg.evaluation.system_evaluation`).
        reference: the reference dataset (its directory or ``dataset.h5``); the wall time of a
            system's LAMMPS run, for the speed-up, is what the generator stored with it.
        out_dir: where ``metrics.json``, ``report.md`` and ``plots/*.png`` are written.
        collision_threshold: beads closer than this collide (Å or sigma; default by unit
            system: 1 Å, 0.5 sigma).
        options: analysis choices (fit windows, RDF range, frames for structure).
        draw_plots: draw the PNG figures (``False``: numbers and ``report.md`` only).
        run: the run whose model made the rollout, for the calibration of its one-step
            predictions on the rollout's reference systems (default: the ``run`` recorded in
            the rollout's ``run.json``).
        calibrate: measure that calibration (:mod:`eqcg.evaluation.calibration`).
        group_by: an attribute of the reference systems (e.g. a polymer chain's
            ``length_group``): the numbers over all systems are also given per value of it.
        overwrite: replace the report ``out_dir`` holds (refused otherwise; ``out_dir`` is
            claimed as a report, :func:`~eqcg.runtime.outputs.claim_output`).
        force_reference: evaluate against a reference other than the dataset the rollout
            started from (refused otherwise, :mod:`eqcg.evaluation.provenance`); the report
            says so.

    Returns the content of ``metrics.json`` (NaN written as null;
    ``EvaluationSummary.from_dict`` reads it typed).
    """
    rollout_file = Path(rollout_dir) / ROLLOUT_FILE
    out = Path(out_dir)
    if collision_threshold is not None:
        positive_number("collision_threshold (--collision-threshold)", collision_threshold)
    if run is not None and not Path(run).exists():
        raise ConfigError(f"--run {run}: no such run directory or checkpoint (the run whose "
                          "calibration is measured)")
    with load_dataset(rollout_file) as rollouts, load_dataset(reference) as reference_data:
        if rollouts.units != reference_data.units:
            raise DataError(f"{rollout_file} is in {rollouts.units!r} units but the reference "
                            f"{reference_data.path} in {reference_data.units!r}")
        forced = check_reference(rollout_dir, reference_data, force_reference)
        check_time_axes(reference_data)
        units = rollouts.units
        if collision_threshold is None:
            collision_threshold = COLLISION_THRESHOLDS[units]
        evaluated, nlls = {}, []
        for system in rollouts:
            attrs = RolloutAttrs.from_attrs(system.attrs, f"rollout system {system.name!r}")
            evaluated[system.name] = evaluate_system(system, attrs, reference_data,
                                                     collision_threshold, options)
            nlls.append(attrs.val_nll)
        reference_path = str(reference_data.path)
        group_of = (_groups(reference_data, {name: e.reference_system
                                             for name, (e, _) in evaluated.items()}, group_by)
                    if group_by else {})
        if calibrate:
            from eqcg.evaluation.calibration import run_calibration  # loads torch and the model

            calibration = run_calibration(
                run or _recorded_run(Path(rollout_dir)), reference_data,
                [evaluation.reference_system for evaluation, _ in evaluated.values()])
        else:
            calibration = {"note": "not measured (calibrate=False)"}
    systems = {name: evaluation for name, (evaluation, _) in evaluated.items()}
    if draw_plots:
        for name, (evaluation, views) in evaluated.items():
            evaluation.plots = system_figures(
                out, name, views, units, evaluation.dynamics.get("exact_com_diffusivity"))
    summary = EvaluationSummary(
        label=Path(rollout_dir).resolve().name,
        model=" + ".join(sorted({s.model for s in systems.values()} - {""})),
        nll=next((nll for nll in nlls if nll is not None), None),
        rollout=str(rollout_file),
        reference=reference_path,
        units=asdict(unit_system(units)) | {"diffusivity": diffusivity_unit(units)[1]},
        options={"collision_threshold": collision_threshold, **asdict(options),
                 **({"reference": forced} if forced else {})},
        views=VIEWS,
        definitions=DEFINITIONS,
        systems=systems,
        aggregate=aggregate(systems, units),
        calibration=calibration,
        group_by=group_by,
        groups={group: aggregate({n: e for n, e in systems.items() if group_of[n] == group},
                                 units)
                for group in sorted(set(group_of.values()))} if group_by else None,
    )
    if draw_plots:
        summary.aggregate.plots = agreement_figures(out, systems, summary.aggregate, units)
        if "curve_observed" in calibration:
            summary.aggregate.plots["calibration"] = calibration_figure(out, calibration)
    summary.write(out)
    write_run_info(out, None, None, [], extra={"rollout": str(rollout_file),
                                               "reference": reference_path})
    (out / REPORT_FILE).write_text(report_markdown(summary)
                                   + (f"\n**Reference {forced}.**\n" if forced else ""))
    return summary.to_dict()
