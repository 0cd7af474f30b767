"""CG mapping: partition, connectivity, sizes, bead centres, determinism, translation."""

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph

from eqcg.cg import CGSettings, cached_mapping, compute_mapping
from eqcg.data.trajectory import Topology
from eqcg.testing import random_system


def branched_topology() -> Topology:
    """A 60-atom chain with 3 side branches, a 10-atom ring and 3 ions."""
    bonds = [[i, i + 1] for i in range(59)]
    bonds += [[10, 60], [60, 61], [30, 62], [62, 63], [50, 64]]
    bonds += [[65 + i, 65 + (i + 1) % 10] for i in range(10)]
    n = 78
    rng = np.random.default_rng(1)
    return Topology(
        masses=rng.uniform(1, 16, n), types=rng.integers(0, 3, n), type_names=["C", "O", "H"],
        bonds=np.array(bonds), bond_types=np.zeros(len(bonds)),
    )


def clusters_connected(top: Topology, atom_to_bead: np.ndarray) -> bool:
    same = atom_to_bead[top.bonds[:, 0]] == atom_to_bead[top.bonds[:, 1]]
    for bead in np.unique(atom_to_bead):
        atoms = np.flatnonzero(atom_to_bead == bead)
        inner = top.bonds[same & np.isin(top.bonds[:, 0], atoms)]
        local = np.searchsorted(atoms, inner)
        graph = scipy.sparse.coo_matrix(
            (np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(atoms), len(atoms))
        )
        if scipy.sparse.csgraph.connected_components(graph, directed=False)[0] != 1:
            return False
    return True


@pytest.mark.parametrize("cg_level", [3, 5, 7])
def test_every_atom_in_one_connected_bead_of_about_cg_level_atoms(cg_level):
    top = branched_topology()
    mapping = compute_mapping(top, CGSettings(cg_level=cg_level, whole_molecule_max_atoms=1))
    assert mapping.atom_to_bead.shape == (top.n_atoms,)
    assert set(np.unique(mapping.atom_to_bead)) == set(range(mapping.n_beads))
    assert clusters_connected(top, mapping.atom_to_bead)
    molecule = top.molecules()
    big = np.bincount(molecule) > 1
    chain_beads = np.unique(mapping.atom_to_bead[big[molecule]])
    sizes = np.bincount(mapping.atom_to_bead)[chain_beads]
    expected = round(65 / cg_level) + round(10 / cg_level)
    assert len(chain_beads) == expected
    assert abs(sizes.mean() - 75 / expected) < 1e-9
    # beads never span two molecules
    assert all(len(np.unique(molecule[mapping.atom_to_bead == b])) == 1
               for b in range(mapping.n_beads))


def test_ions_and_small_molecules_stay_whole():
    top = branched_topology()
    mapping = compute_mapping(top, CGSettings(cg_level=3, whole_molecule_max_atoms=10))
    ring = mapping.atom_to_bead[65:75]
    assert len(np.unique(ring)) == 1
    ions = mapping.atom_to_bead[75:]
    assert len(np.unique(ions)) == 3
    assert not np.isin(ions, mapping.atom_to_bead[:75]).any()


def test_bead_centres_and_cg_bonds_match_independent_numpy():
    system = random_system("s", n_chains=3, chain_length=14, n_frames=4)
    top = system.topology
    mapping = compute_mapping(top, CGSettings(cg_level=4, whole_molecule_max_atoms=1))
    beads = mapping.bead_positions(system.positions, top.masses)
    for bead in range(mapping.n_beads):
        atoms = mapping.atom_to_bead == bead
        m = top.masses[atoms]
        expected = (system.positions[:, atoms] * m[:, None]).sum(1) / m.sum()
        np.testing.assert_allclose(beads[:, bead], expected, rtol=0, atol=1e-12)
    expected_bonds = {
        tuple(sorted((mapping.atom_to_bead[i], mapping.atom_to_bead[j])))
        for i, j in top.bonds if mapping.atom_to_bead[i] != mapping.atom_to_bead[j]
    }
    assert set(map(tuple, mapping.cg_bonds.tolist())) == expected_bonds


def test_mapping_is_deterministic_and_ignores_coordinates(tmp_path):
    top = branched_topology()
    settings = CGSettings(cg_level=4, whole_molecule_max_atoms=1, seed=3)
    a = compute_mapping(top, settings)
    b = cached_mapping(top, settings, tmp_path)
    c = cached_mapping(top, settings, tmp_path)
    assert len(list(tmp_path.glob("cg-*.npz"))) == 1
    for other in (b, c):
        np.testing.assert_array_equal(a.atom_to_bead, other.atom_to_bead)
        np.testing.assert_array_equal(a.cg_bonds, other.cg_bonds)
    system = random_system("s", n_frames=2)
    shifted = system.positions + np.array([3.0, -7.0, 11.0])
    m = compute_mapping(system.topology, settings)
    np.testing.assert_allclose(
        m.bead_positions(shifted, system.topology.masses),
        m.bead_positions(system.positions, system.topology.masses) + [3.0, -7.0, 11.0],
        atol=1e-12,
    )


def test_corrupt_cache_is_recomputed(tmp_path):
    top = branched_topology()
    settings = CGSettings(cg_level=4)
    cached_mapping(top, settings, tmp_path)
    (cache,) = tmp_path.glob("cg-*.npz")
    cache.write_bytes(b"garbage")
    again = cached_mapping(top, settings, tmp_path)
    np.testing.assert_array_equal(again.atom_to_bead, compute_mapping(top, settings).atom_to_bead)
