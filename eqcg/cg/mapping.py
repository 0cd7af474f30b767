"""Coarse-grained mapping: METIS clusters of bonded atoms become beads.

Each molecule (connected component of the bond graph) is partitioned by METIS (through
``pymetis``) into ``round(n_atoms / cg_level)`` connected clusters; molecules of at most
``whole_molecule_max_atoms`` atoms (ions, small solvents, the TFSI anion) stay whole. A bead sits
at the mass-weighted centre of its atoms' unwrapped positions; CG bonds are the fine bonds
that join two clusters. The mapping depends on topology only: compute it once per system.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pymetis
import scipy.sparse
import scipy.sparse.csgraph

from eqcg.config import DataConfig
from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.errors import DataError
from eqcg.runtime.atomic import atomic_path

_FRAMES_PER_READ = 256


@dataclass(frozen=True)
class CGSettings:
    """How to coarse-grain.

    Attributes:
        cg_level: target number of atoms per bead.
        whole_molecule_max_atoms: molecules with at most this many atoms are one bead.
        seed: METIS random seed (the mapping is deterministic for a given seed).
    """

    cg_level: int = 7
    whole_molecule_max_atoms: int = 15
    seed: int = 0

    @classmethod
    def from_config(cls, data: DataConfig) -> CGSettings:
        """The settings of a run's ``data`` section (``cg_level``, ``whole_molecule_max_atoms``,
        ``cg_seed``): every run, rollout and report maps atoms to beads through this."""
        return cls(data.cg_level, data.whole_molecule_max_atoms, data.cg_seed)

    def __post_init__(self) -> None:
        if self.cg_level < 1:
            raise DataError(f"cg_level must be >= 1, got {self.cg_level}")


@dataclass
class CGMapping:
    """Atom-to-bead assignment of one system.

    Attributes:
        atom_to_bead: ``(n_atoms,)`` bead index of each atom.
        bead_masses: ``(n_beads,)`` total mass of each bead.
        bead_molecule: ``(n_beads,)`` molecule index of each bead.
        bead_species: ``(n_beads,)`` index into ``species_names`` (molecule kind of the bead).
        species_names: one name per molecule kind, from its atom types (e.g. ``"Li"``).
        cg_bonds: ``(n_cg_bonds, 2)`` unique bead pairs joined by a fine bond, ``i < j``.
        settings: the settings that produced this mapping.
    """

    atom_to_bead: np.ndarray
    bead_masses: np.ndarray
    bead_molecule: np.ndarray
    bead_species: np.ndarray
    species_names: list[str]
    cg_bonds: np.ndarray
    settings: CGSettings

    @property
    def n_beads(self) -> int:
        return int(self.bead_masses.shape[0])

    def atom_weights(self, masses: np.ndarray) -> np.ndarray:
        """``(n_atoms,)`` mass of each atom divided by the mass of its bead."""
        return masses / self.bead_masses[self.atom_to_bead]

    def bead_positions(self, positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
        """Mass-weighted bead centres.

        Args:
            positions: ``(..., n_atoms, 3)`` unwrapped atom positions.
            masses: ``(n_atoms,)`` atom masses.

        Returns ``(..., n_beads, 3)`` bead positions.
        """
        n_atoms = self.atom_to_bead.shape[0]
        weights = self.atom_weights(masses)
        matrix = scipy.sparse.csr_matrix(
            (weights, (self.atom_to_bead, np.arange(n_atoms))), shape=(self.n_beads, n_atoms)
        )
        pos = np.asarray(positions, dtype=np.float64)
        flat = np.moveaxis(pos, -2, 0).reshape(n_atoms, -1)
        beads = matrix @ flat
        return np.moveaxis(beads.reshape(self.n_beads, *pos.shape[:-2], 3), 0, -2)


def coarse_grain_trajectory(system: SystemTrajectory, mapping: CGMapping) -> np.ndarray:
    """``(n_frames, n_beads, 3)`` bead centres of ``system``, reading frames in chunks.

    Raises :class:`DataError` naming the system, frame and atom of a non-finite coordinate.
    """
    beads = np.empty((system.n_frames, mapping.n_beads, 3))
    for start in range(0, system.n_frames, _FRAMES_PER_READ):
        stop = min(start + _FRAMES_PER_READ, system.n_frames)
        chunk = np.asarray(system.positions[start:stop], dtype=np.float64)
        bad = ~np.isfinite(chunk).all(axis=-1)
        if bad.any():
            frame, atom = np.argwhere(bad)[0]
            raise DataError(
                f"system {system.name!r}, frame {start + frame}, atom {atom}: "
                "non-finite coordinates"
            )
        beads[start:stop] = mapping.bead_positions(chunk, system.topology.masses)
    return beads


def _molecule_name(type_names: list[str], types: np.ndarray) -> str:
    """Name of a molecule kind: its distinct atom type names joined by ``+`` (e.g. ``Li``)."""
    return "+".join(type_names[i] for i in np.unique(types))


def _partition(adjacency: scipy.sparse.csr_matrix, n_parts: int, seed: int) -> np.ndarray:
    """METIS partition of one connected molecule into ``n_parts`` connected clusters."""
    n = adjacency.shape[0]
    if n_parts <= 1:
        return np.zeros(n, dtype=np.int64)
    options = pymetis.Options(seed=seed, contig=1)
    adjacency_csr = pymetis.CSRAdjacency(adjacency.indptr.astype(np.int64),
                                         adjacency.indices.astype(np.int64))
    _, parts = pymetis.part_graph(n_parts, adjacency_csr, options=options)
    return _make_connected(adjacency, np.asarray(parts, dtype=np.int64))


def _make_connected(adjacency: scipy.sparse.csr_matrix, parts: np.ndarray) -> np.ndarray:
    """Relabel clusters so every cluster is one connected piece with consecutive labels.

    METIS' contiguity option is a request, not a guarantee: a cluster that falls apart keeps its
    largest piece, and each smaller piece joins the cluster it shares most bonds with.
    """
    rows, cols = adjacency.nonzero()
    while True:
        same = parts[rows] == parts[cols]
        inner = scipy.sparse.coo_matrix(
            (np.ones(same.sum()), (rows[same], cols[same])), shape=adjacency.shape
        )
        _, pieces = scipy.sparse.csgraph.connected_components(inner, directed=False)
        piece_part = np.zeros(pieces.max() + 1, dtype=np.int64)
        piece_part[pieces] = parts
        piece_size = np.bincount(pieces)
        largest = np.zeros(parts.max() + 1, dtype=np.int64) - 1
        order = np.argsort(piece_size, kind="stable")
        largest[piece_part[order]] = order
        stray = np.flatnonzero(largest[piece_part] != np.arange(piece_part.size))
        if stray.size == 0:
            _, parts = np.unique(parts, return_inverse=True)
            return parts.astype(np.int64)
        piece = stray[0]
        cross = (pieces[rows] == piece) & (pieces[cols] != piece)
        neighbour_parts = parts[cols[cross]]
        parts[pieces == piece] = np.bincount(neighbour_parts).argmax()


def compute_mapping(topology: Topology, settings: CGSettings = CGSettings()) -> CGMapping:
    """Partition every molecule of ``topology`` into beads (see module docstring)."""
    n = topology.n_atoms
    bonds = topology.bonds
    rows, cols = np.r_[bonds[:, 0], bonds[:, 1]], np.r_[bonds[:, 1], bonds[:, 0]]
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(2 * len(bonds)), (rows, cols)), shape=(n, n)
    ).tocsr()
    adjacency.data[:] = 1.0
    molecule = topology.molecules()
    atom_to_bead = np.empty(n, dtype=np.int64)
    bead_molecule: list[int] = []
    molecule_names: list[str] = []
    offset = 0
    for mol in range(molecule.max() + 1):
        atoms = np.flatnonzero(molecule == mol)
        n_parts = 1
        if atoms.size > settings.whole_molecule_max_atoms:
            n_parts = max(1, round(atoms.size / settings.cg_level))
        sub = adjacency[atoms][:, atoms].tocsr()
        parts = _partition(sub, n_parts, settings.seed)
        atom_to_bead[atoms] = offset + parts
        n_mol_beads = int(parts.max()) + 1
        bead_molecule += [mol] * n_mol_beads
        molecule_names.append(_molecule_name(topology.type_names, topology.types[atoms]))
        offset += n_mol_beads
    species_names, molecule_species = np.unique(molecule_names, return_inverse=True)
    bead_molecule_arr = np.asarray(bead_molecule, dtype=np.int64)
    bead_masses = np.bincount(atom_to_bead, weights=topology.masses, minlength=offset)
    pairs = np.sort(atom_to_bead[bonds], axis=1)
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0).reshape(-1, 2)
    return CGMapping(
        atom_to_bead=atom_to_bead,
        bead_masses=bead_masses,
        bead_molecule=bead_molecule_arr,
        bead_species=molecule_species[bead_molecule_arr].astype(np.int64),
        species_names=[str(s) for s in species_names],
        cg_bonds=pairs.astype(np.int64),
        settings=settings,
    )


def _topology_key(topology: Topology, settings: CGSettings) -> str:
    digest = hashlib.sha256()
    for arr in (topology.types, topology.bonds, topology.masses):
        digest.update(np.ascontiguousarray(arr).tobytes())
    digest.update(json.dumps(asdict(settings), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cached_mapping(
    topology: Topology, settings: CGSettings, cache_dir: str | os.PathLike | None
) -> CGMapping:
    """:func:`compute_mapping`, cached in ``cache_dir`` by a hash of topology and settings."""
    if cache_dir is None:
        return compute_mapping(topology, settings)
    path = Path(cache_dir) / f"cg-{_topology_key(topology, settings)}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return CGMapping(
                    atom_to_bead=f["atom_to_bead"],
                    bead_masses=f["bead_masses"],
                    bead_molecule=f["bead_molecule"],
                    bead_species=f["bead_species"],
                    species_names=[str(s) for s in f["species_names"]],
                    cg_bonds=f["cg_bonds"],
                    settings=settings,
                )
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)
    mapping = compute_mapping(topology, settings)
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            atom_to_bead=mapping.atom_to_bead,
            bead_masses=mapping.bead_masses,
            bead_molecule=mapping.bead_molecule,
            bead_species=mapping.bead_species,
            species_names=np.array(mapping.species_names),
            cg_bonds=mapping.cg_bonds,
        )
    return mapping
