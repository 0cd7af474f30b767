"""The rollout file ``OUT/rollout.h5``: a dataset of beads plus the state a rollout resumes from.

``rollout.h5`` is an ordinary eqcg dataset (:mod:`eqcg.data.store`) whose "atoms" are beads
(masses = bead masses, types = molecule kinds, bonds = CG bonds), with the CG settings and the
reference frames it started from in each system's attributes (:class:`RolloutAttrs`).

A rollout streams its frames into the file as it goes (:func:`create_rollout_file`,
:func:`append_frames`). Each chunk is written to a copy that replaces the file only once it is
complete, so the file on disk (and any reader) always holds whole frames, however the rollout
ends. Beside the systems the file holds the state a resumed rollout continues from
(``/rollout_state``, ignored by dataset readers): the last history of every bead, the noise
generator's state after that step, the rollout's settings and its status
(:func:`read_rollout_state`, :func:`rollout_status`).
"""

from __future__ import annotations

import json
import os
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eqcg.data.store import FORMAT_NAME, FORMAT_VERSION, write_system_group
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError
from eqcg.runtime.atomic import atomic_hdf5
from eqcg.runtime.boundary import doing

ROLLOUT_FILE = "rollout.h5"  # the bead-level dataset a rollout directory holds
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
        blew_up_at_step: the learned step this system blew up at (non-finite, or a bead
            jumping farther than the limit), which stopped the rollout; ``None`` if it did not.
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
    blew_up_at_step: int | None = None

    def to_attrs(self) -> dict[str, Any]:
        """The attributes as stored (a system's ``attrs``)."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str) -> RolloutAttrs:
        """Read them from a system's ``attrs`` (a :class:`DataError` naming any missing)."""
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in attrs]
        if missing:
            raise DataError(f"{where}: attributes {missing} are missing")
        val_nll, blew_up = attrs.get("val_nll"), attrs.get("blew_up_at_step")
        return cls(str(attrs["reference_system"]), int(attrs["cg_level"]),
                   int(attrs["whole_molecule_max_atoms"]), int(attrs["cg_seed"]),
                   int(attrs["start_frame"]), int(attrs["dilation"]),
                   float(attrs["wall_seconds"]), str(attrs["model"]),
                   None if val_nll is None else float(val_nll),
                   None if blew_up is None else int(blew_up))


@dataclass
class RolloutState:
    """Where a streamed rollout stands: what :func:`append_frames` records with every chunk.

    Attributes:
        step: the last learned step taken (the frames on disk end at or before it).
        history: ``(n_beads, k, 3)`` position history after ``step`` of all systems' beads
            (batch order), float64.
        rng_state: ``(n_bytes,)`` uint8 state of the noise generator after ``step``
            (``torch.Generator.get_state()``; empty where the rollout cannot be resumed).
        wall_seconds: wall-clock seconds spent stepping, over all sessions.
        status: ``running``, ``complete`` or ``failed``.
        message: why it failed (empty otherwise).
        blown_up: system name -> the learned step it blew up at (a failed rollout's culprits;
            stored as each such system's ``blew_up_at_step`` attribute).
    """

    step: int
    history: np.ndarray
    rng_state: np.ndarray
    wall_seconds: float
    status: str = RUNNING
    message: str = ""
    blown_up: dict[str, int] = field(default_factory=dict)


@dataclass
class RolloutHeader:
    """The fixed part of a streamed rollout: its settings and its systems' layout.

    Attributes:
        request: the settings it was started with (JSON-able), compared on resume.
        names: system names in batch order.
        ptr: ``(n_systems + 1,)`` bead offsets of the systems in the batch.
        time_per_step: ``(n_systems,)`` simulated time of one learned step per system
            (ps or tau).
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
        if name in state.blown_up:
            attrs["blew_up_at_step"] = state.blown_up[name]
        system.attrs["attrs_json"] = json.dumps(attrs)


def _replace_atomically(
    target: Path, write: Callable[[h5py.File], None], start_from_target: bool
) -> None:
    """Run ``write(h5py.File)`` on a temporary copy (of ``target``, or empty) and rename it
    over ``target`` once it is complete and on disk (:func:`~eqcg.runtime.atomic.atomic_hdf5`)."""
    with doing("writing the rollout", target), atomic_hdf5(
            target, copy_of=target if start_from_target else None) as out:
        write(out.file)


def create_rollout_file(
    path: str | os.PathLike, trajectories: list[SystemTrajectory], header: RolloutHeader,
    state: RolloutState,
) -> None:
    """Write a streamed rollout holding each trajectory's first frame(s), atomically.

    ``trajectories`` are bead-level systems in one unit system, with :class:`RolloutAttrs`
    among their ``attrs``; ``header`` and ``state`` go to ``/rollout_state``.
    """
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


def _blown_up(systems: h5py.Group) -> dict[str, int]:
    """System name -> ``blew_up_at_step`` of the systems that carry one."""
    steps = {name: json.loads(systems[name].attrs["attrs_json"]).get("blew_up_at_step")
             for name in systems}
    return {name: int(step) for name, step in steps.items() if step is not None}


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
                blown_up=_blown_up(f["systems"]),
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
