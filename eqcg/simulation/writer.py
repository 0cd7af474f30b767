"""Rollout output beyond ``rollout.h5``: bead trajectories of CG systems, PDB + DCD per system.

:func:`bead_trajectory` turns a rollout of a :class:`~eqcg.graphs.system.CGSystem` into the
bead-level trajectory that :mod:`eqcg.data.rollout_file` stores in ``OUT/rollout.h5``.
``OUT/<system>.pdb`` (CG topology with CONECT bonds) and ``OUT/<system>.dcd`` open in VMD, OVITO
and mdtraj; lengths there are Å (LJ lengths are written as if they were Å).
"""

from __future__ import annotations

import os
from pathlib import Path

import mdtraj
import numpy as np

from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.graphs.system import CGSystem
from eqcg.runtime.atomic import atomic_path


def bead_trajectory(
    system: CGSystem,
    positions: np.ndarray,
    time: np.ndarray,
    box: np.ndarray,
    attrs: dict,
) -> SystemTrajectory:
    """A rollout of ``system`` as a bead-level trajectory.

    Args:
        positions: ``(n_frames, n_beads, 3)`` unwrapped bead positions.
        time: ``(n_frames,)`` simulated time (ps or tau).
        box: ``(3, 3)`` cell vectors as rows (constant during a rollout).
        attrs: metadata to store with the system:
            :meth:`~eqcg.data.rollout_file.RolloutAttrs.to_attrs` and any more.
    """
    mapping = system.mapping
    return SystemTrajectory(
        name=system.name,
        topology=Topology(
            masses=mapping.bead_masses,
            types=mapping.bead_species,
            type_names=mapping.species_names,
            bonds=mapping.cg_bonds,
            bond_types=np.zeros(len(mapping.cg_bonds), dtype=np.int64),
        ),
        positions=positions,
        box=np.broadcast_to(box, (len(time), 3, 3)).copy(),
        time=time,
        pbc=system.pbc,
        units=system.units,
        source="eqcg rollout",
        attrs=attrs,
    )


def mdtraj_topology(trajectory: SystemTrajectory) -> mdtraj.Topology:
    """An mdtraj topology of beads: one chain per molecule, one residue per bead, CG bonds."""
    top = trajectory.topology
    molecule = top.molecules()
    topology = mdtraj.Topology()
    chains = [topology.add_chain() for _ in range(molecule.max() + 1)]
    atoms = []
    for bead in range(top.n_atoms):
        residue = topology.add_residue("CG", chains[molecule[bead]], resSeq=bead + 1)
        name = f"B{top.types[bead]}"
        atoms.append(topology.add_atom(name, mdtraj.element.virtual_site, residue))
    for i, j in top.bonds:
        topology.add_bond(atoms[i], atoms[j])
    return topology


def write_viewer_files(out: str | os.PathLike, trajectories: list[SystemTrajectory]) -> None:
    """Write a PDB (topology, first frame) and a DCD (all frames) per system into ``out``."""
    out = Path(out)
    for trajectory in trajectories:
        pos_nm = np.asarray(trajectory.positions, dtype=np.float32) / 10.0
        traj = mdtraj.Trajectory(pos_nm, mdtraj_topology(trajectory), time=trajectory.time)
        if trajectory.pbc:
            traj.unitcell_vectors = np.asarray(trajectory.box, dtype=np.float32) / 10.0
        traj[0].save_pdb(str(out / f"{trajectory.name}.pdb"))
        with atomic_path(out / f"{trajectory.name}.dcd") as tmp:
            traj.save_dcd(str(tmp))


__all__ = ["bead_trajectory", "mdtraj_topology", "write_viewer_files"]
