"""In-memory description of one simulated system: topology plus an unwrapped trajectory.

Every reader (LAMMPS, mdtraj, ASE) and every reference-MD generator produces a
:class:`SystemTrajectory`; :mod:`eqcg.data.store` writes lists of them to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from eqcg.errors import DataError
from eqcg.units import unit_system

# key of a system's attrs: wall-clock seconds of the LAMMPS run that generated it (the sum of its
# loop times), stored by eqcg.systems.generate and read for the speed-ups of an evaluation
LAMMPS_WALL_SECONDS = "lammps_wall_s"
# keys of a system's attrs holding its thermostat temperature (K for real units, epsilon/k_B for
# lj), in the order they are looked up; ``ingest``/``simulate --temperature`` write the first
TEMPERATURE_ATTRS = ("temperature", "temperature_K")
# keys of a system's attrs describing its salt and chains: with its temperature, its conditions
SALT_ATTRS = ("n_salt", "li_eo_ratio", "chain_length")


@dataclass
class Topology:
    """Atoms and bonds of one system; no coordinates.

    Attributes:
        masses: ``(n_atoms,)`` atom masses (g/mol or m).
        types: ``(n_atoms,)`` atom type index into ``type_names`` (0-based).
        type_names: name of each atom type (e.g. LAMMPS type ids as strings, or elements).
        bonds: ``(n_bonds, 2)`` 0-based atom indices.
        bond_types: ``(n_bonds,)`` 0-based bond type index.
        charges: ``(n_atoms,)`` partial charges (e), or ``None`` when unknown.
    """

    masses: np.ndarray
    types: np.ndarray
    type_names: list[str]
    bonds: np.ndarray
    bond_types: np.ndarray
    charges: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.masses = np.asarray(self.masses, dtype=np.float64)
        self.types = np.asarray(self.types, dtype=np.int64)
        self.bonds = np.asarray(self.bonds, dtype=np.int64).reshape(-1, 2)
        self.bond_types = np.asarray(self.bond_types, dtype=np.int64).reshape(-1)
        self.type_names = [str(t) for t in self.type_names]
        if self.charges is not None:
            self.charges = np.asarray(self.charges, dtype=np.float64)

    @property
    def n_atoms(self) -> int:
        return int(self.masses.shape[0])

    @property
    def n_bonds(self) -> int:
        return int(self.bonds.shape[0])

    def molecules(self) -> np.ndarray:
        """``(n_atoms,)`` molecule index of each atom: connected components of the bond graph."""
        n = self.n_atoms
        graph = scipy.sparse.coo_matrix(
            (np.ones(self.n_bonds), (self.bonds[:, 0], self.bonds[:, 1])), shape=(n, n)
        )
        _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
        return labels.astype(np.int64)

    def validate(self, where: str) -> None:
        """Check shapes and index ranges; raise :class:`DataError` naming ``where`` and the atom."""
        n = self.n_atoms
        if self.masses.ndim != 1 or n == 0:
            raise DataError(f"{where}: masses must have shape (n_atoms,), got {self.masses.shape}")
        for name, arr in (("types", self.types), ("charges", self.charges)):
            if arr is not None and arr.shape != (n,):
                raise DataError(f"{where}: {name} has shape {arr.shape}, expected ({n},)")
        bad = np.flatnonzero(~np.isfinite(self.masses) | (self.masses <= 0))
        if bad.size:
            raise DataError(f"{where}: atom {bad[0]} has invalid mass {self.masses[bad[0]]}")
        bad = np.flatnonzero((self.types < 0) | (self.types >= len(self.type_names)))
        if bad.size:
            raise DataError(
                f"{where}: atom {bad[0]} has type index {self.types[bad[0]]} but only "
                f"{len(self.type_names)} atom types are defined"
            )
        if self.bond_types.shape != (self.n_bonds,):
            raise DataError(
                f"{where}: bond_types has shape {self.bond_types.shape}, expected ({self.n_bonds},)"
            )
        bad = np.flatnonzero(((self.bonds < 0) | (self.bonds >= n)).any(axis=1))
        if bad.size:
            raise DataError(
                f"{where}: bond {bad[0]} joins atoms {self.bonds[bad[0]].tolist()}, "
                f"outside 0..{n - 1}"
            )
        bad = np.flatnonzero(self.bonds[:, 0] == self.bonds[:, 1])
        if bad.size:
            raise DataError(f"{where}: bond {bad[0]} joins atom {self.bonds[bad[0], 0]} to itself")


@dataclass
class SystemTrajectory:
    """One system's topology and unwrapped trajectory.

    Attributes:
        name: unique name of the system within its dataset.
        topology: atoms and bonds.
        positions: ``(n_frames, n_atoms, 3)`` **unwrapped** positions (Å or sigma). An
            ``h5py.Dataset`` when loaded from disk (sliced lazily), a numpy array otherwise.
        box: ``(n_frames, 3, 3)`` cell vectors as rows (Å or sigma); zeros when not periodic.
        time: ``(n_frames,)`` simulated time of each frame (ps or tau).
        pbc: whether the system is periodic in all three directions.
        units: ``"real"`` or ``"lj"`` (see :mod:`eqcg.units`).
        source: where the data came from (generator, files).
        attrs: free-form scalar metadata (temperature, sequence, salt ratio, ...).
    """

    name: str
    topology: Topology
    positions: Any
    box: np.ndarray
    time: np.ndarray
    pbc: bool
    units: str
    source: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_atoms(self) -> int:
        return self.topology.n_atoms

    @property
    def temperature(self) -> float | None:
        """Thermostat temperature from the attrs (:data:`TEMPERATURE_ATTRS`), or ``None``."""
        for key in TEMPERATURE_ATTRS:
            if key in self.attrs:
                return float(self.attrs[key])
        return None

    @property
    def conditions(self) -> dict[str, float]:
        """``temperature`` (when known) and the :data:`SALT_ATTRS` the attrs hold."""
        out = {} if self.temperature is None else {"temperature": self.temperature}
        return out | {key: float(self.attrs[key]) for key in SALT_ATTRS if key in self.attrs}

    @property
    def frame_interval(self) -> float:
        """Time between consecutive frames (ps or tau)."""
        return float(self.time[1] - self.time[0]) if self.n_frames > 1 else 0.0

    def validate(self, where: str | None = None) -> None:
        """Check shapes, finiteness and time order; raise :class:`DataError` with frame and atom."""
        where = where or f"system {self.name!r}"
        unit_system(self.units, where)
        self.topology.validate(where)
        pos = np.asarray(self.positions)
        n_frames = pos.shape[0] if pos.ndim == 3 else -1
        if pos.ndim != 3 or pos.shape[1:] != (self.n_atoms, 3):
            raise DataError(
                f"{where}: positions have shape {pos.shape}, expected (n_frames, {self.n_atoms}, 3)"
            )
        if n_frames == 0:
            raise DataError(f"{where}: trajectory has no frames")
        bad = ~np.isfinite(pos).all(axis=2)
        if bad.any():
            frame, atom = np.argwhere(bad)[0]
            raise DataError(f"{where}: frame {frame}, atom {atom}: non-finite coordinates")
        box = np.asarray(self.box)
        if box.shape != (n_frames, 3, 3):
            raise DataError(f"{where}: box has shape {box.shape}, expected ({n_frames}, 3, 3)")
        if self.pbc:
            vol = np.linalg.det(box)
            bad_frames = np.flatnonzero(~(vol > 0))
            if bad_frames.size:
                raise DataError(
                    f"{where}: frame {bad_frames[0]}: periodic cell has non-positive volume"
                )
        time = np.asarray(self.time)
        if time.shape != (n_frames,):
            raise DataError(f"{where}: time has shape {time.shape}, expected ({n_frames},)")
        steps = np.diff(time)
        bad_frames = np.flatnonzero(~(steps > 0))
        if bad_frames.size:
            raise DataError(
                f"{where}: frame {bad_frames[0] + 1}: time {time[bad_frames[0] + 1]} does not "
                f"advance past {time[bad_frames[0]]}"
            )


def concatenate_in_time(parts: list[SystemTrajectory], where: str) -> SystemTrajectory:
    """Join trajectories of one system (same topology) in time, dropping repeated frames.

    A frame whose time equals the last time of the previous part (a restart writes it twice)
    is kept once; ``where`` names the files in error messages.
    """
    first = parts[0]
    positions, boxes, times = [np.asarray(first.positions)], [first.box], [first.time]
    for i, part in enumerate(parts[1:], start=1):
        if part.n_atoms != first.n_atoms:
            raise DataError(
                f"{where}: trajectory part {i} has {part.n_atoms} atoms, part 0 has {first.n_atoms}"
            )
        keep = part.time > times[-1][-1]
        positions.append(np.asarray(part.positions)[keep])
        boxes.append(part.box[keep])
        times.append(part.time[keep])
    return SystemTrajectory(
        name=first.name,
        topology=first.topology,
        positions=np.concatenate(positions),
        box=np.concatenate(boxes),
        time=np.concatenate(times),
        pbc=first.pbc,
        units=first.units,
        source=first.source,
        attrs=dict(first.attrs),
    )
