"""Read extended XYZ and other ASE-readable trajectories (``.extxyz``, ``.xyz``, ``.traj``, ...).

Atom types are chemical symbols, masses are ASE's (element masses, or a ``masses`` array in
the file), charges ASE's initial charges when the file has them. Bonds are given explicitly
or inferred from covalent radii on the first frame. Positions and cells are taken as Å
(``units="real"``) or sigma (``units="lj"``) as written. Periodic trajectories are unwrapped
with :func:`~eqcg.data.unwrap.unwrap_trajectory`, which **assumes atoms move less than half a
cell between frames**.

Do not read LAMMPS dumps with ASE: its LAMMPS dump reader turns LAMMPS type ids into
chemical elements (type 1 becomes H, ...). LAMMPS files go through
:mod:`eqcg.data.lammps_files`.
"""

from __future__ import annotations

import os

import ase
import ase.io
import numpy as np
from ase.neighborlist import natural_cutoffs, neighbor_list

from eqcg.data.bonds import bond_types_from_atom_types
from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.data.unwrap import unwrap_trajectory
from eqcg.errors import DataError
from eqcg.units import unit_system


def read_ase(
    path: str | os.PathLike,
    *,
    name: str,
    units: str = "real",
    bonds: np.ndarray | None = None,
    bond_scale: float = 1.2,
    index: str | int | slice = ":",
    frame_interval: float | None = None,
) -> SystemTrajectory:
    """Read a trajectory with ``ase.io.read`` as one unwrapped trajectory.

    Args:
        path: any file ASE reads as a sequence of frames with the same atoms.
        name: name of the system in the dataset.
        units: ``"real"`` (Å, ps) or ``"lj"`` (sigma, tau).
        bonds: ``(n_bonds, 2)`` 0-based atom indices; by default inferred on the first frame
            (:func:`infer_bonds`).
        bond_scale: multiplier of the covalent radii when inferring bonds.
        index: which frames to read (ASE's ``index``: ``":"``, ``"::10"``, ...).
        frame_interval: time between consecutive frames as read (ps or tau): frame times
            become ``index * frame_interval``. By default times come from every frame's
            ``atoms.info["time"]`` (taken in ps or tau), and without those this is required.

    Raises :class:`DataError` naming the file when ASE cannot read it, frames differ in their
    atoms, boundaries are partly periodic, no bond is found among several atoms, or the time
    axis is unknown.
    """
    where = str(path)
    unit_system(units, where)
    frames = _read_frames(path, index, where)
    first = frames[0]
    pbc = _periodic(frames, where)
    positions = np.stack([atoms.get_positions() for atoms in frames]).astype(np.float64)
    box = (
        np.stack([atoms.cell.array for atoms in frames]).astype(np.float64)
        if pbc
        else np.zeros((len(frames), 3, 3))
    )
    bond_array = (
        infer_bonds(first, bond_scale)
        if bonds is None
        else _checked_bonds(bonds, len(first), where)
    )
    if bonds is None and len(bond_array) == 0 and len(first) > 1:
        raise DataError(
            f"{where}: no bonds found among {len(first)} atoms at bond_scale={bond_scale}; "
            f"pass bonds= explicitly or raise bond_scale"
        )
    type_names, types = np.unique(first.get_chemical_symbols(), return_inverse=True)
    types = types.reshape(-1)
    if pbc:
        positions = unwrap_trajectory(positions, box, bond_array, where)
    return SystemTrajectory(
        name=name,
        topology=Topology(
            masses=first.get_masses(),
            types=types,
            type_names=list(type_names),
            bonds=bond_array,
            bond_types=bond_types_from_atom_types(types, bond_array),
            charges=first.get_initial_charges() if first.has("initial_charges") else None,
        ),
        positions=positions,
        box=box,
        time=_frame_times(frames, frame_interval, where),
        pbc=pbc,
        units=units,
        source=f"ase: {where}",
    )


def infer_bonds(atoms: ase.Atoms, scale: float = 1.2) -> np.ndarray:
    """``(n_bonds, 2)`` atom index pairs ``i < j`` closer than ``scale * (r_i + r_j)``.

    ``r`` are ASE's covalent radii (``natural_cutoffs``); periodic images count under the
    frame's ``pbc``, so molecules split by the cell boundary are still bonded.
    """
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    pairs = np.stack([i, j], axis=1)[i < j]
    return np.unique(pairs, axis=0).astype(np.int64).reshape(-1, 2)


def _read_frames(path: str | os.PathLike, index: str | int | slice, where: str) -> list[ase.Atoms]:
    """The selected frames, checked to hold the same atoms in the same order."""
    try:
        read = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise DataError(f"{where}: ASE cannot read it ({exc})") from exc
    frames = [read] if isinstance(read, ase.Atoms) else list(read)
    if not frames:
        raise DataError(f"{where}: no frames selected by index {index!r}")
    numbers = frames[0].numbers
    for k, atoms in enumerate(frames):
        if len(atoms) != len(numbers) or np.any(atoms.numbers != numbers):
            raise DataError(f"{where}: frame {k} does not hold the same atoms as frame 0")
    return frames


def _periodic(frames: list[ase.Atoms], where: str) -> bool:
    """Whether every frame is periodic in all directions; DataError for partial periodicity."""
    pbc = np.array([atoms.pbc for atoms in frames])
    if pbc.any() and not pbc.all():
        raise DataError(
            f"{where}: periodic in some directions or frames only (pbc {pbc[0].tolist()}); a "
            f"system is periodic in all three directions or in none"
        )
    return bool(pbc.all())


def _checked_bonds(bonds: np.ndarray, n_atoms: int, where: str) -> np.ndarray:
    bonds = np.asarray(bonds, dtype=np.int64)
    if bonds.ndim != 2 or bonds.shape[1] != 2:
        raise DataError(f"{where}: bonds must have shape (n_bonds, 2), got {bonds.shape}")
    bad = np.flatnonzero(((bonds < 0) | (bonds >= n_atoms)).any(axis=1))
    if bad.size:
        raise DataError(
            f"{where}: bond {bad[0]} {bonds[bad[0]].tolist()} is outside 0..{n_atoms - 1}"
        )
    return bonds


def _frame_times(frames: list[ase.Atoms], frame_interval: float | None, where: str) -> np.ndarray:
    """``(n_frames,)`` frame times from ``frame_interval`` or from ``atoms.info["time"]``."""
    if frame_interval is not None:
        if not (np.isfinite(frame_interval) and frame_interval > 0):
            raise DataError(f"{where}: frame_interval must be positive, got {frame_interval}")
        return np.arange(len(frames)) * float(frame_interval)
    missing = [k for k, atoms in enumerate(frames) if "time" not in atoms.info]
    if missing:
        raise DataError(
            f"{where}: frame {missing[0]} has no 'time' in its info; pass frame_interval "
            f"(time between frames, ps or tau)"
        )
    return np.array([atoms.info["time"] for atoms in frames], dtype=np.float64)
