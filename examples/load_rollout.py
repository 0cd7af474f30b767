"""Load a rollout into mdtraj and ASE (and write an extxyz for OVITO).

    python examples/load_rollout.py example-runs/rollout

Needs a rollout directory: ``examples/rollout_and_plot_rg.py`` writes ``example-runs/rollout``
(after ``examples/train_from_python.py``), or any ``eqcg rollout --out DIR``.
"""

import argparse
from pathlib import Path

import ase
import ase.io
import mdtraj

import eqcg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rollout", type=Path)
    args = parser.parse_args()

    with eqcg.load_dataset(args.rollout / "rollout.h5") as rollout:
        for system in rollout:
            traj = mdtraj.load(str(args.rollout / f"{system.name}.dcd"),
                               top=str(args.rollout / f"{system.name}.pdb"))
            print(f"{system.name}: mdtraj sees {traj.n_frames} frames of {traj.n_atoms} beads "
                  f"and {traj.topology.n_bonds} CG bonds; time {system.time[0]:g}.."
                  f"{system.time[-1]:g}")
            frames = [
                ase.Atoms(
                    symbols=["X"] * system.n_atoms,
                    positions=positions,
                    masses=system.topology.masses,
                    cell=system.box[i] if system.pbc else None,
                    pbc=system.pbc,
                    info={"time": float(system.time[i])},
                )
                for i, positions in enumerate(system.positions[()])
            ]
            path = args.rollout / f"{system.name}.extxyz"
            ase.io.write(path, frames)
            print(f"  wrote {path} ({len(ase.io.read(path, index=':'))} frames, ASE)")


if __name__ == "__main__":
    main()
