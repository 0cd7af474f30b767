"""Radius graph under periodic boundaries against brute force over all images."""

import itertools

import numpy as np
import pytest
import torch

from eqcg.graphs.neighbors import (
    BOND_EDGE,
    RADIUS_EDGE,
    VerletList,
    cg_edges,
    minimum_image,
    radius_edges,
)


def brute_force_pairs(pos: np.ndarray, cell: np.ndarray | None, cutoff: float) -> dict:
    """{(i, j): shortest displacement} over every image within 5 cells, i != j."""
    images = np.array(list(itertools.product(range(-5, 6), repeat=3)))
    shifts = images @ cell if cell is not None else np.zeros((1, 3))
    i, j = np.array(list(itertools.permutations(range(len(pos)), 2))).T
    d = (pos[j] - pos[i])[:, None, :] + shifts[None]
    norms = np.linalg.norm(d, axis=-1)
    best = norms.argmin(axis=1)
    close = norms[np.arange(len(i)), best] < cutoff
    return {(a, b): d[k, best[k]] for k, (a, b) in enumerate(zip(i, j)) if close[k]}


@pytest.mark.parametrize("periodic", [True, False])
def test_radius_and_bond_edges_match_brute_force(periodic):
    rng = np.random.default_rng(0)
    cell = np.array([[12.0, 0, 0], [2.5, 11.0, 0], [-1.5, 2.0, 13.0]])
    frac = rng.uniform(size=(40, 3))
    pos = frac @ cell + rng.integers(-2, 3, size=(40, 3)) @ cell  # unwrapped: random images
    bonds = np.array([[0, 1], [1, 2], [5, 9], [20, 33]])
    bond_index = np.concatenate([bonds.T, bonds.T[::-1]], axis=1)
    cutoff = 4.0
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    edge_index, edge_vec, edge_type, _ = cg_edges(
        t(pos), t(cell)[None], torch.tensor([periodic]), torch.zeros(40, dtype=torch.long),
        torch.tensor([0, 40]), torch.tensor(bond_index), cutoff,
    )
    expected = brute_force_pairs(pos, cell if periodic else None, cutoff)
    got = {(int(i), int(j)): (v.numpy(), int(k))
           for (i, j), v, k in zip(edge_index.T, edge_vec, edge_type)}
    bond_pairs = {tuple(p) for p in bond_index.T.tolist()}
    assert set(got) == set(expected) | bond_pairs
    assert len(got) == edge_index.shape[1]  # one edge per ordered pair
    for pair, (vec, kind) in got.items():
        assert kind == (BOND_EDGE if pair in bond_pairs else RADIUS_EDGE)
        if pair in expected:
            np.testing.assert_allclose(vec, expected[pair], atol=1e-10)
        else:  # a bond longer than the cut-off: minimum image displacement
            i, j = pair
            d = pos[j] - pos[i]
            if periodic:
                f = d @ np.linalg.inv(cell)
                d = (f - np.round(f)) @ cell
            np.testing.assert_allclose(vec, d, atol=1e-10)


def test_minimum_image_leaves_open_systems_alone():
    vec = torch.tensor([[7.0, 0.0, 0.0]], dtype=torch.float64)
    cells = torch.eye(3, dtype=torch.float64)[None] * 10
    graph = torch.zeros(1, dtype=torch.long)
    out = minimum_image(vec, cells, torch.tensor([True]), graph)
    torch.testing.assert_close(out, torch.tensor([[-3.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(minimum_image(vec, cells, torch.tensor([False]), graph), vec)


def test_systems_in_a_batch_never_connect():
    pos = torch.zeros(4, 3, dtype=torch.float64)
    pos[1, 0] = pos[3, 0] = 1.0
    edge_index, _, _, _ = cg_edges(
        pos, torch.zeros(2, 3, 3, dtype=torch.float64), torch.tensor([False, False]),
        torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 4]),
        torch.zeros(2, 0, dtype=torch.long), 2.0,
    )
    assert sorted(map(tuple, edge_index.T.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]


def _mixed_batch(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray], list[bool]]:
    """Systems of different sizes: orthorhombic, triclinic, open, and one whose beads are all
    farther apart than the cut-off (no neighbours)."""
    cells = [np.diag([9.0, 10.0, 11.0]), np.array([[10.0, 0, 0], [3.0, 9.0, 0], [-2.0, 1.5, 10.0]]),
             np.diag([30.0, 30.0, 30.0]), np.diag([40.0, 40.0, 40.0])]
    periodic = [True, True, False, True]
    sizes = [23, 31, 12, 4]
    positions = [rng.uniform(size=(n, 3)) @ cell for n, cell in zip(sizes, cells)]
    positions[3] = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]]) + 15.0
    return positions, cells, periodic


def _batch_pairs(positions, cells, periodic, cutoff) -> dict:
    """Brute-force pairs of every system, indexed in the batch."""
    pairs, offset = {}, 0
    for pos, cell, pbc in zip(positions, cells, periodic):
        for (i, j), vec in brute_force_pairs(pos, cell if pbc else None, cutoff).items():
            pairs[(i + offset, j + offset)] = vec
        offset += len(pos)
    return pairs


def _edges_as_dict(pos, edge_index, shift) -> dict:
    vec = pos[edge_index[1]] - pos[edge_index[0]] + shift
    return {(int(i), int(j)): v.numpy() for (i, j), v in zip(edge_index.T, vec)}


def test_batched_and_verlet_lists_match_brute_force_over_mixed_systems():
    """Many systems of different sizes and cells in one batch, through a fresh search and a
    Verlet list over moves both below and beyond half the skin: every call equals brute force."""
    rng = np.random.default_rng(3)
    positions, cells, periodic = _mixed_batch(rng)
    cutoff, skin = 3.5, 0.6
    sizes = [len(p) for p in positions]
    ptr = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]))
    box = torch.tensor(np.stack(cells))
    pbc = torch.tensor(periodic)
    verlet = VerletList(cutoff, skin)
    cache: dict = {}

    def exclude_pairs(pairs) -> torch.Tensor:  # one tensor per content, as a rollout's bonds
        return cache.setdefault(tuple(pairs), torch.tensor(pairs, dtype=torch.long).T)

    for move in (0.0, 0.1, 0.2, 0.5, 0.05):  # the 0.5 move forces a rebuild
        positions = [p + move * rng.normal(size=p.shape) / np.sqrt(3) for p in positions]
        pos = torch.tensor(np.concatenate(positions))
        expected = _batch_pairs(positions, cells, periodic, cutoff)
        for edge_index, shift in (radius_edges(pos, box, pbc, ptr, cutoff),
                                  verlet(pos, box, pbc, ptr)):
            got = _edges_as_dict(pos, edge_index, shift)
            assert set(got) == set(expected)
            for pair, vec in got.items():
                np.testing.assert_allclose(vec, expected[pair], atol=1e-10)
        excluded = list(expected)[::3]  # pairs left out (as CG bonds are), same tensor each call
        without = verlet(pos, box, pbc, ptr, exclude=exclude_pairs(excluded))
        assert set(_edges_as_dict(pos, *without)) == set(expected) - set(excluded)
        offset = sum(sizes[:3])  # the spread-out system has no pair at all
        assert not any(i >= offset for i, _ in expected)
    assert 1 < verlet.builds < 5
