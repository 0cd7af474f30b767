"""From trajectories to CG graphs: type vocabulary, per-system CG data, batched graphs.

A :class:`CGSystem` holds everything about one system the models need, on the CG level and
the fine level, with bead trajectories computed once. :meth:`CGSystem.graph` cuts a
:class:`CGGraph` (a torch-geometric ``Data``) out of it for any set of frames; PyG's
``Batch.from_data_list`` batches many systems into one graph.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from eqcg import keys
from eqcg.cg.mapping import CGMapping, CGSettings, cached_mapping, coarse_grain_trajectory
from eqcg.data.store import TrajectoryDataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError
from eqcg.metrics.structure import radius_of_gyration


class CGGraph(Data):
    """A CG graph with a fine (atom) level inside it; fields are named in :mod:`eqcg.keys`.

    Nodes are beads. Atom-level index fields are offset by the number of atoms when batched,
    atom-to-bead and CG-bond indices by the number of beads.
    """

    def __inc__(self, key: str, value: object, *args: object, **kwargs: object) -> object:
        if key == keys.FINE_EDGE_INDEX:
            return self[keys.ATOM_TYPES].shape[0]
        if key in (keys.ATOM_TO_BEAD, keys.CG_BOND_INDEX):
            return self.num_nodes
        if key == keys.BEAD_MOLECULE:
            return int(self[keys.BEAD_MOLECULE].max()) + 1
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: object, *args: object, **kwargs: object) -> object:
        if key in (keys.FINE_EDGE_INDEX, keys.CG_BOND_INDEX):
            return 1
        return super().__cat_dim__(key, value, *args, **kwargs)


@dataclass(frozen=True)
class TypeVocabulary:
    """Atom-type and bond-type names known to a model, in embedding order.

    Bond types are named by the sorted pair of their atoms' type names (``"CT-OS"``), so they
    do not depend on how a force field numbered them.
    """

    atom_types: tuple[str, ...]
    bond_types: tuple[str, ...]

    @classmethod
    def from_systems(cls, systems: list[SystemTrajectory]) -> TypeVocabulary:
        atoms: set[str] = set()
        bonds: set[str] = set()
        for system in systems:
            top = system.topology
            atoms.update(top.type_names[t] for t in np.unique(top.types))
            bonds.update(_bond_type_names(system))
        return cls(tuple(sorted(map(str, atoms))), tuple(sorted(map(str, bonds))))

    def encode_atoms(self, system: SystemTrajectory) -> np.ndarray:
        """``(n_atoms,)`` vocabulary index of each atom; unknown types raise :class:`DataError`."""
        lookup = {name: i for i, name in enumerate(self.atom_types)}
        per_type = np.array([lookup.get(name, -1) for name in system.topology.type_names])
        encoded = per_type[system.topology.types]
        unknown = np.flatnonzero(encoded < 0)
        if unknown.size:
            name = system.topology.type_names[system.topology.types[unknown[0]]]
            raise DataError(
                f"system {system.name!r}, atom {unknown[0]}: atom type {name!r} was not in the "
                f"training data (known: {', '.join(self.atom_types)})"
            )
        return encoded.astype(np.int64)

    def encode_bonds(self, system: SystemTrajectory) -> np.ndarray:
        """``(n_bonds,)`` vocabulary index of each bond type; unknown raise :class:`DataError`."""
        names = _bond_type_names(system)
        lookup = {name: i for i, name in enumerate(self.bond_types)}
        unknown = np.flatnonzero(~np.isin(names, self.bond_types))
        if unknown.size:
            b = unknown[0]
            raise DataError(
                f"system {system.name!r}, bond {b} (atoms {system.topology.bonds[b].tolist()}): "
                f"bond type {names[b]} was not in the training data"
            )
        uniq, inverse = np.unique(names, return_inverse=True)
        return np.array([lookup[n] for n in uniq], dtype=np.int64)[inverse]


def _bond_type_names(system: SystemTrajectory) -> np.ndarray:
    top = system.topology
    if top.n_bonds == 0:
        return np.array([], dtype=str)
    names = np.asarray(top.type_names)[top.types[top.bonds]]
    names.sort(axis=1)
    return np.char.add(np.char.add(names[:, 0], "-"), names[:, 1])


@dataclass
class CGSystem:
    """One system on the CG level, with the fine-level graph the embedding GNN reads.

    Attributes:
        name: system name.
        mapping: atom-to-bead mapping.
        bead_positions: ``(n_frames, n_beads, 3)`` unwrapped bead centres (Å or sigma).
        box: ``(n_frames, 3, 3)`` cell vectors as rows.
        time: ``(n_frames,)`` ps or tau.
        pbc: periodic or not.
        units: unit system name.
        atom_types: ``(n_atoms,)`` vocabulary indices.
        atom_masses: ``(n_atoms,)``.
        fine_edge_index: ``(2, 2 n_bonds)`` fine bonds, both directions.
        fine_edge_types: ``(2 n_bonds,)`` bond-type vocabulary indices.
        temperature: thermostat temperature (K or epsilon/k_B), ``nan`` when unknown.
    """

    name: str
    mapping: CGMapping
    bead_positions: np.ndarray
    box: np.ndarray
    time: np.ndarray
    pbc: bool
    units: str
    atom_types: np.ndarray
    atom_masses: np.ndarray
    fine_edge_index: np.ndarray
    fine_edge_types: np.ndarray
    temperature: float = math.nan

    @property
    def n_frames(self) -> int:
        return int(self.bead_positions.shape[0])

    @property
    def n_beads(self) -> int:
        return self.mapping.n_beads

    @classmethod
    def from_trajectory(
        cls,
        system: SystemTrajectory,
        settings: CGSettings,
        vocabulary: TypeVocabulary,
        cache_dir: str | os.PathLike | None = None,
    ) -> CGSystem:
        """Coarse-grain ``system`` (mapping cached in ``cache_dir``), reading frames in chunks."""
        top = system.topology
        mapping = cached_mapping(top, settings, cache_dir)
        bond_types = vocabulary.encode_bonds(system)
        return cls(
            name=system.name,
            mapping=mapping,
            bead_positions=coarse_grain_trajectory(system, mapping),
            box=np.asarray(system.box, dtype=np.float64),
            time=np.asarray(system.time, dtype=np.float64),
            pbc=system.pbc,
            units=system.units,
            atom_types=vocabulary.encode_atoms(system),
            atom_masses=top.masses,
            fine_edge_index=np.concatenate([top.bonds.T, top.bonds.T[::-1]], axis=1),
            fine_edge_types=np.concatenate([bond_types, bond_types]),
            temperature=math.nan if system.temperature is None else system.temperature,
        )

    def graph(
        self,
        history_frames: np.ndarray,
        target_frame: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> CGGraph:
        """The CG graph for ``history_frames`` (``(k,)`` frame indices, oldest first).

        With ``target_frame`` the graph also carries ``target_pos`` and ``target_rg``. The box
        is the one of the last history frame.
        """
        cg_bonds = self.mapping.cg_bonds
        fields = {
            keys.ATOM_TYPES: torch.as_tensor(self.atom_types, dtype=torch.long),
            keys.ATOM_MASSES: torch.as_tensor(self.atom_masses, dtype=dtype),
            keys.ATOM_TO_BEAD: torch.as_tensor(self.mapping.atom_to_bead, dtype=torch.long),
            keys.FINE_EDGE_INDEX: torch.as_tensor(self.fine_edge_index, dtype=torch.long),
            keys.FINE_EDGE_TYPES: torch.as_tensor(self.fine_edge_types, dtype=torch.long),
            keys.POS_HISTORY: torch.as_tensor(
                self.bead_positions[history_frames].transpose(1, 0, 2), dtype=dtype
            ),
            keys.BEAD_MASSES: torch.as_tensor(self.mapping.bead_masses, dtype=dtype),
            keys.BEAD_SPECIES: torch.as_tensor(self.mapping.bead_species, dtype=torch.long),
            keys.BEAD_MOLECULE: torch.as_tensor(self.mapping.bead_molecule, dtype=torch.long),
            keys.CG_BOND_INDEX: torch.as_tensor(
                np.concatenate([cg_bonds.T, cg_bonds.T[::-1]], axis=1), dtype=torch.long
            ),
            keys.BOX: torch.as_tensor(self.box[history_frames[-1]], dtype=dtype)[None],
            keys.PBC: torch.tensor([self.pbc]),
            keys.TEMPERATURE: torch.tensor([self.temperature], dtype=dtype),
        }
        if target_frame is not None:
            target = self.bead_positions[target_frame]
            fields[keys.TARGET_POS] = torch.as_tensor(target, dtype=dtype)
            fields[keys.TARGET_RG] = torch.tensor(
                [float(radius_of_gyration(target, self.mapping.bead_masses))], dtype=dtype
            )
        return CGGraph(num_nodes=self.n_beads, **fields)


def prepare_systems(
    dataset: TrajectoryDataset,
    settings: CGSettings,
    vocabulary: TypeVocabulary,
    names: list[str] | None = None,
    cache_dir: str | os.PathLike | None = "auto",
) -> list[CGSystem]:
    """Coarse-grain the systems ``names`` (all by default) of ``dataset``.

    ``cache_dir="auto"`` caches mappings in ``cg_cache/`` beside the dataset when that directory
    is writable; ``None`` disables the cache.
    """
    if cache_dir == "auto":
        parent = Path(dataset.path).parent
        cache_dir = parent / "cg_cache" if os.access(parent, os.W_OK) else None
    chosen = dataset.systems if names is None else [dataset[name] for name in names]
    return [CGSystem.from_trajectory(s, settings, vocabulary, cache_dir) for s in chosen]


def require_temperatures(systems: list[CGSystem], where: str) -> None:
    """:class:`DataError` naming the systems of ``systems`` without a thermostat temperature
    (a model with ``model.temperature_input`` needs one for each) and how to give it."""
    missing = [system.name for system in systems if not math.isfinite(system.temperature)]
    if missing:
        raise DataError(
            f"{where}: the model reads each system's temperature (model.temperature_input), but "
            f"{len(missing)} system(s) have none: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; give it with --temperature (eqcg ingest, "
            "eqcg simulate) or as the attribute 'temperature' of the dataset's systems"
        )
