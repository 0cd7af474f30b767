"""eqcg: E(3)-equivariant learned coarse-grained molecular dynamics with huge time steps."""

from eqcg.data import SystemTrajectory, Topology, TrajectoryDataset, load_dataset, write_dataset

__version__ = "0.1.0"

__all__ = [
    "SystemTrajectory",
    "Topology",
    "TrajectoryDataset",
    "load_dataset",
    "write_dataset",
]
