"""``eqcg simulate``: roll a trained run out on a system that has no dataset.

The system comes from a user's files (:class:`SystemFiles`: a topology — LAMMPS data file,
PDB/PSF, ... read by :func:`eqcg.data.ingest.read_system` — and a short MD trajectory) or from
a short LAMMPS run eqcg makes itself for a built-in system (:class:`BuiltinSystem`). The model
reads ``k`` history frames one learned step apart: ``data.dilation`` frames of its training
data, ``dilation x frame_interval`` of simulated time. The trajectory supplies them every
``stride`` of its own frames, where ``stride`` is that step over the trajectory's frame
interval (it must be a whole number) unless the user states it. Before any step the system is
checked against what the run was trained on: the same unit system and only atom and bond types
in the model's vocabulary (errors name the type and the file). It is then mapped with the run's
CG settings and rolled out like a dataset's system (:func:`eqcg.simulation.runner.execute`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eqcg.cg.mapping import CGSettings
from eqcg.data.ingest import detect_format, read_system
from eqcg.data.store import load_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import CGSystem
from eqcg.runtime.arguments import at_least
from eqcg.simulation.runner import (
    LoadedRun,
    RolloutOptions,
    RolloutStart,
    execute,
    rollout_session,
)
from eqcg.systems.generate import LAMMPS_DIR, run_specs
from eqcg.systems.registry import DEFAULT_PRESET, SystemKind, get_system_kind, system_kinds
from eqcg.units import unit_system

PathLike = str | os.PathLike
HISTORY_DIR = "history"  # OUT/history: the LAMMPS run of a generated history
_SPACING_TOLERANCE = 1e-3  # relative: frame spacings that count as equal (float32 times)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SystemFiles:
    """A user's system: topology and a short MD trajectory, and what the files do not say.

    Attributes:
        topology: LAMMPS data file, PDB/PSF/prmtop, or extxyz (as ``eqcg ingest`` reads).
        trajectories: trajectory files in time order.
        fmt: ``lammps``, ``mdtraj`` or ``ase`` (default: from the file names).
        name: system name (default: the topology file's stem).
        units: ``real`` or ``lj`` (default: the run's training data's).
        timestep: LAMMPS dumps: MD step length (ps or tau); frame time = timestep number x this.
        frame_interval: time between frames (ps or tau) when the files carry none.
        stride: trajectory frames per learned step (default: the model's learned step over the
            trajectory's frame interval).
        temperature: thermostat temperature of the MD (K or epsilon/k_B); needed by models
            trained with ``model.temperature_input``.
    """

    topology: PathLike
    trajectories: Sequence[PathLike]
    fmt: str | None = None
    name: str | None = None
    units: str | None = None
    timestep: float | None = None
    frame_interval: float | None = None
    stride: int | None = None
    temperature: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuiltinSystem:
    """One system of a built-in generator, whose history eqcg runs with LAMMPS.

    Attributes:
        kind: a registered system that generates a history
            (:mod:`eqcg.systems.registry`: ``polymer``, one bead-spring chain in LJ units;
            ``electrolyte``, one PEO/LiTFSI box in real units).
        preset: the system's preset (sizes and physics); the run length is just what the
            history needs, the frame interval the run's training data's.
        seed: seed of the system's composition, start and thermostat.
    """

    kind: str
    preset: str = DEFAULT_PRESET
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            kind = get_system_kind(self.kind)
        except ConfigError as exc:
            raise ConfigError(f"--generate-history: {exc}") from None
        if kind.history is None:
            offered = [name for name, other in system_kinds().items() if other.history]
            raise ConfigError(f"--generate-history: the {kind.name} system generates no "
                              f"history; systems that do: {', '.join(offered)}")
        try:
            kind.preset(self.preset)
        except ConfigError as exc:
            raise ConfigError(f"--preset: {exc}") from None


def simulate(
    run: PathLike,
    system: SystemFiles | BuiltinSystem,
    out: PathLike,
    n_steps: int,
    *,
    options: RolloutOptions | None = None,
    **changes: Any,
) -> Path:
    """Roll the model of ``run`` out for ``n_steps`` learned steps on ``system``; write into
    ``out`` as :func:`~eqcg.simulation.runner.run_rollout` does (``rollout.h5``,
    ``<system>.pdb`` + ``.dcd``; a generated history's LAMMPS run in ``out/history``).

    ``options`` and ``changes`` as for :func:`~eqcg.simulation.runner.run_rollout`; the history
    starts at trajectory frame ``start_frame``. Raises :class:`DataError` naming the file for a
    unit system other than the training data's, an atom or bond type the model never saw, or a
    trajectory that cannot supply the history at the model's learned step.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("simulate rolls out one system: run it in one process, not under "
                          "torchrun")
    options = dataclasses.replace(options or RolloutOptions(), **changes)
    out = Path(out)
    with rollout_session(out, n_steps, options) as ctx:
        loaded = LoadedRun.load(run, options, ctx.device)
        if isinstance(system, BuiltinSystem):
            start = _generated(system, loaded, out, options)
            stride = loaded.config.data.dilation
        else:
            start = _read(system, loaded)
            stride = _stride(start, system.stride, loaded)
        return execute(loaded, _rollout_start(start, stride, loaded, options.start_frame),
                       out, n_steps, options, ctx)


@dataclasses.dataclass
class _Start:
    """A system to roll out, and the files errors about it name.

    Attributes:
        trajectory: the system with its history frames.
        topology: where its atom and bond types come from.
        frames: where its frames come from.
        request: JSON-able description of its files (stored with the rollout).
    """

    trajectory: SystemTrajectory
    topology: str
    frames: str
    request: dict[str, Any]


def _read(files: SystemFiles, loaded: LoadedRun) -> _Start:
    """The user's system, read in the run's units unless told otherwise."""
    topology, paths = Path(files.topology), [Path(p) for p in files.trajectories]
    if not paths:
        raise DataError(f"{topology}: no trajectory given (--trajectory) to take the model's "
                        f"{loaded.simulator.history} history frames from")
    fmt = files.fmt or detect_format(topology, paths)
    frame_interval = files.frame_interval
    if fmt == "lammps" and files.timestep is None and frame_interval is None:
        if files.stride is None or _learned_step(loaded) is None:
            raise DataError(
                f"{topology}: LAMMPS files do not record the time between frames; give "
                "--timestep (the MD step in ps or tau, e.g. 0.002 for 2 fs in real units) or "
                "--frame-interval, or --stride (trajectory frames per learned step)")
        frame_interval = _learned_step(loaded) / files.stride
    trajectory = read_system(topology, paths, fmt=fmt, name=files.name,
                             units=files.units or loaded.metadata.units,
                             timestep=files.timestep, frame_interval=frame_interval,
                             temperature=files.temperature)
    request = {"topology": str(topology.resolve()),
               "trajectories": [str(p.resolve()) for p in paths]}
    return _Start(trajectory, str(topology), ", ".join(map(str, paths)), request)


def _learned_step(loaded: LoadedRun) -> float | None:
    """Simulated time of one learned step (ps or tau), if the run recorded its frame interval."""
    interval = loaded.metadata.frame_interval
    return None if interval is None else loaded.config.data.dilation * float(interval)


def _stride(start: _Start, stated: int | None, loaded: LoadedRun) -> int:
    """Trajectory frames per learned step: ``stated``, else the learned step over the frame
    interval, which must be uniform and divide it."""
    if stated is not None:
        at_least("stride (--stride)", stated, 1)
        _warn_other_step(start, stated, loaded)
        return stated
    step = _learned_step(loaded)
    if step is None:
        raise ConfigError(f"{loaded.checkpoint}: the run does not record its training data's "
                          "frame interval; give --stride (trajectory frames per learned step)")
    trajectory, where = start.trajectory, start.frames
    if trajectory.n_frames < 2:
        return 1
    time_unit = unit_system(trajectory.units).time
    spacing = np.diff(np.asarray(trajectory.time))
    interval = float(spacing[0])
    uneven = np.flatnonzero(np.abs(spacing - interval) > _SPACING_TOLERANCE * interval)
    if uneven.size:
        frame = int(uneven[0]) + 1
        raise DataError(f"{where}: frame {frame} is {spacing[frame - 1]:g} {time_unit} after the "
                        f"one before, the frames before it {interval:g} {time_unit} apart; give "
                        "evenly spaced frames, or --stride")
    ratio = step / interval
    stride = round(ratio)
    if stride < 1 or abs(ratio - stride) > _SPACING_TOLERANCE * ratio:
        raise DataError(
            f"{where}: frames are {interval:g} {time_unit} apart, and the model's learned step is "
            f"{step:g} {time_unit} ({loaded.config.data.dilation} training frames of "
            f"{step / loaded.config.data.dilation:g} {time_unit}): not a whole number of frames; "
            f"write frames every {step:g} {time_unit} (or a whole fraction of it), or give "
            "--stride N to take every N-th frame anyway")
    return stride


def _warn_other_step(start: _Start, stride: int, loaded: LoadedRun) -> None:
    """Warn when ``stride`` frames of the trajectory span another time than the model's
    learned step: the rollout's steps are labelled with the trajectory's time."""
    step, trajectory = _learned_step(loaded), start.trajectory
    if step is None or trajectory.n_frames < 2:
        return
    taken = stride * float(trajectory.time[1] - trajectory.time[0])
    if abs(taken - step) > _SPACING_TOLERANCE * step:
        unit = unit_system(trajectory.units).time
        warnings.warn(
            f"--stride {stride}: {stride} frames of {start.frames} span {taken:g} {unit}, but the "
            f"model learned steps of {step:g} {unit}; its rollout is labelled {taken:g} {unit} "
            "per step although it moves by what it learned over one of its own steps",
            stacklevel=4)


def _rollout_start(
    start: _Start, stride: int, loaded: LoadedRun, start_frame: int
) -> RolloutStart:
    """Check ``start`` against the run and make it the rollout's only system."""
    trajectory, where = start.trajectory, start.topology
    trained_units = loaded.metadata.units
    if trained_units is not None and trajectory.units != trained_units:
        raise DataError(
            f"{where}: the system is in {trajectory.units!r} units, the run "
            f"({loaded.checkpoint}) was trained on {trained_units!r} data; a model only "
            f"simulates systems in its training units (give --units {trained_units} if the "
            "files are in those)")
    vocabulary = loaded.simulator.vocabulary
    try:
        vocabulary.encode_atoms(trajectory)
        vocabulary.encode_bonds(trajectory)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    history = loaded.simulator.history
    needed = start_frame + (history - 1) * stride + 1
    if trajectory.n_frames < needed:
        raise DataError(
            f"{start.frames}: the trajectory has {trajectory.n_frames} frames; the model needs "
            f"{history} history frames {stride} apart (one learned step) from frame "
            f"{start_frame}: {needed} frames")
    settings = CGSettings.from_config(loaded.config.data)
    return RolloutStart.from_system(CGSystem.from_trajectory(trajectory, settings, vocabulary),
                                    stride, {**start.request, "stride": stride})


def _generated(
    system: BuiltinSystem, loaded: LoadedRun, out: Path, options: RolloutOptions
) -> _Start:
    """Run ``system``'s short LAMMPS job in ``out/history`` (or reuse a finished one)."""
    kind = get_system_kind(system.kind)
    units, trained_units = kind.units, loaded.metadata.units
    if trained_units is not None and units != trained_units:
        raise DataError(f"--generate-history {system.kind}: the built-in {system.kind} system is "
                        f"in {units!r} units, the run ({loaded.checkpoint}) was trained on "
                        f"{trained_units!r} data")
    interval = loaded.metadata.frame_interval
    if interval is None:
        raise ConfigError(f"{loaded.checkpoint}: the run does not record its training data's "
                          "frame interval, which a generated history needs")
    dilation = loaded.config.data.dilation
    n_frames = options.start_frame + (loaded.simulator.history - 1) * dilation + 1
    preset = kind.preset(system.preset)
    _check_whole_steps(kind, float(interval), preset.timestep)
    spec = kind.history_spec(preset, system.seed, n_frames, float(interval))
    history_dir = out / HISTORY_DIR
    run_specs([spec], history_dir, jobs=1, source=f"eqcg simulate --generate-history "
              f"{system.kind}", record={**dataclasses.asdict(system), "n_frames": n_frames,
                                        "frame_interval": float(interval)},
              show_progress=options.show_progress)
    with load_dataset(history_dir) as dataset:
        trajectory = dataset[spec.name]
        trajectory = dataclasses.replace(trajectory, positions=trajectory.positions[()])
    workdir = str(history_dir / LAMMPS_DIR / spec.name)
    return _Start(trajectory, workdir, workdir, {"generated": dataclasses.asdict(system)})


def _check_whole_steps(kind: SystemKind, interval: float, dt: float) -> None:
    """ConfigError unless the frame ``interval`` is a whole number of MD steps ``dt``."""
    steps = round(interval / dt)
    if steps < 1 or abs(steps * dt - interval) > _SPACING_TOLERANCE * interval:
        time = unit_system(kind.units).time
        raise ConfigError(f"--generate-history {kind.name}: the run's training frames are "
                          f"{interval:g} {time} apart, not a whole number of the {kind.name} MD "
                          f"step {dt:g} {time}")


__all__ = ["BuiltinSystem", "SystemFiles", "simulate"]
