"""Write rollouts: an eqcg dataset of beads (for ``eqcg evaluate``) plus PDB + DCD per system.

``OUT/rollout.h5`` is an ordinary eqcg dataset whose "atoms" are beads (masses = bead masses,
types = molecule kinds, bonds = CG bonds), with the CG settings and the reference frames it
started from in each system's attributes. ``OUT/<system>.pdb`` (CG topology with CONECT bonds)
and ``OUT/<system>.dcd`` open in VMD, OVITO and mdtraj; lengths there are Å (LJ lengths are
written as if they were Å).
"""

from __future__ import annotations

import os
from pathlib import Path

import mdtraj
import numpy as np

from eqcg.data.graph import CGSystem
from eqcg.data.store import ROLLOUT_FILE, write_dataset
from eqcg.data.trajectory import SystemTrajectory, Topology


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
        attrs: metadata to store with the system.
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


def write_rollout(out: str | os.PathLike, trajectories: list[SystemTrajectory]) -> Path:
    """Write ``rollout.h5`` and per-system PDB + DCD files into ``out``; return ``out``."""
    out = Path(out)
    write_dataset(out / ROLLOUT_FILE, trajectories, source="eqcg rollout")
    for trajectory in trajectories:
        pos_nm = np.asarray(trajectory.positions, dtype=np.float32) / 10.0
        traj = mdtraj.Trajectory(pos_nm, mdtraj_topology(trajectory), time=trajectory.time)
        if trajectory.pbc:
            traj.unitcell_vectors = np.asarray(trajectory.box, dtype=np.float32) / 10.0
        traj[0].save_pdb(str(out / f"{trajectory.name}.pdb"))
        tmp = out / f".{trajectory.name}.tmp-{os.getpid()}.dcd"
        traj.save_dcd(str(tmp))
        os.replace(tmp, out / f"{trajectory.name}.dcd")
    return out
