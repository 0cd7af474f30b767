"""Simulated time per wall-clock hour of a rollout and of the LAMMPS run that made its reference.

The rollout's wall time is in its attributes (:class:`~eqcg.data.rollout_file.RolloutAttrs`);
the LAMMPS run's is what the generator stored in the reference system's attributes
(:data:`~eqcg.data.trajectory.LAMMPS_WALL_SECONDS`).
"""

from __future__ import annotations

from eqcg.data.rollout_file import RolloutAttrs
from eqcg.data.trajectory import LAMMPS_WALL_SECONDS, SystemTrajectory
from eqcg.evaluation.results import Speed
from eqcg.units import unit_system


def system_speed(
    rollout: SystemTrajectory, attrs: RolloutAttrs, reference: SystemTrajectory,
    reference_span: float,
) -> Speed:
    """Simulated time per wall-clock hour of ``rollout`` and of ``reference``'s LAMMPS run.

    Args:
        rollout: one rollout system (its time in ps or tau).
        attrs: its attributes (``wall_seconds``: the rollout's stepping time).
        reference: the reference dataset's system it started from.
        reference_span: simulated time the reference trajectory covers (ps or tau).

    The reference rate divides the recorded span by the LAMMPS run's wall time (the sum of its
    loop times, which also covers any unrecorded equilibration), so it is a lower bound on the
    MD's speed. Datasets that store no wall time (ingested trajectories, datasets generated
    before eqcg stored it) get ``None`` and a ``reference_note``.
    """
    units = unit_system(rollout.units)
    factor, unit = (1e-3, "ns/h") if units.name == "real" else (1.0, f"{units.time}/h")
    wall = attrs.wall_seconds
    span = float(rollout.time[-1] - rollout.time[0])
    model = span / wall * 3600 * factor if wall else None
    reference_wall = reference.attrs.get(LAMMPS_WALL_SECONDS)
    if reference_wall is None:
        return Speed(unit, wall, model, reference_note=(
            f"the reference dataset stores no LAMMPS wall time for {reference.name!r} (attribute "
            f"{LAMMPS_WALL_SECONDS!r}, written by eqcg generate): no MD speed or speed-up"))
    reference_md = (reference_span / reference_wall * 3600 * factor if reference_wall > 0
                    else None)
    speedup = model / reference_md if model is not None and reference_md is not None else None
    return Speed(unit, wall, model, reference_md, float(reference_wall), speedup)
