"""Trajectory data: readers (LAMMPS, mdtraj, ASE), the on-disk dataset, synthetic systems."""

from eqcg.data.store import TrajectoryDataset, load_dataset, write_dataset
from eqcg.data.trajectory import SystemTrajectory, Topology

__all__ = ["SystemTrajectory", "Topology", "TrajectoryDataset", "load_dataset", "write_dataset"]
