"""A rollout in one process, streamed into ``rollout.h5`` and resumable.

The saved frames are appended in atomic chunks (:mod:`eqcg.data.rollout_file`) at least
``flush_seconds`` apart, each with the state a resumed rollout continues from (the history and
the noise generator's state after the last saved step): an interrupted, preempted or killed
rollout keeps what it computed up to its last chunk, and ``--resume`` continues it as if it had
never stopped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.data.rollout_file import (
    COMPLETE,
    FAILED,
    RUNNING,
    RolloutState,
    append_frames,
    create_rollout_file,
    read_rollout_state,
)
from eqcg.data.store import load_dataset
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import CGSystem
from eqcg.models.gaussian import gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.runtime.interrupt import Interrupted, signal_of, uninterrupted
from eqcg.simulation.job import RolloutJob
from eqcg.simulation.rollout import RolloutFailure, rollout
from eqcg.simulation.writer import write_viewer_files

_COMMIT_OVERHEAD = 20  # chunks are at least this many times as far apart as one write takes


def resume_state(job: RolloutJob) -> RolloutState:
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


class StreamRecorder:
    """The ``on_save`` of a streamed rollout: keeps saved frames and the latest resumable
    state, and appends them to ``rollout.h5`` in chunks."""

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

    def commit(self, status: str, message: str = "",
               blown_up: dict[str, int] | None = None) -> float:
        """Append the frames kept so far with the latest state (``blown_up``: a failure's
        systems and steps); return the wall seconds."""
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
                status, message, dict(blown_up or {})))
            self.frames.clear()
            self.last_commit = time.perf_counter()
            self.commit_seconds = self.last_commit - began
        return wall


def stream(
    job: RolloutJob, simulator: Simulator, systems: list[CGSystem], batch: Batch,
    generator: torch.Generator, state: RolloutState | None,
) -> None:
    """Roll out in this process, streaming into ``rollout.h5`` (new, or resumed at ``state``)."""
    history = batch[keys.POS_HISTORY]
    if state is None:
        state = RolloutState(0, history.detach().cpu().double().numpy(),
                             generator.get_state().numpy(), 0.0)
        trajectories, header = job.trajectories(
            systems, batch, history[:, -1].detach().cpu().double().numpy()[None], np.zeros(1))
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
    recorder = StreamRecorder(job.path, batch[keys.POS_HISTORY], generator, state,
                              job.flush_seconds)
    try:
        rollout(simulator, batch, job.n_steps, job.settings, save_every=job.save_every,
                noise=gaussian_noise(generator), system_names=[s.name for s in systems],
                show_progress=job.show_progress, start_step=state.step, on_save=recorder,
                keep_frames=False)
    except RolloutFailure as failure:
        job.write_info(recorder.commit(FAILED, str(failure), failure.blown_up), 1,
                       [str(failure)])
        finish(job)
        raise RolloutFailure(str(failure), result=None, blown_up=failure.blown_up) from None
    except KeyboardInterrupt as exc:
        job.write_info(recorder.commit(RUNNING), 1, None)
        raise Interrupted(
            f"{str(exc) or 'interrupted'} at step {recorder.step} of {job.n_steps}; {job.path} "
            "holds the frames up to there: continue with --resume", signal_of(exc)) from None
    job.write_info(recorder.commit(COMPLETE), 1, None)
    finish(job)


def finish(job: RolloutJob) -> None:
    """Write the PDB + DCD files of every system in ``rollout.h5``."""
    with load_dataset(job.path) as written:
        trajectories = [dataclasses.replace(s, positions=s.positions[()]) for s in written]
    write_viewer_files(job.out, trajectories)


__all__ = ["StreamRecorder", "finish", "resume_state", "stream"]
