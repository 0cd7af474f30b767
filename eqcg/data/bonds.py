"""Bond types for readers whose files have bonds but no bond types (mdtraj, ASE)."""

from __future__ import annotations

import numpy as np


def bond_types_from_atom_types(types: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """``(n_bonds,)`` 0-based bond type: one type per unordered pair of atom types.

    Args:
        types: ``(n_atoms,)`` 0-based atom type of each atom.
        bonds: ``(n_bonds, 2)`` 0-based atom indices.

    Types are numbered in sorted order of their ``(lower, higher)`` atom-type pair, so the same
    atom types always give the same bond types within one system.
    """
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = np.sort(np.asarray(types, dtype=np.int64)[bonds], axis=1)
    _, bond_types = np.unique(pairs, axis=0, return_inverse=True)
    return bond_types.reshape(-1).astype(np.int64)
