"""Read any trajectory mdtraj reads (DCD, XTC, TRR, NetCDF, HDF5, multi-model PDB, ...).

The topology file must carry bonds: PSF, AMBER prmtop/parm7, mdtraj HDF5, or a PDB with
``CONECT`` records (mdtraj adds bonds of standard residues from its templates, others only from
``CONECT``). Atom types are element symbols (the atom name for atoms without an element),
masses are element masses unless given, and bond types number the pairs of atom types
(:func:`~eqcg.data.bonds.bond_types_from_atom_types`).

Units. mdtraj converts every format to nm on reading and keeps time in ps. With
``units="real"`` positions and cell vectors are multiplied by 10 (Å). With ``units="lj"``
(files whose numbers are sigma) the numbers as written in the file are recovered: mdtraj
divided the numbers of Å-based formats (PDB, DCD, NetCDF, ...) by 10, so they are multiplied
back by 10; nm-based formats (XTC, TRR, GRO, HDF5, TNG) are left as read. Times are taken as ps
(``real``) or tau (``lj``) as written.

Positions in DCD/XTC files are usually wrapped into the cell: periodic trajectories are unwrapped
with :func:`~eqcg.data.unwrap.unwrap_trajectory` (molecules made whole in the first frame, then
continuity between frames), which **assumes atoms move less than half a cell between frames**.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import mdtraj
import numpy as np

from eqcg.data.bonds import bond_types_from_atom_types
from eqcg.data.trajectory import SystemTrajectory, Topology, concatenate_in_time
from eqcg.data.unwrap import unwrap_trajectory
from eqcg.errors import DataError
from eqcg.units import unit_system

PathLike = str | os.PathLike

#: Formats mdtraj reads in nm (numbers as written); every other format is Å-based.
NM_FORMATS = frozenset({".xtc", ".trr", ".gro", ".h5", ".tng"})
#: Formats whose frames carry their time; others need ``frame_interval``.
TIMED_FORMATS = frozenset({".xtc", ".trr", ".h5", ".nc", ".ncdf", ".netcdf", ".dtr", ".tng"})


def read_mdtraj(
    topology: PathLike,
    trajectories: Sequence[PathLike] | PathLike = (),
    *,
    name: str,
    units: str = "real",
    stride: int = 1,
    frame_interval: float | None = None,
    masses: Mapping[str, float] | None = None,
) -> SystemTrajectory:
    """Read a topology and its trajectory files with mdtraj as one unwrapped trajectory.

    Args:
        topology: a file with atoms and bonds (PSF, prmtop/parm7, HDF5, PDB with CONECT, ...).
        trajectories: trajectory files in time order; by default the topology file itself
            (a multi-model PDB or an HDF5 trajectory). Frames whose time does not pass the
            previous file's last time are dropped
            (:func:`~eqcg.data.trajectory.concatenate_in_time`).
        name: name of the system in the dataset.
        units: ``"real"`` (Å, ps) or ``"lj"`` (sigma, tau); see the module doc.
        stride: keep every ``stride``-th frame of each file.
        frame_interval: time between consecutive frames *in the files* (ps or tau); frame
            times become ``index * stride * frame_interval``, counting on across files.
            Required for formats without times (DCD, PDB, ...); overrides file times when given.
        masses: mass per atom-type name (element symbol or atom name), overriding element
            masses; needed for atoms without an element (virtual sites, LJ particles).

    Raises :class:`DataError` naming the file when mdtraj cannot read it, the topology has no
    bonds (and more than one atom), an atom has no mass, or the time axis is unknown.
    """
    paths = [Path(p) for p in _as_list(trajectories)] or [Path(topology)]
    where = f"{topology} + {', '.join(str(p) for p in paths)}"
    unit_system(units, where)
    if stride < 1:
        raise DataError(f"{where}: stride must be at least 1, got {stride}")
    if frame_interval is not None and not (np.isfinite(frame_interval) and frame_interval > 0):
        raise DataError(f"{where}: frame_interval must be positive, got {frame_interval}")
    top = _load_topology(Path(topology))
    fine = topology_from_mdtraj(top, str(topology), masses)
    parts, offset = [], 0
    for path in paths:
        part = _read_part(path, top, fine, name=name, units=units, stride=stride)
        if frame_interval is not None:
            part.time = (offset + np.arange(part.n_frames)) * stride * frame_interval
        elif path.suffix.lower() not in TIMED_FORMATS:
            raise DataError(
                f"{path}: {path.suffix or 'this'} files carry no frame times; pass "
                f"frame_interval (time between frames, ps or tau)"
            )
        offset += part.n_frames
        parts.append(part)
    if len({part.pbc for part in parts}) > 1:
        raise DataError(f"{where}: some files have a periodic cell and others do not")
    joined = concatenate_in_time(parts, where)
    if joined.pbc:
        joined.positions = unwrap_trajectory(joined.positions, joined.box, fine.bonds, where)
    joined.source = f"mdtraj: {where}"
    return joined


def _as_list(files: Sequence[PathLike] | PathLike) -> list[PathLike]:
    return [files] if isinstance(files, (str, os.PathLike)) else list(files)


def _load_topology(path: Path) -> mdtraj.Topology:
    try:
        return mdtraj.load_topology(str(path))
    except Exception as exc:  # mdtraj raises many types for unreadable files
        raise DataError(f"{path}: mdtraj cannot read a topology from it ({exc})") from exc


def _read_part(
    path: Path, top: mdtraj.Topology, fine: Topology, *, name: str, units: str, stride: int
) -> SystemTrajectory:
    """One file as a (still wrapped) trajectory in the dataset's units."""
    try:
        traj = mdtraj.load(str(path), top=top, stride=stride)
    except Exception as exc:  # mdtraj raises many types for unreadable files
        raise DataError(f"{path}: mdtraj cannot read it with this topology ({exc})") from exc
    scale = 10.0 if units == "real" or path.suffix.lower() not in NM_FORMATS else 1.0
    cell = traj.unitcell_vectors
    pbc = cell is not None and bool(np.all(np.linalg.det(cell) > 0))
    box = cell.astype(np.float64) * scale if pbc else np.zeros((traj.n_frames, 3, 3))
    return SystemTrajectory(
        name=name,
        topology=fine,
        positions=traj.xyz.astype(np.float64) * scale,
        box=box,
        time=np.asarray(traj.time, dtype=np.float64),
        pbc=pbc,
        units=units,
    )


def topology_from_mdtraj(
    top: mdtraj.Topology, where: str, masses: Mapping[str, float] | None = None
) -> Topology:
    """An eqcg :class:`Topology` from an mdtraj topology (types = element symbols).

    ``masses`` maps type names to masses, overriding element masses. Raises
    :class:`DataError` naming ``where`` for an atom without a mass, or for a topology of
    several atoms without any bond.
    """
    atoms = list(top.atoms)
    has_element = [a.element is not None and a.element.mass > 0 for a in atoms]
    names = [a.element.symbol if ok else a.name for a, ok in zip(atoms, has_element)]
    masses = masses or {}
    atom_masses = np.array(
        [
            masses.get(n, a.element.mass if ok else np.nan)
            for a, n, ok in zip(atoms, names, has_element)
        ],
        dtype=np.float64,
    )
    missing = np.flatnonzero(~(atom_masses > 0))
    if missing.size:
        atom = atoms[missing[0]]
        raise DataError(
            f"{where}: atom {atom.index} ({atom.name} in residue {atom.residue}) has no element, "
            f"so no mass; pass masses={{{names[missing[0]]!r}: ...}}"
        )
    bonds = np.array([(b.atom1.index, b.atom2.index) for b in top.bonds], dtype=np.int64)
    bonds = bonds.reshape(-1, 2)
    if len(bonds) == 0 and len(atoms) > 1:
        raise DataError(
            f"{where}: the topology has {len(atoms)} atoms but no bonds; use a topology that "
            f"carries bonds (PSF, prmtop/parm7, mdtraj HDF5, or PDB with CONECT records)"
        )
    type_names, types = np.unique(names, return_inverse=True)
    types = types.reshape(-1)
    return Topology(
        masses=atom_masses,
        types=types,
        type_names=list(type_names),
        bonds=bonds,
        bond_types=bond_types_from_atom_types(types, bonds),
    )
