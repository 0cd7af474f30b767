"""Read a LAMMPS data file and its dumps as one :class:`SystemTrajectory` with unwrapped positions.

:func:`read_lammps` is the reader the generators and ``eqcg ingest`` use. It joins

* the data file (:func:`~eqcg.data.lammps_data_file.read_lammps_data`): masses, types, bonds,
  charges (``atom_style`` full, molecular, bond, angle, atomic or charge);
* text dumps (:func:`~eqcg.data.lammps_dump.read_lammps_dump`, ``dump custom``/``atom``, plain
  or gzipped) and binary dumps (:func:`~eqcg.data.lammps_binary.read_lammps_binary_dump`,
  ``dump dcd``/``dump xtc``, and TRR), chosen by suffix, in time order.

Positions of text dumps are unwrapped from their columns (image flags or unwrapped
coordinates); binary dumps hold no image flags and are unwrapped by continuity between frames
(:func:`~eqcg.data.unwrap.unwrap_trajectory`). Conventions (atom order, type numbering, cells)
are those of :mod:`eqcg.data.lammps_data_file`. Lengths and times are whatever the LAMMPS
``units`` made them; :func:`read_lammps` is told which (``real``: Å, ``lj``: sigma).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from eqcg.data.lammps_binary import is_binary_dump, read_lammps_binary_dump
from eqcg.data.lammps_data_file import read_lammps_data
from eqcg.data.lammps_dump import LammpsDump, read_lammps_dump
from eqcg.data.trajectory import SystemTrajectory
from eqcg.data.unwrap import unwrap_trajectory
from eqcg.errors import DataError
from eqcg.units import unit_system

PathLike = str | os.PathLike


def read_lammps(
    data_file: PathLike,
    dump_files: Sequence[PathLike] | PathLike,
    *,
    units: str,
    name: str,
    timestep: float | None = None,
    frame_interval: float | None = None,
    atom_style: str | None = None,
    allow_wrapped: bool = False,
) -> SystemTrajectory:
    """Read a LAMMPS data file and its dumps as one unwrapped trajectory.

    Args:
        data_file: the data file giving the topology (see :func:`read_lammps_data`).
        dump_files: dumps of the same atoms, in time order: text dumps (see
            :func:`~eqcg.data.lammps_dump.read_lammps_dump`) and binary ``.dcd``/``.xtc``/
            ``.trr`` dumps of group ``all`` (see
            :func:`~eqcg.data.lammps_binary.read_lammps_binary_dump`), chosen by suffix and
            mixable. Frames whose timestep does not pass the previous dump's last one (a
            restart writing them again) are dropped, as in
            :func:`~eqcg.data.trajectory.concatenate_in_time`.
        units: the dataset unit system, ``"real"`` (Å, ps) or ``"lj"`` (sigma, tau).
        name: name of the system in the dataset.
        timestep: MD step length **in the dataset's time unit**; frame time = timestep number
            times this. LAMMPS ``units real`` steps are in fs: a 2 fs step is ``0.002`` (ps).
        frame_interval: time between consecutive kept frames (ps or tau), used instead of
            ``timestep``: frame time = frame index times this. Give exactly one of the two.
        atom_style: overrides the data file's atom style.
        allow_wrapped: accept text dumps with wrapped positions and no image flags; they are
            unwrapped by continuity between frames (:func:`eqcg.data.unwrap.unwrap_trajectory`,
            which assumes atoms move less than half a cell between frames). Binary dumps have
            no image flags and are always unwrapped this way.

    The system is periodic when the text dumps' boundaries are ``pp pp pp`` (binary dumps: when
    their frames have a cell); with non-periodic boundaries (``f``, ``s``, ``m`` in all
    directions) the box is stored as zeros. Mixed boundaries are a DataError.
    """
    paths = [dump_files] if isinstance(dump_files, (str, os.PathLike)) else list(dump_files)
    where = f"{data_file} + {', '.join(str(p) for p in paths)}"
    unit_system(units, where)
    if not paths:
        raise DataError(f"{data_file}: no dump files given")
    _check_time_axis(timestep, frame_interval, where)
    data = read_lammps_data(data_file, atom_style=atom_style)
    dumps = [
        read_lammps_binary_dump(p, data.atom_ids, units=units, data_file=data_file)
        if is_binary_dump(p)
        else read_lammps_dump(p, data.atom_ids, allow_wrapped=allow_wrapped)
        for p in paths
    ]
    keep = _frames_to_keep(dumps, paths)
    positions = np.concatenate([d.positions[k] for d, k in zip(dumps, keep)])
    box = np.concatenate([d.box[k] for d, k in zip(dumps, keep)])
    steps = np.concatenate([d.timesteps[k] for d, k in zip(dumps, keep)])
    pbc = _periodicity(dumps, paths)
    if pbc and any(d.wrapped for d in dumps):
        positions = unwrap_trajectory(positions, box, data.topology.bonds, where)
    time = steps * timestep if timestep is not None else np.arange(len(steps)) * frame_interval
    return SystemTrajectory(
        name=name,
        topology=data.topology,
        positions=positions,
        box=box if pbc else np.zeros_like(box),
        time=time.astype(np.float64),
        pbc=pbc,
        units=units,
        source=f"LAMMPS data {data_file}; dumps {', '.join(str(p) for p in paths)}",
    )


def _check_time_axis(timestep: float | None, frame_interval: float | None, where: str) -> None:
    if (timestep is None) == (frame_interval is None):
        raise DataError(
            f"{where}: give exactly one of timestep (MD step length, e.g. 0.002 ps for a 2 fs "
            f"LAMMPS real-units step) or frame_interval (time between frames)"
        )
    value = timestep if timestep is not None else frame_interval
    if not (np.isfinite(value) and value > 0):
        raise DataError(f"{where}: timestep / frame_interval must be positive, got {value}")


def _frames_to_keep(dumps: list[LammpsDump], paths: list[PathLike]) -> list[np.ndarray]:
    """Per dump, ``(n_frames,)`` mask of frames past every earlier dump's last timestep."""
    keep, last = [], None
    for dump, path in zip(dumps, paths):
        steps = dump.timesteps
        back = np.flatnonzero(np.diff(steps) <= 0)
        if back.size:
            raise DataError(
                f"{path}: frame {back[0] + 1}: timestep {steps[back[0] + 1]} does not advance "
                f"past {steps[back[0]]} (reset_timestep or appended runs in one dump?)"
            )
        mask = steps > last if last is not None else np.ones(len(steps), dtype=bool)
        if not mask.any():
            raise DataError(
                f"{path}: every timestep ({steps[0]}..{steps[-1]}) repeats an earlier dump's "
                f"(which ended at {last}); give the dumps of one run in time order"
            )
        keep.append(mask)
        last = steps[-1]
    return keep


def _periodicity(dumps: list[LammpsDump], paths: list[PathLike]) -> bool:
    """Whether the dumps are periodic in all directions; DataError for mixed boundaries."""
    for dump, path in zip(dumps, paths):
        if dump.periodic != dumps[0].periodic:
            raise DataError(f"{path}: boundary flags differ from those of {paths[0]}")
    periodic = dumps[0].periodic
    if any(periodic) and not all(periodic):
        raise DataError(
            f"{paths[0]}: mixed periodic and non-periodic boundaries {periodic} are not "
            f"supported; a system is periodic in all three directions or in none"
        )
    return all(periodic)
