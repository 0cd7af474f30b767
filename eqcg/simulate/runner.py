"""``eqcg rollout``: load a run, start from reference frames, roll out, write trajectories.

:func:`run_rollout` starts from systems of a dataset; :func:`execute_rollout` is the machinery
it shares with ``eqcg simulate`` (:mod:`eqcg.simulate.new_system`), which starts from a system
that has none: the run is loaded once, a :class:`RolloutSource` says which systems start from
which frames, and :class:`RolloutOptions` how to step and write.

The saved frames stream into ``OUT/rollout.h5`` while the rollout runs, in atomic chunks
(:mod:`eqcg.data.rollout_file`): an interrupted, preempted or killed rollout keeps what it
computed up to its last chunk, and ``resume=True`` (``eqcg rollout ... --resume``) continues it
from the history and noise-generator state stored with that chunk, as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.arguments import at_least, resolve_device
from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, ScoreConfig
from eqcg.data.rollout_file import (
    COMPLETE,
    FAILED,
    ROLLOUT_FILE,
    RUNNING,
    RolloutAttrs,
    RolloutHeader,
    RolloutState,
    append_frames,
    create_rollout_file,
    read_rollout_state,
)
from eqcg.data.store import TrajectoryDataset, load_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.distributed import DistributedContext, distributed_context
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import CGSystem, prepare_systems, require_temperatures
from eqcg.graphs.windows import history_frames
from eqcg.interrupt import Interrupted, interruptible, signal_of, uninterrupted
from eqcg.models.checkpoint import BEST, load_simulator, resolve_checkpoint
from eqcg.models.gaussian import gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.outputs import check_output, claim_output
from eqcg.run_info import write_run_info
from eqcg.simulate.refinement import Refinement
from eqcg.simulate.rollout import RolloutFailure, RolloutResult, rollout
from eqcg.simulate.writer import bead_trajectory, write_viewer_files

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutOptions:
    """How a run is rolled out, whatever systems it starts from.

    Attributes:
        checkpoint: ``best.pt`` or ``last.pt`` of a run directory.
        deterministic: step with the mean acceleration instead of sampling it.
        refinement: score refinement of every step; ``None``: the run's ``score`` config.
        refinement_changes: :class:`~eqcg.simulate.refinement.Refinement` fields replaced in
            that refinement (the command line's ``--levels``, ``--no-refine`` ...).
        save_every: learned steps between saved frames.
        start_frame: first history frame in the source trajectories.
        seed: seed of the sampling noise (rank ``r`` of ``torchrun`` uses ``seed + r``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        dtype: floating-point type of the model and positions.
        show_progress: draw a progress bar.
        command: the command line recorded in ``run.json``.
        resume: continue the interrupted rollout in the output directory.
        overwrite: replace the rollout the output directory holds.
        flush_seconds: least wall-clock seconds between two chunks written to ``rollout.h5``.
        compile: compile the networks (:meth:`~eqcg.models.simulator.Simulator.compile_networks`).
    """

    checkpoint: str = BEST
    deterministic: bool = False
    refinement: Refinement | None = None
    refinement_changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    save_every: int = 1
    start_frame: int = 0
    seed: int = 0
    device: str = "auto"
    dtype: torch.dtype = torch.float32
    show_progress: bool = True
    command: Sequence[str] = ()
    resume: bool = False
    overwrite: bool = False
    flush_seconds: float = 10.0
    compile: bool = False

    def check(self, out: Path, n_steps: int) -> None:
        """Refuse bad arguments before any work is done."""
        at_least("n_steps (--steps)", n_steps, 1)
        at_least("save_every (--save-every)", self.save_every, 1)
        at_least("start_frame (--start-frame)", self.start_frame, 0)
        at_least("seed (--seed)", self.seed, 0)
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the rollout in --out, --overwrite replaces "
                              "it: give one of them")
        check_output(out, "rollout", resume=self.resume, overwrite=self.overwrite)

    def resolved_refinement(self, score: ScoreConfig) -> Refinement:
        """:attr:`refinement` (else the run's) with :attr:`refinement_changes` applied."""
        return dataclasses.replace(self.refinement or Refinement.from_config(score),
                                   **self.refinement_changes)


@dataclasses.dataclass
class LoadedRun:
    """A trained run, loaded once for a rollout.

    Attributes:
        simulator: the model, on the rollout's device and dtype, in eval mode.
        config: the run's config.
        metadata: what the run stored about its training data (dataset, units,
            frame_interval, split, step, val_nll).
        checkpoint: the checkpoint file it was read from.
    """

    simulator: Simulator
    config: Config
    metadata: dict[str, Any]
    checkpoint: Path


@dataclasses.dataclass
class RolloutSource:
    """The systems a rollout starts from.

    Attributes:
        names: system names, in batch order.
        coarse_grain: the CG systems of the given names (one rank's share), mapped with the
            run's CG settings and encoded with its type vocabulary.
        stride: recorded frames per learned step in the source trajectories.
        request: JSON-able description of where the frames come from (stored in
            ``rollout.h5`` and compared on resume).
        dataset_hash: the content hash of the dataset the systems come from (recorded in
            ``run.json``; evaluation checks its reference against it), ``None`` without one.
    """

    names: list[str]
    coarse_grain: Callable[[list[str]], list[CGSystem]]
    stride: int
    request: dict[str, Any]
    dataset_hash: str | None = None


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


def _default_systems(loaded: LoadedRun, dataset: TrajectoryDataset) -> list[str]:
    """The run's test systems when ``dataset`` is the one it was trained on, else all."""
    if Path(loaded.metadata.get("dataset", "")).resolve() != Path(dataset.path).resolve():
        return dataset.names
    test = loaded.metadata.get("split", {}).get("test", [])
    if not test:
        split = loaded.config.data.split
        raise ConfigError(
            f"--systems: the run of {loaded.checkpoint} has no test systems "
            f"(data.split {list(split)} over {len(dataset)} systems), and rolling out the "
            "systems it was trained on would say nothing about held-out ones; name the "
            "systems with --systems")
    return test


def run_rollout(
    run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    n_steps: int,
    *,
    systems: Sequence[str] | None = None,
    options: RolloutOptions | None = None,
    **changes: Any,
) -> Path:
    """Roll the model of ``run`` out on ``systems`` of dataset ``data``; write into ``out``.

    ``systems`` defaults to the run's test split (all systems when the dataset is another one; a
    :class:`ConfigError` when the split is empty). ``options`` (default
    :class:`RolloutOptions`), with the fields named in ``changes`` replaced (``save_every=2``,
    ``refinement=...``), say how; ``out`` is claimed as a rollout
    (:func:`~eqcg.outputs.claim_output`). Returns the output directory. Saved frames stream into
    ``out/rollout.h5`` in chunks at least ``flush_seconds`` apart (and at the end, on failure
    and on interruption); ``resume=True`` continues the rollout there, with the same arguments,
    up to ``n_steps`` (which may exceed the original). When a system blows up, the frames before
    it are kept and :class:`~eqcg.simulate.rollout.RolloutFailure` is raised; Ctrl-C or SIGTERM
    raise :class:`~eqcg.interrupt.Interrupted` after the last chunk is written. Under
    ``torchrun`` the systems are split across ranks (rank ``r`` takes every ``world``-th) and
    rank 0 writes them all at the end (not resumable).
    """
    options = dataclasses.replace(options or RolloutOptions(), **changes)

    def source(loaded: LoadedRun) -> RolloutSource:
        dataset = load_dataset(data)
        if systems is not None:
            _check_systems(systems, dataset)
        names = systems if systems is not None else _default_systems(loaded, dataset)
        settings = CGSettings.from_config(loaded.config.data)
        return RolloutSource(
            list(names),
            lambda chosen: prepare_systems(dataset, settings, loaded.simulator.vocabulary, chosen),
            loaded.config.data.dilation, {"data": str(Path(dataset.path).resolve())},
            dataset.content_hash)

    return execute_rollout(run, out, n_steps, options, source)


def execute_rollout(
    run: str | os.PathLike,
    out: str | os.PathLike,
    n_steps: int,
    options: RolloutOptions,
    source: Callable[[LoadedRun], RolloutSource],
) -> Path:
    """Load ``run`` once, ask ``source`` for the systems to start from, roll them out and write
    them into ``out`` (the machinery behind :func:`run_rollout` and
    :func:`~eqcg.simulate.new_system.simulate`; see the former)."""
    out = Path(out)
    options.check(out, n_steps)
    ctx = distributed_context(resolve_device(options.device))
    try:
        if options.resume and ctx.world > 1:
            raise ConfigError("--resume: a rollout under torchrun cannot be resumed; run the "
                              "rollout in one process to make it resumable")
        claim = (claim_output(out, "rollout", resume=options.resume, overwrite=options.overwrite)
                 if ctx.is_main else nullcontext())
        with interruptible(), claim:
            return _execute(run, out, n_steps, options, source, ctx)
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
    systems: list[str]
    stride: int
    request: dict[str, Any]
    refinement: Refinement
    options: RolloutOptions
    dataset_hash: str | None

    @property
    def path(self) -> Path:
        return self.out / ROLLOUT_FILE

    def stepping(self, system_names: list[str], is_main: bool) -> dict[str, Any]:
        """The keyword arguments of :func:`~eqcg.simulate.rollout.rollout` for these systems."""
        return {"deterministic": self.options.deterministic, "refinement": self.refinement,
                "save_every": self.options.save_every, "system_names": system_names,
                "show_progress": self.options.show_progress and is_main}

    def write_info(self, wall_seconds: float, ranks: int, failures: list[str] | None) -> None:
        write_run_info(self.out, self.config.to_dict(), self.options.seed, self.options.command,
                       extra={**self.request, "dataset_hash": self.dataset_hash,
                              "run": self.run, "steps": self.n_steps,
                              "compile": self.options.compile, "wall_seconds": wall_seconds,
                              "ranks": ranks, "failed": failures})


def _execute(
    run: str | os.PathLike, out: Path, n_steps: int, options: RolloutOptions,
    make_source: Callable[[LoadedRun], RolloutSource], ctx: DistributedContext,
) -> Path:
    simulator, config, metadata = load_simulator(run, options.checkpoint,
                                                 map_location=ctx.device)
    simulator = simulator.to(device=ctx.device, dtype=options.dtype)
    if options.compile:
        simulator.compile_networks()
    checkpoint = resolve_checkpoint(run, options.checkpoint).resolve()
    source = make_source(LoadedRun(simulator, config, metadata, checkpoint))
    refinement = options.resolved_refinement(config.score)
    request = json.loads(json.dumps({
        "checkpoint": str(checkpoint), "checkpoint_step": metadata.get("step"),
        **source.request, "systems": source.names, "deterministic": options.deterministic,
        "refinement": dataclasses.asdict(refinement), "save_every": options.save_every,
        "start_frame": options.start_frame, "seed": options.seed,
        "dtype": str(options.dtype).removeprefix("torch."), "device": ctx.device.type,
    }))
    job = _Rollout(str(run), out, n_steps, config, metadata, source.names, source.stride,
                   request, refinement, options, source.dataset_hash)
    state = _resume_state(job) if options.resume else None
    if state is not None and state.status == COMPLETE and state.step == n_steps:
        _finish(job)
        return out
    mine = job.systems[ctx.rank :: ctx.world]
    cg_systems = source.coarse_grain(mine) if mine else []
    if simulator.requires_temperature:
        require_temperatures(cg_systems, f"rollout of run {run}")
    batch = (start_batch(cg_systems, simulator.history, source.stride, options.start_frame,
                         options.dtype).to(ctx.device) if mine else None)
    generator = torch.Generator(device=ctx.device)
    generator.manual_seed(options.seed + ctx.rank)
    if ctx.world == 1:
        _stream(job, simulator, cg_systems, batch, generator, state)
    else:
        _distributed(job, simulator, cg_systems, batch, generator, ctx)
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
    dilation, data = job.stride, job.config.data
    first = int(history_frames(job.options.start_frame, batch[keys.POS_HISTORY].shape[1],
                               dilation)[-1])
    ptr = batch.ptr.cpu().numpy()
    time_per_step = np.array([dilation * (s.time[1] - s.time[0]) for s in systems])
    trajectories = [
        bead_trajectory(system, positions[:, ptr[i] : ptr[i + 1]],
                        system.time[first] + steps * time_per_step[i], system.box[first], {
                            **RolloutAttrs(system.name, data.cg_level,
                                           data.whole_molecule_max_atoms, data.cg_seed, first,
                                           dilation, 0.0, job.config.model.variant,
                                           job.metadata.get("val_nll")).to_attrs(),
                            "deterministic": job.options.deterministic,
                            "refine": job.refinement.enabled,
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
    job: _Rollout, simulator: Simulator, systems: list[CGSystem], batch: Batch,
    generator: torch.Generator, state: RolloutState | None,
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
    recorder = StreamRecorder(job.path, batch[keys.POS_HISTORY], generator, state,
                              job.options.flush_seconds)
    try:
        rollout(simulator, batch, job.n_steps, noise=gaussian_noise(generator),
                start_step=state.step, on_save=recorder, keep_frames=False,
                **job.stepping([s.name for s in systems], is_main=True))
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
    job: _Rollout, simulator: Simulator, systems: list[CGSystem], batch: Batch | None,
    generator: torch.Generator, ctx: DistributedContext,
) -> None:
    """Roll this rank's systems out; rank 0 gathers them all and writes them at the end."""
    failure: RolloutFailure | None = None
    trajectories: list[SystemTrajectory] = []
    wall_seconds = 0.0
    if batch is not None:
        try:
            result = rollout(simulator, batch, job.n_steps, noise=gaussian_noise(generator),
                             **job.stepping([s.name for s in systems], ctx.is_main))
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


__all__ = ["LoadedRun", "RolloutOptions", "RolloutSource", "execute_rollout", "run_rollout",
           "start_batch"]
