"""Bead-level trajectories of a rollout and of its reference MD, in one shape for the metrics.

A rollout system (a system of ``rollout.h5``) already holds beads; the reference system holds
atoms and is coarse-grained here with the rollout's CG settings, reading frames in chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from eqcg.cg.mapping import CGSettings, coarse_grain_trajectory, compute_mapping
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError

_FRAMES_PER_READ = 256


@dataclass
class BeadTrajectory:
    """One system's bead trajectory and bead topology.

    Attributes:
        name: system name.
        positions: ``(n_frames, n_beads, 3)`` unwrapped bead positions (Å or sigma).
        time: ``(n_frames,)`` simulated time (ps or tau), evenly spaced.
        box: ``(n_frames, 3, 3)`` cell vectors as rows.
        pbc: periodic in all three directions.
        units: unit system name (``real`` or ``lj``).
        masses: ``(n_beads,)`` bead masses.
        species: ``(n_beads,)`` index into ``species_names`` (molecule kind of each bead).
        species_names: molecule kinds, e.g. ``"Li"``, ``"C+F+N+O+S"``.
        bonds: ``(n_bonds, 2)`` CG bonds.
        molecules: ``(n_beads,)`` molecule index ``0..n_molecules-1`` of each bead.
    """

    name: str
    positions: np.ndarray
    time: np.ndarray
    box: np.ndarray
    pbc: bool
    units: str
    masses: np.ndarray
    species: np.ndarray
    species_names: list[str]
    bonds: np.ndarray
    molecules: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_beads(self) -> int:
        return int(self.positions.shape[1])

    @property
    def dt(self) -> float:
        """Time between frames (ps or tau)."""
        return float(self.time[1] - self.time[0]) if self.n_frames > 1 else 0.0

    @property
    def span(self) -> float:
        """Simulated time from the first frame to the last (ps or tau)."""
        return float(self.time[-1] - self.time[0])

    def frames(self, index: np.ndarray | slice) -> BeadTrajectory:
        """The same system restricted to the frames ``index`` (evenly spaced ones, in order)."""
        return replace(self, positions=self.positions[index], time=self.time[index],
                       box=self.box[index])


def _read_positions(system: SystemTrajectory) -> np.ndarray:
    """``(n_frames, n, 3)`` positions of ``system`` as a numpy array, read in chunks."""
    out = np.empty((system.n_frames, system.n_atoms, 3))
    for start in range(0, system.n_frames, _FRAMES_PER_READ):
        out[start : start + _FRAMES_PER_READ] = system.positions[start : start + _FRAMES_PER_READ]
    return out


def rollout_beads(system: SystemTrajectory) -> BeadTrajectory:
    """A system of a rollout dataset (its "atoms" are beads) as a :class:`BeadTrajectory`."""
    top = system.topology
    return BeadTrajectory(
        name=system.name,
        positions=_read_positions(system),
        time=np.asarray(system.time, dtype=np.float64),
        box=np.asarray(system.box, dtype=np.float64),
        pbc=system.pbc,
        units=system.units,
        masses=top.masses,
        species=top.types,
        species_names=list(top.type_names),
        bonds=top.bonds,
        molecules=top.molecules(),
    )


def reference_beads(system: SystemTrajectory, settings: CGSettings) -> BeadTrajectory:
    """Coarse-grain an atom-level reference system with ``settings`` (METIS mapping)."""
    top = system.topology
    mapping = compute_mapping(top, settings)
    return BeadTrajectory(
        name=system.name,
        positions=coarse_grain_trajectory(system, mapping),
        time=np.asarray(system.time, dtype=np.float64),
        box=np.asarray(system.box, dtype=np.float64),
        pbc=system.pbc,
        units=system.units,
        masses=mapping.bead_masses,
        species=mapping.bead_species,
        species_names=list(mapping.species_names),
        bonds=mapping.cg_bonds,
        molecules=mapping.bead_molecule,
    )


def check_same_beads(model: BeadTrajectory, reference: BeadTrajectory) -> None:
    """Raise :class:`DataError` unless both trajectories have the same beads, species (in the
    same order) and units."""
    where = f"rollout system {model.name!r} vs reference system {reference.name!r}"
    if model.n_beads != reference.n_beads:
        raise DataError(
            f"{where}: the rollout has {model.n_beads} beads but the reference coarse-grains "
            f"to {reference.n_beads}; were the CG settings in the rollout attributes changed?"
        )
    model_species = np.asarray(model.species_names)[model.species]
    reference_species = np.asarray(reference.species_names)[reference.species]
    bad = np.flatnonzero(model_species != reference_species)
    if bad.size:
        raise DataError(
            f"{where}: bead {bad[0]} is {model_species[bad[0]]!r} in the rollout but "
            f"{reference_species[bad[0]]!r} in the coarse-grained reference"
        )
    if model.species_names != reference.species_names:
        raise DataError(f"{where}: species {model.species_names} vs {reference.species_names}")
    if model.units != reference.units:
        raise DataError(f"{where}: units {model.units!r} vs {reference.units!r}")
