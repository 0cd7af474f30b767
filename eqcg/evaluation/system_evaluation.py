"""One rollout system against its reference MD: :func:`evaluate_system`.

The reference system named in the rollout's attributes is coarse-grained with the rollout's CG
settings, and properties are computed on four views:

* ``model`` — the whole rollout, up to its first non-finite frame; its diffusivities are fitted
  over the lag windows of the ``reference`` view's, so the two measure the same time scale
  (with the rollout's many more time origins) even where the rollout outlasts the MD;
* ``reference_matched`` — the reference beads at the rollout's frames (located by time from
  ``start_frame``), over the span both cover;
* ``model_matched`` — the rollout over that same span (the whole finite rollout when the
  reference is long enough);
* ``reference`` — the whole reference trajectory at its own frame interval; its one-step
  statistics take steps of one rollout frame interval (from every reference frame).

Beside them, the dynamic values (MSDs, diffusivities, one-step statistics) of each half of the
reference trajectory (``reference_half1`` / ``reference_half2``, fitted as trajectories of
their own: their agreement over systems is what the MD can resolve), and the exact chain
centre-of-mass diffusivity where the reference system's attributes give it (``exact``).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import scipy.stats

from eqcg.cg.mapping import CGSettings
from eqcg.data.rollout_file import RolloutAttrs
from eqcg.data.store import TrajectoryDataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError
from eqcg.evaluation.beads import BeadTrajectory, check_same_beads, reference_beads, rollout_beads
from eqcg.evaluation.properties import (
    ALL_BEADS,
    CHAIN_COM,
    PropertyOptions,
    TrajectoryProperties,
    default_rdf_r_max,
    dynamic_properties,
    lag_ratio,
    species_pairs,
    trajectory_properties,
    with_fit_windows,
)
from eqcg.evaluation.results import (
    COORDINATION,
    EXACT,
    RDF_PEAK,
    RDF_PEAK_HEIGHT,
    REFERENCE_HALVES,
    STEP_KEYS,
    VIEWS,
    FrameCounts,
    Span,
    SystemEvaluation,
    diffusivity_key,
    pair_key,
    vacf_key,
)
from eqcg.evaluation.speed import system_speed
from eqcg.metrics.dynamics import diffusivity_unit, exact_com_diffusivity
from eqcg.metrics.stability import CollisionReport, collision_report
from eqcg.units import unit_system


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


def _first_shells(reference: TrajectoryProperties) -> dict[tuple[int, int], float]:
    """``(centre, partner)`` species indices of every pair of distinct species -> the radius
    (length unit) of the partner's first shell around the centre in ``reference``'s g(r); the
    centre is the species with fewer beads (the first in name order on a tie)."""
    rdf = reference.rdf
    if rdf is None:
        return {}
    shells = {}
    for a, b in species_pairs(len(reference.species_names)):
        if a != b:
            centre, partner = (a, b) if rdf.counts[a] <= rdf.counts[b] else (b, a)
            shells[centre, partner] = rdf.first_minimum(centre, partner)
    return shells


def _dynamic_values(props: TrajectoryProperties) -> dict[str, float]:
    """Diffusivities (in the unit of :func:`~eqcg.metrics.dynamics.diffusivity_unit`), one-step
    statistics (:data:`STEP_KEYS`, means over multi-bead molecules) and step-velocity
    autocorrelations at one step of ``props`` (NaN: undefined)."""
    factor, _ = diffusivity_unit(props.units)
    values = {diffusivity_key(species): fit.diffusivity * factor if fit else np.nan
              for species, fit in props.diffusivity.items()}
    summary = props.steps_summary() or {}
    values |= {key: summary.get(key, np.nan) for key in STEP_KEYS}
    for group in (ALL_BEADS, CHAIN_COM):
        acf = props.vacf.get(group)
        values[vacf_key(group)] = acf[1] if acf is not None and acf.shape[0] > 1 else np.nan
    return values


def _property_values(
    props: TrajectoryProperties, shells: dict[tuple[int, int], float]
) -> dict[str, float]:
    """The per-system numbers that cross-system agreement is computed for (NaN: undefined;
    first-shell coordination numbers within the radii ``shells`` of :func:`_first_shells`;
    the dynamic ones of :func:`_dynamic_values`)."""
    values = {"rg_mean": props.rg_mean}
    for name in ("rg_relaxation", "end_to_end_relaxation"):
        relaxation = getattr(props, name)
        values[f"{name}_integrated"] = relaxation.integrated.tau if relaxation else np.nan
        values[f"{name}_exponential"] = relaxation.exponential.tau if relaxation else np.nan
    values |= _dynamic_values(props)
    if props.rdf is not None:
        names = props.species_names
        for (centre, partner), radius in shells.items():
            pair = names[centre], names[partner]
            position, height = props.rdf.peak(centre, partner)
            values[pair_key(RDF_PEAK, *pair)] = position
            values[pair_key(RDF_PEAK_HEIGHT, *pair)] = height
            values[pair_key(COORDINATION, *pair)] = props.rdf.coordination_number(
                centre, partner, radius)
    return values


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


def trajectory_halves(traj: BeadTrajectory) -> tuple[BeadTrajectory, BeadTrajectory]:
    """The first and second half of ``traj`` (``n_frames // 2`` frames each)."""
    half = traj.n_frames // 2
    return traj.frames(slice(0, half)), traj.frames(slice(half, 2 * half))


def _ratio_at_decades(lags: np.ndarray, ratio: np.ndarray, step: float) -> dict[str, float]:
    """``ratio`` at lags of 1, 10, 100, ... steps of ``step`` (those ``lags`` hold), keyed by
    the number of steps."""
    steps = np.round(lags / step).astype(np.int64) if step > 0 else np.zeros(0, np.int64)
    decades = 10 ** np.arange(int(np.log10(steps.max())) + 1) if steps.size else []
    return {str(n): float(ratio[steps == n][0]) for n in decades if (steps == n).any()}


def _model_over_reference(
    model: TrajectoryProperties, reference: TrajectoryProperties, exact: float | None
) -> dict[str, object]:
    """:attr:`SystemEvaluation.dynamics` of the whole rollout against the whole reference."""
    out: dict[str, object] = {"com_step_ratio": None, "bead_step_ratio": None}
    if model.steps is not None and reference.steps is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["com_step_ratio"] = float(np.median(model.steps.com_msd
                                                    / reference.steps.com_msd))
            out["bead_step_ratio"] = float(np.median(model.steps.bead_msd
                                                     / reference.steps.bead_msd))
    curves = {ALL_BEADS: (model.msd_beads, reference.msd_beads),
              CHAIN_COM: (model.msd.get(CHAIN_COM), reference.msd.get(CHAIN_COM))}
    out["msd_ratio"] = {
        key: _ratio_at_decades(*lag_ratio(model.lag_time, a, reference.lag_time, b),
                               model.step_time)
        for key, (a, b) in curves.items() if a is not None and b is not None}
    out["exact_com_diffusivity"] = exact
    return out


def _model_stability(report: CollisionReport, attrs: RolloutAttrs) -> dict[str, object]:
    """The rollout's collision summary, with ``blew_up_at_step``: a system that blew up (the
    rollout stopped there, before its frames went non-finite) is neither finite nor stable."""
    summary = report.summary() | {"blew_up_at_step": attrs.blew_up_at_step}
    if attrs.blew_up_at_step is not None:
        summary |= {"finite": False, "stable": False}
    return summary


def evaluate_system(
    rollout: SystemTrajectory,
    attrs: RolloutAttrs,
    reference_data: TrajectoryDataset,
    threshold: float,
    options: PropertyOptions,
) -> tuple[SystemEvaluation, dict[str, TrajectoryProperties]]:
    """Judge one rollout system against the reference system it started from.

    Args:
        rollout: a system of ``rollout.h5``.
        attrs: its attributes.
        reference_data: the reference dataset holding its ``reference_system``.
        threshold: beads closer than this collide (length unit).
        options: analysis choices.

    Returns the evaluation (without plots) and the properties of the four views (for figures).
    """
    where = f"rollout system {rollout.name!r}"
    try:
        reference_system = reference_data[attrs.reference_system]
    except KeyError:
        raise DataError(f"{where}: the reference dataset has no system "
                        f"{attrs.reference_system!r}") from None
    settings = CGSettings(attrs.cg_level, attrs.whole_molecule_max_atoms, attrs.cg_seed)
    model = rollout_beads(rollout)
    reference = reference_beads(reference_system, settings)
    check_same_beads(model, reference)

    stability = collision_report(model.positions, model.box, model.pbc, threshold)
    n_finite = stability.first_nonfinite_frame
    n_finite = model.n_frames if n_finite is None else n_finite
    if n_finite == 0:
        raise DataError(f"{where}: its first frame is not finite")
    matched = _matched_frames(model.frames(slice(0, n_finite)), reference, attrs.start_frame)
    n_matched = matched.shape[0]
    traj = {
        "model": model.frames(slice(0, n_finite)),
        "model_matched": model.frames(slice(0, n_matched)),
        "reference_matched": reference.frames(matched),
        "reference": reference,
    }
    r_max = default_rdf_r_max([model.box, reference.box], options) if model.pbc else None
    stride = int(round(model.dt / reference.dt)) if model.n_frames > 1 else 1
    views = {"reference": trajectory_properties(reference, options, r_max, stride=stride),
             "reference_matched": trajectory_properties(traj["reference_matched"], options,
                                                        r_max)}
    md_windows = {species: fit.fit_window
                  for species, fit in views["reference"].diffusivity.items() if fit is not None}
    views["model_matched"] = trajectory_properties(traj["model_matched"], options, r_max)
    views["model"] = (  # the same frames when the reference covers the rollout
        with_fit_windows(traj["model"], views["model_matched"], options, md_windows)
        if n_matched == n_finite else
        trajectory_properties(traj["model"], options, r_max, md_windows))
    shells = _first_shells(views["reference"])
    values = {view: _property_values(views[view], shells) for view in VIEWS}
    values |= {name: _dynamic_values(dynamic_properties(half, options, stride))
               for name, half in zip(REFERENCE_HALVES, trajectory_halves(reference), strict=True)}
    exact = exact_com_diffusivity(reference_system.attrs, reference.units, reference.masses,
                                  reference.molecules)
    factor, _ = diffusivity_unit(reference.units)
    values[EXACT] = {diffusivity_key(CHAIN_COM): exact * factor} if exact is not None else {}
    reference_stability = collision_report(traj["reference_matched"].positions,
                                           traj["reference_matched"].box, model.pbc, threshold)

    evaluation = SystemEvaluation(
        reference_system=attrs.reference_system,
        model=attrs.model,
        n_beads=model.n_beads,
        species={name: int((model.species == i).sum())
                 for i, name in enumerate(model.species_names)},
        cg_settings=asdict(settings),
        frames=FrameCounts(
            rollout=model.n_frames, finite=n_finite, matched=n_matched,
            reference=reference.n_frames, start_frame=attrs.start_frame,
            dilation=attrs.dilation,
            reference_frames_per_rollout_frame=model.dt / reference.dt
            if model.n_frames > 1 else None),
        span=Span(model.span, traj["model_matched"].span, reference.span,
                  unit_system(model.units).time),
        reference_covers_rollout=n_matched == model.n_frames,
        stability={"model": _model_stability(stability, attrs),
                   "reference_matched": reference_stability.summary()},
        properties={view: views[view].summary() for view in VIEWS},
        values=values,
        distribution_distance=_distribution_distances(views),
        speed=system_speed(rollout, attrs, reference_system, reference.span),
        conditions=reference_system.conditions,
        first_shells={f"{model.species_names[c]}|{model.species_names[p]}":
                      radius if np.isfinite(radius) else None
                      for (c, p), radius in shells.items()},
        dynamics=_model_over_reference(views["model"], views["reference"], exact),
    )
    return evaluation, views
