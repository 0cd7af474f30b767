"""Unwrap periodic trajectories that were stored wrapped into the cell (no image flags).

Used by the readers whose files carry no image flags (mdtraj, ASE, LAMMPS dumps of plain
``x y z``). Two steps, both in fractional coordinates of each frame's own cell, so a cell that
changes in time (NPT) is handled:

1. **Whole molecules in the first frame.** Each molecule (connected component of the bond
   graph) is rebuilt from its first atom outwards along a spanning tree of its bonds, taking
   the minimum image of every tree bond. Assumes every bond is shorter than half the cell.
2. **Continuity in time.** Frame ``t`` is shifted by whole cell vectors so that every atom's
   displacement from frame ``t - 1`` is its minimum image. Assumes **no atom moves more than
   half a cell between consecutive frames**; a trajectory saved too rarely cannot be unwrapped
   and needs image flags.

The first atom of each molecule keeps its first-frame position, so already-unwrapped input
satisfying both assumptions comes back unchanged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from eqcg.errors import DataError


def unwrap_trajectory(
    positions: np.ndarray, box: np.ndarray, bonds: np.ndarray | None = None, where: str = ""
) -> np.ndarray:
    """Unwrap wrapped periodic positions by whole molecules and continuity between frames.

    Args:
        positions: ``(n_frames, n_atoms, 3)`` wrapped positions (Å or sigma).
        box: ``(n_frames, 3, 3)`` periodic cell vectors as rows (Å or sigma).
        bonds: ``(n_bonds, 2)`` 0-based atom indices; when given, molecules are made whole in
            the first frame (see the module doc).
        where: file names for error messages.

    Returns ``(n_frames, n_atoms, 3)`` unwrapped positions: the input shifted by whole cell
    vectors, ``x + n @ box``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    singular = np.flatnonzero(~(np.abs(np.linalg.det(box)) > 0))
    if singular.size:
        raise DataError(f"{where}: frame {singular[0]}: cannot unwrap in a cell of zero volume")
    frac = np.einsum("fai,fij->faj", positions, np.linalg.inv(box))
    images = np.zeros_like(frac)
    images[1:] = -np.cumsum(np.rint(np.diff(frac, axis=0)), axis=0)
    if bonds is not None and len(bonds):
        images += _whole_molecule_shifts(frac[0], np.asarray(bonds, dtype=np.int64))
    return positions + np.einsum("fai,fij->faj", images, box)


def _whole_molecule_shifts(frac: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """``(n_atoms, 3)`` whole-cell shifts (fractional) that make every molecule whole.

    ``frac`` is ``(n_atoms, 3)`` fractional positions of one frame. Each atom is placed at the
    minimum image of its spanning-tree bond to its parent; offsets from the root are summed
    along the tree by pointer jumping (``log2(depth)`` vectorised passes).
    """
    parent = _spanning_forest_parents(len(frac), bonds)
    step = frac - frac[parent]
    offset = step - np.rint(step)  # minimum-image bond vector parent -> atom; 0 at roots
    ancestor = parent
    while np.any(ancestor[ancestor] != ancestor):
        offset = offset + offset[ancestor]
        ancestor = ancestor[ancestor]
    whole = frac[ancestor] + offset
    return np.rint(whole - frac)


def _spanning_forest_parents(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """``(n_atoms,)`` parent of each atom in a breadth-first spanning forest of the bond graph.

    The root of each molecule is its lowest-index atom and is its own parent. One search from
    an extra node joined to every root covers all molecules at once.
    """
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n_atoms, n_atoms)
    )
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    _, roots = np.unique(labels, return_index=True)
    hub = n_atoms
    rows = np.concatenate([bonds[:, 0], roots])
    cols = np.concatenate([bonds[:, 1], np.full(len(roots), hub)])
    forest = scipy.sparse.coo_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(n_atoms + 1, n_atoms + 1)
    ).tocsr()
    _, predecessors = scipy.sparse.csgraph.breadth_first_order(
        forest, hub, directed=False, return_predecessors=True
    )
    parent = predecessors[:n_atoms].astype(np.int64)
    parent[roots] = roots
    return parent
