"""Write rollouts: an eqcg dataset of beads (for ``eqcg evaluate``) plus PDB + DCD per system.

``OUT/rollout.h5`` is an ordinary eqcg dataset whose "atoms" are beads (masses = bead masses,
types = molecule kinds, bonds = CG bonds), with the CG settings and the reference frames it
started from in each system's attributes. ``OUT/<system>.pdb`` (CG topology with CONECT bonds)
and ``OUT/<system>.dcd`` open in VMD, OVITO and mdtraj; lengths there are Å (LJ lengths are
written as if they were Å).

A rollout streams its frames into ``rollout.h5`` as it goes (:func:`create_rollout_file`,
:func:`append_frames`). Each chunk is written to a copy that replaces the file only once it is
complete, so the file on disk (and any reader) always holds whole frames, however the rollout
ends. Beside the systems the file holds the state a resumed rollout continues from
(``/rollout_state``, ignored by dataset readers): the last history of every bead, the noise
generator's state after that step, the rollout's settings and its status.
"""

from __future__ import annotations

import json
import os
import time as _time
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import mdtraj
import numpy as np

from eqcg.atomic import atomic_hdf5, atomic_path
from eqcg.boundary import doing
from eqcg.cg.mapping import CGSettings
from eqcg.data.store import FORMAT_NAME, FORMAT_VERSION, ROLLOUT_FILE, write_system_group
from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.errors import DataError
from eqcg.graphs.system import CGSystem

STATE_GROUP = "rollout_state"
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"


@dataclass(frozen=True)
class RolloutAttrs:
    """The attributes every system of ``rollout.h5`` carries: what evaluation reads back.

    Attributes:
        reference_system: the dataset system the rollout started from.
        cg_level, whole_molecule_max_atoms, cg_seed: the CG settings of its beads.
        start_frame: the reference frame at the rollout's frame 0.
        dilation: reference frames per learned step.
        wall_seconds: wall-clock seconds spent stepping (all systems of the rollout together).
        model: the variant that made it.
        val_nll: the model's validation NLL when it was trained, if recorded.
    """

    reference_system: str
    cg_level: int
    whole_molecule_max_atoms: int
    cg_seed: int
    start_frame: int
    dilation: int
    wall_seconds: float
    model: str
    val_nll: float | None = None

    @property
    def cg_settings(self) -> CGSettings:
        """The CG settings that map the reference system's atoms to these beads."""
        return CGSettings(self.cg_level, self.whole_molecule_max_atoms, self.cg_seed)

    def to_attrs(self) -> dict[str, Any]:
        """The attributes as stored (a system's ``attrs``)."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str) -> RolloutAttrs:
        """Read them from a system's ``attrs`` (a :class:`DataError` naming any missing)."""
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in attrs]
        if missing:
            raise DataError(f"{where}: attributes {missing} are missing")
        val_nll = attrs.get("val_nll")
        return cls(str(attrs["reference_system"]), int(attrs["cg_level"]),
                   int(attrs["whole_molecule_max_atoms"]), int(attrs["cg_seed"]),
                   int(attrs["start_frame"]), int(attrs["dilation"]),
                   float(attrs["wall_seconds"]), str(attrs["model"]),
                   None if val_nll is None else float(val_nll))


def bead_trajectory(
    system: CGSystem,
    positions: np.ndarray,
    time: np.ndarray,
    box: np.ndarray,
    attrs: dict,
) -> SystemTrajectory:
    """A rollout of ``system`` as a bead-level trajectory.

    Args:
        positions: ``(n_frames, n_beads, 3)`` unwrapped bead positions.
        time: ``(n_frames,)`` simulated time (ps or tau).
        box: ``(3, 3)`` cell vectors as rows (constant during a rollout).
        attrs: metadata to store with the system: :meth:`RolloutAttrs.to_attrs` and any more.
    """
    mapping = system.mapping
    return SystemTrajectory(
        name=system.name,
        topology=Topology(
            masses=mapping.bead_masses,
            types=mapping.bead_species,
            type_names=mapping.species_names,
            bonds=mapping.cg_bonds,
            bond_types=np.zeros(len(mapping.cg_bonds), dtype=np.int64),
        ),
        positions=positions,
        box=np.broadcast_to(box, (len(time), 3, 3)).copy(),
        time=time,
        pbc=system.pbc,
        units=system.units,
        source="eqcg rollout",
        attrs=attrs,
    )


def mdtraj_topology(trajectory: SystemTrajectory) -> mdtraj.Topology:
    """An mdtraj topology of beads: one chain per molecule, one residue per bead, CG bonds."""
    top = trajectory.topology
    molecule = top.molecules()
    topology = mdtraj.Topology()
    chains = [topology.add_chain() for _ in range(molecule.max() + 1)]
    atoms = []
    for bead in range(top.n_atoms):
        residue = topology.add_residue("CG", chains[molecule[bead]], resSeq=bead + 1)
        name = f"B{top.types[bead]}"
        atoms.append(topology.add_atom(name, mdtraj.element.virtual_site, residue))
    for i, j in top.bonds:
        topology.add_bond(atoms[i], atoms[j])
    return topology


def write_viewer_files(out: str | os.PathLike, trajectories: list[SystemTrajectory]) -> None:
    """Write a PDB (topology, first frame) and a DCD (all frames) per system into ``out``."""
    out = Path(out)
    for trajectory in trajectories:
        pos_nm = np.asarray(trajectory.positions, dtype=np.float32) / 10.0
        traj = mdtraj.Trajectory(pos_nm, mdtraj_topology(trajectory), time=trajectory.time)
        if trajectory.pbc:
            traj.unitcell_vectors = np.asarray(trajectory.box, dtype=np.float32) / 10.0
        traj[0].save_pdb(str(out / f"{trajectory.name}.pdb"))
        with atomic_path(out / f"{trajectory.name}.dcd") as tmp:
            traj.save_dcd(str(tmp))


@dataclass
class RolloutState:
    """Where a streamed rollout stands: what :func:`append_frames` records with every chunk.

    Attributes:
        step: the last learned step taken (the frames on disk end at or before it).
        history: ``(n_beads, k, 3)`` position history after ``step`` of all systems' beads
            (batch order), float64.
        rng_state: state of the noise generator after ``step`` (``torch.Generator.get_state``).
        wall_seconds: wall-clock seconds spent stepping, over all sessions.
        status: ``running``, ``complete`` or ``failed``.
        message: why it failed (empty otherwise).
    """

    step: int
    history: np.ndarray
    rng_state: np.ndarray
    wall_seconds: float
    status: str = RUNNING
    message: str = ""


@dataclass
class RolloutHeader:
    """The fixed part of a streamed rollout: its settings and its systems' layout.

    Attributes:
        request: the settings it was started with (JSON-able), compared on resume.
        names: system names in batch order.
        ptr: ``(n_systems + 1,)`` bead offsets of the systems in the batch.
        time_per_step: ``(n_systems,)`` simulated time of one learned step per system.
    """

    request: dict[str, Any]
    names: list[str]
    ptr: np.ndarray
    time_per_step: np.ndarray


def _write_state(f: h5py.File, state: RolloutState) -> None:
    group = f.require_group(STATE_GROUP)
    for name, data in (("history", np.asarray(state.history, dtype=np.float64)),
                       ("rng_state", np.asarray(state.rng_state, dtype=np.uint8))):
        if name in group:
            del group[name]
        group.create_dataset(name, data=data)
    group.attrs.update(step=state.step, wall_seconds=state.wall_seconds, status=state.status,
                       message=state.message)
    for name in f["systems"]:
        system = f["systems"][name]
        attrs = json.loads(system.attrs["attrs_json"])
        attrs["wall_seconds"] = state.wall_seconds
        system.attrs["attrs_json"] = json.dumps(attrs)


def _replace_atomically(target: Path, write: Any, start_from_target: bool) -> None:
    """Run ``write(h5py.File)`` on a temporary copy (of ``target``, or empty) and rename it
    over ``target`` once it is complete and on disk (:func:`~eqcg.atomic.atomic_hdf5`)."""
    with doing("writing the rollout", target), atomic_hdf5(
            target, copy_of=target if start_from_target else None) as out:
        write(out.file)


def create_rollout_file(
    path: str | os.PathLike, trajectories: list[SystemTrajectory], header: RolloutHeader,
    state: RolloutState,
) -> None:
    """Write a streamed rollout holding each trajectory's first frame(s), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f: h5py.File) -> None:
        f.attrs.update(format=FORMAT_NAME, format_version=FORMAT_VERSION,
                       created=_time.strftime("%Y-%m-%dT%H:%M:%S%z"), source="eqcg rollout",
                       units=trajectories[0].units)
        systems = f.create_group("systems")
        for trajectory in trajectories:
            trajectory.validate()
            write_system_group(systems.create_group(trajectory.name), trajectory, extendable=True)
        group = f.create_group(STATE_GROUP)
        group.attrs["request_json"] = json.dumps(header.request)
        group.create_dataset("names", data=np.array(header.names, dtype=h5py.string_dtype()))
        group.create_dataset("ptr", data=np.asarray(header.ptr, dtype=np.int64))
        group.create_dataset("time_per_step", data=np.asarray(header.time_per_step, np.float64))
        _write_state(f, state)

    _replace_atomically(path, write, start_from_target=False)


def append_frames(
    path: str | os.PathLike, positions: np.ndarray, steps: np.ndarray, state: RolloutState
) -> None:
    """Append saved frames to a streamed rollout and record ``state``, as one atomic change.

    Args:
        positions: ``(n_new, n_beads, 3)`` bead positions of all systems (batch order).
        steps: ``(n_new,)`` learned step of each frame.
    """
    path = Path(path)

    def write(f: h5py.File) -> None:
        group = f[STATE_GROUP]
        ptr = group["ptr"][()]
        for i, name in enumerate(group["names"].asstr()[()]):
            system = f["systems"][name]
            start = system["positions"].shape[0]
            time = system["time"][0] + np.asarray(steps) * group["time_per_step"][i]
            for key, data in (("positions", positions[:, ptr[i]:ptr[i + 1]]), ("time", time),
                              ("box", np.broadcast_to(system["box"][0], (len(steps), 3, 3)))):
                system[key].resize(start + len(steps), axis=0)
                system[key][start:] = data
        _write_state(f, state)

    _replace_atomically(path, write, start_from_target=True)


def read_rollout_state(path: str | os.PathLike) -> tuple[RolloutHeader, RolloutState]:
    """The header and state of the streamed rollout at ``path`` (a :class:`DataError` when
    it is missing or was not written by a streaming rollout)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            group = f[STATE_GROUP]
            header = RolloutHeader(
                request=json.loads(group.attrs["request_json"]),
                names=list(group["names"].asstr()[()]),
                ptr=group["ptr"][()],
                time_per_step=group["time_per_step"][()],
            )
            state = RolloutState(
                step=int(group.attrs["step"]), history=group["history"][()],
                rng_state=group["rng_state"][()],
                wall_seconds=float(group.attrs["wall_seconds"]),
                status=str(group.attrs["status"]), message=str(group.attrs["message"]),
            )
    except FileNotFoundError:
        raise DataError(f"{path}: no rollout to resume here") from None
    except (OSError, KeyError) as exc:
        raise DataError(f"{path}: not a resumable rollout ({exc})") from None
    return header, state


def rollout_status(out: str | os.PathLike) -> str | None:
    """``running``, ``complete`` or ``failed`` for the rollout in directory ``out``; ``None``
    when there is none (a ``rollout.h5`` written before streaming counts as complete)."""
    path = Path(out) / ROLLOUT_FILE
    if not path.is_file():
        return None
    try:
        return read_rollout_state(path)[1].status
    except DataError:
        return COMPLETE


__all__ = [
    "COMPLETE", "FAILED", "ROLLOUT_FILE", "RUNNING", "RolloutAttrs", "RolloutHeader",
    "RolloutState",
    "append_frames", "bead_trajectory", "create_rollout_file", "mdtraj_topology",
    "read_rollout_state", "rollout_status", "write_viewer_files",
]
