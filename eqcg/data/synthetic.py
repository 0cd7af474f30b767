"""Random bonded trajectories: shapes and symmetries for tests and equivariance probes, no physics.

The trajectories are random walks of bonded chains plus free ions, in a periodic (optionally
triclinic) box or in open space.
"""

from __future__ import annotations

import numpy as np

from eqcg.data.trajectory import SystemTrajectory, Topology


def random_system(
    name: str,
    n_chains: int = 2,
    chain_length: int = 12,
    n_ions: int = 2,
    n_frames: int = 12,
    pbc: bool = True,
    triclinic: bool = False,
    seed: int = 0,
) -> SystemTrajectory:
    """A random bonded system: chains of types ``C``/``O`` plus ``Li`` ions (Å, ps)."""
    rng = np.random.default_rng(seed)
    n_atoms = n_chains * chain_length + n_ions
    types = np.r_[rng.integers(0, 2, n_chains * chain_length), np.full(n_ions, 2)]
    starts = np.arange(n_chains) * chain_length
    bonds = np.concatenate([
        np.c_[s + np.arange(chain_length - 1), s + np.arange(1, chain_length)] for s in starts
    ])
    cell = np.diag([14.0, 15.0, 16.0])
    if triclinic:
        cell[1, 0], cell[2, 0], cell[2, 1] = 3.0, -2.0, 1.5
    steps = rng.normal(size=(n_chains, chain_length, 3))
    steps *= 1.5 / np.linalg.norm(steps, axis=-1, keepdims=True)
    chains = np.cumsum(steps, axis=1) + rng.uniform(0, 12, size=(n_chains, 1, 3))
    start = np.concatenate([chains.reshape(-1, 3), rng.uniform(0, 12, size=(n_ions, 3))])
    drift = np.cumsum(rng.normal(scale=0.3, size=(n_frames, n_atoms, 3)), axis=0)
    return SystemTrajectory(
        name=name,
        topology=Topology(
            masses=np.array([12.011, 15.999, 6.94])[types],
            types=types,
            type_names=["C", "O", "Li"],
            bonds=bonds,
            bond_types=np.zeros(len(bonds), dtype=np.int64),
        ),
        positions=start + drift,
        box=np.tile(cell if pbc else np.zeros((3, 3)), (n_frames, 1, 1)),
        time=np.arange(n_frames) * 2.0,
        pbc=pbc,
        units="real",
    )
