"""Structural metrics of bead (or atom) trajectories: Rg, end-to-end vectors, RDFs, bond lengths.

Lengths are in the trajectory's length unit (Å for ``real`` data, sigma for ``lj``). Boxes are
``(3, 3)`` cell vectors as rows; periodic distances follow the minimum-image convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import vesin


def _group_weights(masses: np.ndarray, groups: np.ndarray) -> scipy.sparse.csr_matrix:
    """``(n_groups, n)`` sparse matrix holding each particle's mass fraction of its group."""
    totals = np.bincount(groups, weights=masses)
    n = groups.shape[0]
    return scipy.sparse.csr_matrix(
        (masses / totals[groups], (groups, np.arange(n))), shape=(totals.shape[0], n)
    )


def centres_of_mass(positions: np.ndarray, masses: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``(..., n_groups, 3)`` mass-weighted centre of each group of ``positions (..., n, 3)``
    (unwrapped, length unit); ``groups (n,)`` is each particle's group ``0..n_groups-1``."""
    pos = np.asarray(positions, dtype=np.float64)
    n = pos.shape[-2]
    weights = _group_weights(np.asarray(masses, dtype=np.float64),
                             np.asarray(groups, dtype=np.int64))
    centres = weights @ np.moveaxis(pos, -2, 0).reshape(n, -1)  # (n_groups, prod(...) * 3)
    return np.moveaxis(centres.reshape(weights.shape[0], *pos.shape[:-2], 3), 0, -2)


def radius_of_gyration(
    positions: np.ndarray, masses: np.ndarray, groups: np.ndarray | None = None
) -> np.ndarray:
    """Mass-weighted radius of gyration, ``sqrt(sum_i m_i |x_i - x_com|^2 / sum_i m_i)``.

    Args:
        positions: ``(..., n, 3)`` unwrapped positions (length unit); molecules must be whole.
        masses: ``(n,)`` masses (any unit: only ratios matter).
        groups: ``(n,)`` group index ``0..n_groups-1`` of each particle (e.g. its molecule), or
            ``None`` for one group holding every particle.

    Returns ``(...)`` when ``groups`` is ``None``, else ``(..., n_groups)``, in the length unit.
    """
    pos = np.asarray(positions, dtype=np.float64)
    n = pos.shape[-2]
    labels = np.zeros(n, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    weights = _group_weights(np.asarray(masses, dtype=np.float64), labels)
    flat = np.moveaxis(pos, -2, 0).reshape(n, -1)  # (n, prod(...) * 3)
    deviation = (flat - (weights @ flat)[labels]).reshape(n, -1, 3)
    rg = np.sqrt(weights @ (deviation**2).sum(-1))  # (n_groups, prod(...))
    rg = np.moveaxis(rg.reshape(weights.shape[0], *pos.shape[:-2]), 0, -1)
    return rg[..., 0] if groups is None else rg


def linear_chains(bonds: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups (molecules) whose bond graph is a linear chain, and the chains' end particles.

    A group is a linear chain when it has at least two particles, one bond fewer than particles,
    exactly two particles with one bond and none with more than two (then, being connected, it is
    a path).

    Args:
        bonds: ``(n_bonds, 2)`` particle indices.
        groups: ``(n,)`` connected-component (molecule) index of each particle.

    Returns ``chain_groups (n_chains,)`` and ``ends (n_chains, 2)`` particle indices, the lower
    index first.
    """
    groups = np.asarray(groups, dtype=np.int64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    degree = np.bincount(bonds.ravel(), minlength=groups.shape[0])
    size = np.bincount(groups, minlength=n_groups)
    n_bonds = np.bincount(groups[bonds[:, 0]], minlength=n_groups)
    n_ends = np.bincount(groups, weights=degree == 1, minlength=n_groups)
    n_branch = np.bincount(groups, weights=degree > 2, minlength=n_groups)
    is_chain = (size >= 2) & (n_bonds == size - 1) & (n_ends == 2) & (n_branch == 0)
    end_particles = np.flatnonzero((degree == 1) & is_chain[groups])
    end_particles = end_particles[np.argsort(groups[end_particles], kind="stable")]
    return np.flatnonzero(is_chain), end_particles.reshape(-1, 2)


def end_to_end_vectors(positions: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``(..., n_chains, 3)`` vector from each chain's first end to its second (length unit).

    Args:
        positions: ``(..., n, 3)`` unwrapped positions.
        ends: ``(n_chains, 2)`` end particle indices (see :func:`linear_chains`).
    """
    pos = np.asarray(positions, dtype=np.float64)
    return pos[..., ends[:, 1], :] - pos[..., ends[:, 0], :]


_NEIGHBOUR_CELLS = np.array(
    [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.float64
)


def minimum_image(vectors: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Displacements reduced to their shortest periodic image.

    Fractional coordinates are rounded, then the 27 neighbouring images of the result are
    searched for the shortest, which makes the reduction exact for triclinic cells within
    LAMMPS' tilt limits.

    Args:
        vectors: ``(..., 3)`` displacements (length unit).
        box: ``(3, 3)`` cell vectors as rows, or ``(..., 3, 3)`` broadcasting against
            ``vectors``' leading axes.

    Returns ``(..., 3)``.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    frac = np.einsum("...i,...ij->...j", vectors, np.linalg.inv(box))
    reduced = np.einsum("...i,...ij->...j", frac - np.round(frac), box)
    candidates = reduced[..., None, :] + np.einsum("si,...ij->...sj", _NEIGHBOUR_CELLS, box)
    best = np.argmin((candidates**2).sum(-1), axis=-1)
    return np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]


def wrap_into_cell(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``(..., n, 3)`` positions moved by whole cell vectors into the cell ``box (3, 3)``.

    Distances under periodic boundaries are unchanged; neighbour searches on wrapped positions
    are several times faster than on unwrapped ones.
    """
    box = np.asarray(box, dtype=np.float64)
    frac = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(box)
    return (frac - np.floor(frac)) @ box


def bond_lengths(
    positions: np.ndarray, bonds: np.ndarray, box: np.ndarray | None = None
) -> np.ndarray:
    """``(n_frames, n_bonds)`` bond lengths (length unit).

    Args:
        positions: ``(n_frames, n, 3)`` positions.
        bonds: ``(n_bonds, 2)`` particle indices.
        box: ``(n_frames, 3, 3)`` cells for the minimum-image convention (periodic systems whose
            positions may be wrapped), or ``None`` to take plain differences of unwrapped
            positions.
    """
    pos = np.asarray(positions, dtype=np.float64)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    vectors = pos[:, bonds[:, 1]] - pos[:, bonds[:, 0]]
    if box is not None:
        vectors = minimum_image(vectors, np.asarray(box, dtype=np.float64)[:, None])
    return np.linalg.norm(vectors, axis=-1)


def half_min_width(box: np.ndarray) -> float:
    """Half the smallest distance between opposite faces of the cells ``box (..., 3, 3)``.

    Pair distances below it are unique minimum-image distances, so it bounds an RDF's range.
    """
    box = np.asarray(box, dtype=np.float64).reshape(-1, 3, 3)
    volume = np.abs(np.linalg.det(box))
    widths = [volume / np.linalg.norm(np.cross(box[:, (k + 1) % 3], box[:, (k + 2) % 3]), axis=-1)
              for k in range(3)]
    return float(0.5 * np.min(widths))


@dataclass
class RDF:
    """Radial distribution functions between every pair of particle kinds.

    Attributes:
        r: ``(n_bins,)`` bin centres (length unit).
        edges: ``(n_bins + 1,)`` bin edges (length unit).
        g: ``(n_kinds, n_kinds, n_bins)`` g_ab(r), symmetric in ``a, b``; NaN where a kind has
            no partner (a kind with one particle has no self pairs).
        counts: ``(n_kinds,)`` particles of each kind.
        running_coordination: ``(n_kinds, n_kinds, n_bins)`` mean number of kind-b particles
            within ``edges[k + 1]`` of a kind-a particle (frame average; not symmetric).
    """

    r: np.ndarray
    edges: np.ndarray
    g: np.ndarray
    counts: np.ndarray
    running_coordination: np.ndarray

    def peak(self, a: int, b: int) -> tuple[float, float]:
        """Position (length unit) and height of the highest point of g_ab(r)."""
        curve = self.g[a, b]
        if not np.isfinite(curve).any():
            return float("nan"), float("nan")
        k = int(np.nanargmax(curve))
        return float(self.r[k]), float(curve[k])

    def first_minimum(self, a: int, b: int) -> float:
        """Position (length unit) of the first minimum of g_ab(r) beyond its highest point: the
        edge of the first coordination shell. The curve is smoothed by a 3-bin running mean
        first, so single-bin noise is neither peak nor minimum; NaN where g_ab is undefined or
        falls all the way to ``r_max``."""
        curve = self.g[a, b]
        if not np.isfinite(curve).any():
            return float("nan")
        smooth = np.convolve(np.nan_to_num(curve), np.ones(3) / 3.0, mode="same")
        k = int(np.argmax(smooth))
        rising = np.flatnonzero(np.diff(smooth[k:]) > 0)
        if rising.size == 0:
            return float("nan")
        return float(self.r[k + rising[0]])

    def coordination_number(self, a: int, b: int, r_cut: float) -> float:
        """Mean number of kind-b particles within ``r_cut`` (length unit) of a kind-a particle,
        interpolated linearly between bin edges; NaN when ``r_cut`` is NaN or beyond
        ``r_max``."""
        if not np.isfinite(r_cut) or r_cut > self.edges[-1]:
            return float("nan")
        running = np.concatenate([[0.0], self.running_coordination[a, b]])
        return float(np.interp(r_cut, self.edges, running))


def radial_distribution(
    positions: np.ndarray,
    box: np.ndarray,
    kinds: np.ndarray,
    r_max: float,
    n_bins: int = 100,
) -> RDF:
    """RDFs g_ab(r) of a periodic trajectory, averaged over frames.

    ``g_ab(r) = <n_ab(r)> V / ((N_a N_b - delta_ab N_a) 4 pi r^2 dr)``, where ``n_ab(r) dr``
    counts ordered pairs (i of kind a, j of kind b, i != j) at distance r; frames of different
    volume are weighted by their own volume. Uniform random points give g = 1.

    Args:
        positions: ``(n_frames, n, 3)`` positions, wrapped or not.
        box: ``(n_frames, 3, 3)`` cell vectors as rows (orthorhombic or triclinic).
        kinds: ``(n,)`` kind index ``0..n_kinds-1`` of each particle (bead species).
        r_max: largest distance (length unit); at most :func:`half_min_width` of the boxes so
            every distance is a minimum-image distance.
        n_bins: number of distance bins.

    Raises ``ValueError`` when ``r_max`` exceeds half the narrowest cell width.
    """
    pos = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    limit = half_min_width(box)
    if r_max > limit * (1 + 1e-12):
        raise ValueError(f"r_max {r_max} exceeds half the narrowest cell width {limit}")
    kinds = np.asarray(kinds, dtype=np.int64)
    n_kinds = int(kinds.max()) + 1
    edges = np.linspace(0.0, r_max, n_bins + 1)
    histogram = np.zeros(n_kinds * n_kinds * n_bins)
    pair_counts = np.zeros(n_kinds * n_kinds * n_bins)
    calculator = vesin.NeighborList(cutoff=r_max, full_list=False)
    for frame in range(pos.shape[0]):
        i, j, d = calculator.compute(wrap_into_cell(pos[frame], box[frame]), box[frame], True,
                                     "ijd")
        keep = d < r_max
        i, j, d = i[keep].astype(np.int64), j[keep].astype(np.int64), d[keep]
        bins = np.minimum((d * (n_bins / r_max)).astype(np.int64), n_bins - 1)
        slot = (kinds[i] * n_kinds + kinds[j]) * n_bins + bins
        volume = abs(np.linalg.det(box[frame]))
        frame_counts = np.bincount(slot, minlength=histogram.size)
        histogram += volume * frame_counts
        pair_counts += frame_counts
    histogram = histogram.reshape(n_kinds, n_kinds, n_bins)
    ordered = histogram + histogram.transpose(1, 0, 2)  # each half-list pair counts both ways
    pair_counts = pair_counts.reshape(n_kinds, n_kinds, n_bins)
    counts = np.bincount(kinds, minlength=n_kinds).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        running = np.cumsum(pair_counts + pair_counts.transpose(1, 0, 2), axis=-1) / (
            pos.shape[0] * counts[:, None, None])
    n_pairs = np.outer(counts, counts) - np.diag(counts)
    shell = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = ordered / (pos.shape[0] * n_pairs[..., None] * shell)
    g[n_pairs == 0] = np.nan
    return RDF(r=0.5 * (edges[1:] + edges[:-1]), edges=edges, g=g, counts=counts,
               running_coordination=running)
