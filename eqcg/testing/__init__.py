"""Test support: tiny random batches, whether LAMMPS can run, and (in
:mod:`eqcg.testing.variant_tests`, which needs pytest) the test-suite every variant subclasses.

The top layer of the package: it may import anything below it, nothing imports it.
``random_system`` (from :mod:`eqcg.data.synthetic`) is re-exported for convenience.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch

from eqcg.cg.mapping import CGSettings
from eqcg.data.synthetic import random_system
from eqcg.graphs.system import CGSystem, TypeVocabulary

__all__ = ["lammps_available", "random_batch", "random_system"]


def random_batch(
    n_systems: int = 2,
    history: int = 4,
    pbc: bool = True,
    triclinic: bool = False,
    cg_level: int = 3,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> tuple[Batch, TypeVocabulary]:
    """A batch of ``n_systems`` CG graphs with ``history`` frames and a target frame."""
    systems = [
        random_system(f"sys{i}", pbc=pbc, triclinic=triclinic, seed=seed + i,
                      n_frames=history + 1)
        for i in range(n_systems)
    ]
    vocabulary = TypeVocabulary.from_systems(systems)
    settings = CGSettings(cg_level=cg_level, whole_molecule_max_atoms=1)
    graphs = [
        CGSystem.from_trajectory(s, settings, vocabulary).graph(np.arange(history), history, dtype)
        for s in systems
    ]
    return Batch.from_data_list(graphs), vocabulary


def lammps_available() -> bool:
    """Whether the LAMMPS engine (``eqcg[md]``) can be started here (tests that run it skip
    otherwise)."""
    from eqcg.errors import SimulationError
    from eqcg.systems.lammps_runner import lammps_executable

    try:
        lammps_executable()
    except SimulationError:
        return False
    return True
