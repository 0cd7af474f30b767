"""``eqcg rollout``: load a run, start from reference frames, roll out, write trajectories.

The saved frames stream into ``OUT/rollout.h5`` while the rollout runs, in atomic chunks
(:mod:`eqcg.simulate.writer`): an interrupted, preempted or killed rollout keeps what it
computed up to its last chunk, and ``resume=True`` (``eqcg rollout ... --resume``) continues it
from the history and noise-generator state stored with that chunk, as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.arguments import at_least, resolve_device
from eqcg.cg.mapping import CGSettings
from eqcg.config import Config
from eqcg.data.store import TrajectoryDataset, load_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.distributed import DistributedContext, distributed_context
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import CGSystem, prepare_systems
from eqcg.graphs.windows import history_frames
from eqcg.interrupt import Interrupted, interruptible, signal_of, uninterrupted
from eqcg.models.checkpoint import BEST, load_simulator, resolve_checkpoint
from eqcg.run_info import write_run_info
from eqcg.simulate.langevin import gaussian_noise
from eqcg.simulate.rollout import Refinement, RolloutFailure, RolloutResult, rollout
from eqcg.simulate.writer import (
    COMPLETE,
    FAILED,
    ROLLOUT_FILE,
    RUNNING,
    RolloutHeader,
    RolloutState,
    append_frames,
    bead_trajectory,
    create_rollout_file,
    read_rollout_state,
    write_viewer_files,
)

_LISTED_SYSTEMS = 8  # known system names an error message lists before abbreviating
_COMMIT_OVERHEAD = 20  # chunks are at least this many times as far apart as one write takes


def start_batch(
    systems: list[CGSystem], history: int, dilation: int, start: int, dtype: torch.dtype
) -> Batch:
    """A batch of ``systems`` holding their reference history from frame ``start``."""
    at_least("start_frame (--start-frame)", start, 0)
    frames = history_frames(start, history, dilation)
    for system in systems:
        if frames[-1] >= system.n_frames:
            raise DataError(
                f"system {system.name!r} has {system.n_frames} frames; a history of {history} "
                f"frames {dilation} apart from frame {start} needs {frames[-1] + 1}"
            )
    return Batch.from_data_list([s.graph(frames, dtype=dtype) for s in systems])


def check_rollout_arguments(out: Path, n_steps: int, save_every: int, start_frame: int) -> None:
    """Refuse bad rollout arguments before any work is done."""
    at_least("n_steps (--steps)", n_steps, 1)
    at_least("save_every (--save-every)", save_every, 1)
    at_least("start_frame (--start-frame)", start_frame, 0)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is an existing file, not a directory for the rollout")


def _check_systems(names: Sequence[str], dataset: TrajectoryDataset) -> None:
    known = dataset.names
    if not names:
        raise ConfigError("--systems: no systems given to roll out")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"--systems: system {name!r} is given twice")
        seen.add(name)
        if name not in known:
            listed = ", ".join(known[:_LISTED_SYSTEMS])
            more = len(known) - _LISTED_SYSTEMS
            raise ConfigError(
                f"--systems: no system {name!r} in {dataset.path}; its {len(known)} systems are "
                f"{listed}{f' and {more} more' if more > 0 else ''}"
            )


def run_rollout(
    run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    n_steps: int,
    *,
    systems: Sequence[str] | None = None,
    checkpoint: str = BEST,
    deterministic: bool = False,
    refinement: Refinement | None = None,
    save_every: int = 1,
    start_frame: int = 0,
    seed: int = 0,
    device: str = "auto",
    dtype: torch.dtype = torch.float32,
    show_progress: bool = True,
    command: Sequence[str] = (),
    resume: bool = False,
    flush_seconds: float = 10.0,
) -> Path:
    """Roll the model of ``run`` out on ``systems`` of dataset ``data``; write into ``out``.

    ``systems`` defaults to the run's test split (all systems when the split is empty or the
    dataset is another one). ``refinement`` defaults to the run's score config. Returns the
    output directory. Saved frames stream into ``out/rollout.h5`` in chunks at least
    ``flush_seconds`` apart (and at the end, on failure and on interruption); ``resume=True``
    continues the rollout there, with the same arguments, up to ``n_steps`` (which may exceed
    the original). When a system blows up, the frames before it are kept and
    :class:`~eqcg.simulate.rollout.RolloutFailure` is raised; Ctrl-C or SIGTERM raise
    :class:`~eqcg.interrupt.Interrupted` after the last chunk is written. Under ``torchrun``
    the systems are split across ranks (rank ``r`` takes every ``world``-th) and rank 0 writes
    them all at the end (not resumable).
    """
    out = Path(out)
    check_rollout_arguments(out, n_steps, save_every, start_frame)
    ctx = distributed_context(resolve_device(device))
    try:
        if resume and ctx.world > 1:
            raise ConfigError("--resume: a rollout under torchrun cannot be resumed; run the "
                              "rollout in one process to make it resumable")
        with interruptible():
            return _run_rollout(
                run, data, out, n_steps, systems, checkpoint, deterministic, refinement,
                save_every, start_frame, seed, ctx, dtype, show_progress, command, resume,
                flush_seconds,
            )
    finally:
        ctx.close()


@dataclasses.dataclass
class _Rollout:
    """Everything about one rollout call that does not change while it steps."""

    run: str
    out: Path
    n_steps: int
    config: Config
    metadata: dict[str, Any]
    dataset: TrajectoryDataset
    systems: list[str]
    request: dict[str, Any]
    refinement: Refinement
    command: Sequence[str]

    @property
    def path(self) -> Path:
        return self.out / ROLLOUT_FILE

    def write_info(self, wall_seconds: float, ranks: int, failures: list[str] | None) -> None:
        write_run_info(self.out, self.config.to_dict(), self.request["seed"], self.command,
                       extra={**self.request, "run": self.run, "steps": self.n_steps,
                              "wall_seconds": wall_seconds, "ranks": ranks, "failed": failures})


def _run_rollout(
    run, data, out: Path, n_steps: int, systems, checkpoint: str, deterministic: bool,
    refinement: Refinement | None, save_every: int, start_frame: int, seed: int,
    ctx: DistributedContext, dtype: torch.dtype, show_progress: bool, command: Sequence[str],
    resume: bool, flush_seconds: float,
) -> Path:
    dataset = load_dataset(data)
    if systems is not None:
        _check_systems(systems, dataset)
    simulator, config, metadata = load_simulator(run, checkpoint, map_location=ctx.device)
    simulator = simulator.to(device=ctx.device, dtype=dtype)
    if systems is None:
        same_data = Path(metadata.get("dataset", "")).resolve() == Path(dataset.path).resolve()
        test = metadata.get("split", {}).get("test", [])
        systems = test if (same_data and test) else dataset.names
    refinement = refinement or Refinement.from_config(config.score)
    request = json.loads(json.dumps({
        "checkpoint": str(resolve_checkpoint(run, checkpoint).resolve()),
        "checkpoint_step": metadata.get("step"), "data": str(Path(dataset.path).resolve()),
        "systems": list(systems), "deterministic": deterministic,
        "refinement": dataclasses.asdict(refinement), "save_every": save_every,
        "start_frame": start_frame, "seed": seed, "dtype": str(dtype).removeprefix("torch."),
        "device": ctx.device.type,
    }))
    job = _Rollout(str(run), out, n_steps, config, metadata, dataset, list(systems), request,
                   refinement, command)
    state = _resume_state(job) if resume else None
    if state is not None and state.status == COMPLETE and state.step == n_steps:
        _finish(job)
        return out
    mine = job.systems[ctx.rank :: ctx.world]
    cg_systems: list[CGSystem] = []
    if mine:
        settings = CGSettings.from_config(config.data)
        cg_systems = prepare_systems(dataset, settings, simulator.vocabulary, mine)
    batch = (start_batch(cg_systems, simulator.history, config.data.dilation, start_frame,
                         dtype).to(ctx.device) if mine else None)
    generator = torch.Generator(device=ctx.device)
    generator.manual_seed(seed + ctx.rank)
    options = {"deterministic": deterministic, "refinement": refinement,
               "save_every": save_every, "system_names": mine,
               "show_progress": show_progress and ctx.is_main}
    if ctx.world == 1:
        _stream(job, simulator, cg_systems, batch, generator, state, options, flush_seconds)
    else:
        _distributed(job, simulator, cg_systems, batch, generator, options, ctx)
    return out


def _resume_state(job: _Rollout) -> RolloutState:
    """The state to continue from; refuses a rollout of other settings or one that is over."""
    if not job.path.is_file():
        raise ConfigError(f"--resume: no rollout to resume at {job.path}")
    header, state = read_rollout_state(job.path)
    changed = [f"{key}: {header.request.get(key)!r} -> {value!r}"
               for key, value in job.request.items() if header.request.get(key) != value]
    if changed:
        raise ConfigError(f"--resume: {job.path} was started with other settings "
                          f"({'; '.join(changed)}); resume with the same ones")
    if state.status == FAILED:
        raise ConfigError(f"--resume: {job.path} holds a rollout that failed ({state.message}); "
                          "there is nothing to continue")
    if state.step > job.n_steps:
        raise ConfigError(f"--resume: {job.path} already holds {state.step} steps, more than "
                          f"--steps {job.n_steps}")
    if state.step < job.n_steps and not len(state.rng_state):
        raise ConfigError(f"--resume: {job.path} holds no resumable state (written under "
                          "torchrun); it cannot be continued")
    return state


def _start_trajectories(
    job: _Rollout, systems: list[CGSystem], batch: Batch, positions: np.ndarray,
    steps: np.ndarray,
) -> tuple[list[SystemTrajectory], RolloutHeader]:
    """Each system's frames ``positions`` (batch order) at ``steps``, and the file header."""
    dilation = job.config.data.dilation
    first = int(history_frames(job.request["start_frame"], batch[keys.POS_HISTORY].shape[1],
                               dilation)[-1])
    ptr = batch.ptr.cpu().numpy()
    time_per_step = np.array([dilation * (s.time[1] - s.time[0]) for s in systems])
    trajectories = [
        bead_trajectory(system, positions[:, ptr[i] : ptr[i + 1]],
                        system.time[first] + steps * time_per_step[i], system.box[first], {
                            "reference_system": system.name,
                            "cg_level": job.config.data.cg_level,
                            "whole_molecule_max_atoms": job.config.data.whole_molecule_max_atoms,
                            "cg_seed": job.config.data.cg_seed,
                            "start_frame": first,
                            "dilation": dilation,
                            "wall_seconds": 0.0,
                            "model": job.config.model.variant,
                            "deterministic": job.request["deterministic"],
                            "refine": job.refinement.enabled,
                            "val_nll": job.metadata.get("val_nll"),
                        })
        for i, system in enumerate(systems)
    ]
    header = RolloutHeader(job.request, [s.name for s in systems], ptr, time_per_step)
    return trajectories, header


class StreamRecorder:
    """The ``on_save`` of a streamed rollout: keeps saved frames and the latest resumable
    state, and appends them to ``rollout.h5`` in chunks (see :func:`run_rollout`)."""

    def __init__(self, path: Path, history: torch.Tensor, generator: torch.Generator,
                 state: RolloutState, flush_seconds: float):
        self.path, self.generator, self.flush_seconds = path, generator, flush_seconds
        self.frames: list[tuple[int, torch.Tensor]] = []
        self.point = (state.step, history, generator.get_state())
        self.wall_before = state.wall_seconds
        self.started = self.last_commit = time.perf_counter()
        self.commit_seconds = 0.0

    @property
    def step(self) -> int:
        return self.point[0]

    def __call__(self, step: int, frame: torch.Tensor, history: torch.Tensor) -> None:
        with uninterrupted():
            self.frames.append((step, frame.cpu()))
            self.point = (step, history, self.generator.get_state())
        waited = time.perf_counter() - self.last_commit
        if waited >= max(self.flush_seconds, _COMMIT_OVERHEAD * self.commit_seconds):
            self.commit(RUNNING)

    def commit(self, status: str, message: str = "") -> float:
        """Append the frames kept so far with the latest state; return the wall seconds."""
        with uninterrupted():
            began = time.perf_counter()
            step, history, rng_state = self.point
            wall = self.wall_before + began - self.started
            frames = [f for s, f in self.frames if s <= step]
            positions = (torch.stack(frames).double().numpy() if frames
                         else np.zeros((0, history.shape[0], 3)))
            steps = np.array([s for s, _ in self.frames if s <= step], dtype=np.int64)
            append_frames(self.path, positions, steps, RolloutState(
                step, history.detach().cpu().double().numpy(), rng_state.numpy(), wall,
                status, message))
            self.frames.clear()
            self.last_commit = time.perf_counter()
            self.commit_seconds = self.last_commit - began
        return wall


def _stream(
    job: _Rollout, simulator, systems: list[CGSystem], batch: Batch,
    generator: torch.Generator, state: RolloutState | None, options: dict, flush_seconds: float,
) -> None:
    """Roll out in this process, streaming into ``rollout.h5`` (new, or resumed at ``state``)."""
    history = batch[keys.POS_HISTORY]
    if state is None:
        state = RolloutState(0, history.detach().cpu().double().numpy(),
                             generator.get_state().numpy(), 0.0)
        trajectories, header = _start_trajectories(
            job, systems, batch, history[:, -1].detach().cpu().double().numpy()[None],
            np.zeros(1))
        create_rollout_file(job.path, trajectories, header, state)
    else:
        header, _ = read_rollout_state(job.path)
        if (state.history.shape != tuple(history.shape)
                or not np.array_equal(header.ptr, batch.ptr.cpu().numpy())):
            raise DataError(f"{job.path}: the stored history ({state.history.shape}, beads per "
                            f"system {np.diff(header.ptr).tolist()}) does not fit the systems' "
                            f"({tuple(history.shape)}, {batch.ptr.diff().tolist()})")
        batch[keys.POS_HISTORY] = torch.as_tensor(state.history, dtype=history.dtype,
                                                  device=history.device)
        generator.set_state(torch.as_tensor(state.rng_state, dtype=torch.uint8))
    recorder = StreamRecorder(job.path, batch[keys.POS_HISTORY], generator, state, flush_seconds)
    try:
        rollout(simulator, batch, job.n_steps, noise=gaussian_noise(generator),
                start_step=state.step, on_save=recorder, keep_frames=False, **options)
    except RolloutFailure as failure:
        job.write_info(recorder.commit(FAILED, str(failure)), 1, [str(failure)])
        _finish(job)
        raise RolloutFailure(str(failure), result=None) from None
    except KeyboardInterrupt as exc:
        job.write_info(recorder.commit(RUNNING), 1, None)
        raise Interrupted(
            f"{str(exc) or 'interrupted'} at step {recorder.step} of {job.n_steps}; {job.path} "
            "holds the frames up to there: continue with --resume", signal_of(exc)) from None
    job.write_info(recorder.commit(COMPLETE), 1, None)
    _finish(job)


def _finish(job: _Rollout) -> None:
    """Write the PDB + DCD files of every system in ``rollout.h5``."""
    with load_dataset(job.path) as written:
        trajectories = [dataclasses.replace(s, positions=s.positions[()]) for s in written]
    write_viewer_files(job.out, trajectories)


def _distributed(
    job: _Rollout, simulator, systems: list[CGSystem], batch: Batch | None,
    generator: torch.Generator, options: dict, ctx: DistributedContext,
) -> None:
    """Roll this rank's systems out; rank 0 gathers them all and writes them at the end."""
    failure: RolloutFailure | None = None
    trajectories: list[SystemTrajectory] = []
    wall_seconds = 0.0
    if batch is not None:
        try:
            result = rollout(simulator, batch, job.n_steps, noise=gaussian_noise(generator),
                             **options)
        except RolloutFailure as exc:
            failure, result = exc, exc.result
        wall_seconds = result.wall_seconds
        trajectories = _result_trajectories(job, systems, batch, result)
    failures = [str(failure)] if failure else []
    trajectories, failures, wall_seconds = _gather(ctx, trajectories, failures, wall_seconds,
                                                   job.systems)
    if ctx.is_main:
        for trajectory in trajectories:
            trajectory.attrs["wall_seconds"] = wall_seconds
        status, message = (FAILED, "; ".join(failures)) if failures else (COMPLETE, "")
        header = RolloutHeader(job.request, [t.name for t in trajectories],
                               np.zeros(1, dtype=np.int64), np.zeros(0))
        create_rollout_file(job.path, trajectories, header, RolloutState(
            job.n_steps, np.zeros((0, 0, 3)), np.zeros(0, np.uint8), wall_seconds, status,
            message))
        job.write_info(wall_seconds, ctx.world, failures or None)
        _finish(job)
    if failures:
        raise RolloutFailure("; ".join(failures), result=None)


def _result_trajectories(
    job: _Rollout, systems: list[CGSystem], batch: Batch, result: RolloutResult
) -> list[SystemTrajectory]:
    trajectories, _ = _start_trajectories(job, systems, batch,
                                          result.positions.double().numpy(),
                                          result.steps.numpy())
    return trajectories


def _gather(
    ctx: DistributedContext, trajectories: list, failures: list[str], wall_seconds: float,
    order: list[str],
) -> tuple[list, list[str], float]:
    """Collect every rank's trajectories (in ``order``), failures and the longest wall time."""
    gathered: list = [None] * ctx.world
    dist.all_gather_object(gathered, (trajectories, failures, wall_seconds))
    by_name = {t.name: t for part, _, _ in gathered for t in part}
    return ([by_name[name] for name in order if name in by_name],
            [f for _, part, _ in gathered for f in part],
            max(seconds for _, _, seconds in gathered))


__all__ = ["check_rollout_arguments", "run_rollout", "start_batch"]
