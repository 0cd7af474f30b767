"""``eqcg rollout``: load a run, start from reference frames, roll out, write trajectories.

A rollout is put together from plain parts: the run (:meth:`LoadedRun.load`), the systems it
starts from (:class:`RolloutStart`: :meth:`~RolloutStart.from_dataset` here, a user's files or
a built-in system in :mod:`eqcg.simulation.new_system`) and how to step and write
(:class:`RolloutOptions`); :func:`execute` rolls them out, in one process streaming into
``OUT/rollout.h5`` (:mod:`eqcg.simulation.streaming`, resumable) or across ``torchrun`` ranks
(:mod:`eqcg.simulation.gathering`). :func:`run_rollout` is all of it for a dataset's systems.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, RolloutConfig, build_section, check_section
from eqcg.data.rollout_file import COMPLETE
from eqcg.data.store import TrajectoryDataset, load_dataset
from eqcg.errors import ConfigError
from eqcg.graphs.system import CGSystem, prepare_systems, require_temperatures
from eqcg.models.checkpoint import BEST, RunMetadata, load_simulator, resolve_checkpoint
from eqcg.models.simulator import Simulator
from eqcg.runtime.arguments import at_least, resolve_device
from eqcg.runtime.distributed import DistributedContext, distributed_context
from eqcg.runtime.interrupt import interruptible
from eqcg.runtime.outputs import check_output, claim_output
from eqcg.simulation.gathering import roll_out_ranks
from eqcg.simulation.job import RolloutJob, start_batch
from eqcg.simulation.streaming import finish, resume_state, stream

_LISTED_SYSTEMS = 8  # known system names an error message lists before abbreviating


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutOptions:
    """How a run is rolled out, whatever systems it starts from.

    Attributes:
        checkpoint: ``best.pt`` or ``last.pt`` of a run directory.
        settings: sampling and score refinement (``None``: the run's ``rollout`` section,
            which its ``config.yaml`` may have changed since training).
        changes: :class:`~eqcg.config.RolloutConfig` fields replaced in those settings (the
            command line's ``--refine-levels``, ``--no-refine`` ...).
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
    settings: RolloutConfig | None = None
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
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
        self.resolved_settings(RolloutConfig())
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues the rollout in --out, --overwrite replaces "
                              "it: give one of them")
        check_output(out, "rollout", resume=self.resume, overwrite=self.overwrite)

    def resolved_settings(self, run_settings: RolloutConfig) -> RolloutConfig:
        """:attr:`settings` (else ``run_settings``) with :attr:`changes` applied, validated as
        a config's ``rollout`` section is."""
        base = dataclasses.asdict(self.settings or run_settings)
        where = "the rollout options"
        settings = build_section(RolloutConfig, {**base, **self.changes}, "rollout", where)
        check_section(settings, "rollout", where)
        return settings


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """A trained run, loaded once for a rollout.

    Attributes:
        run: the run directory or checkpoint file, as given.
        simulator: the model, on the rollout's device and dtype, in eval mode.
        config: the run's config (its ``rollout`` section from the run's ``config.yaml``).
        metadata: what the run recorded about its training data.
        checkpoint: the checkpoint file it was read from.
    """

    run: str
    simulator: Simulator
    config: Config
    metadata: RunMetadata
    checkpoint: Path

    @classmethod
    def load(cls, run: str | os.PathLike, options: RolloutOptions,
             device: torch.device) -> LoadedRun:
        """The ``options.checkpoint`` of ``run`` on ``device`` in ``options.dtype``."""
        simulator, config, metadata = load_simulator(run, options.checkpoint,
                                                     map_location=device)
        simulator = simulator.to(device=device, dtype=options.dtype)
        if options.compile:
            simulator.compile_networks()
        return cls(str(run), simulator, config, metadata,
                   resolve_checkpoint(run, options.checkpoint).resolve())


@dataclasses.dataclass(frozen=True)
class RolloutStart:
    """The systems a rollout starts from.

    Attributes:
        names: system names, in batch order.
        stride: recorded frames per learned step in their trajectories.
        request: JSON-able description of where the frames come from (stored in
            ``rollout.h5`` and compared on resume).
        dataset: the dataset they come from: each rank coarse-grains only its share of it.
        prepared: or the systems themselves, already coarse-grained.
    """

    names: list[str]
    stride: int
    request: dict[str, Any]
    dataset: TrajectoryDataset | None = None
    prepared: tuple[CGSystem, ...] = ()

    @classmethod
    def from_dataset(cls, loaded: LoadedRun, data: str | os.PathLike,
                     systems: Sequence[str] | None = None) -> RolloutStart:
        """``systems`` of dataset ``data`` (default: the run's test split when ``data`` is
        the dataset it was trained on, else all), starting ``data.dilation`` frames apart."""
        dataset = load_dataset(data)
        if systems is not None:
            _check_systems(systems, dataset)
        names = list(systems) if systems is not None else _default_systems(loaded, dataset)
        return cls(names, loaded.config.data.dilation,
                   {"data": str(Path(dataset.path).resolve())}, dataset=dataset)

    @classmethod
    def from_system(cls, system: CGSystem, stride: int, request: dict[str, Any]
                    ) -> RolloutStart:
        """One coarse-grained ``system`` whose frames are ``stride`` apart per learned step."""
        return cls([system.name], stride, request, prepared=(system,))

    @property
    def dataset_hash(self) -> str | None:
        """Content hash of the dataset the systems come from (``None``: none)."""
        return self.dataset.content_hash if self.dataset is not None else None

    def coarse_grain(self, names: list[str], loaded: LoadedRun) -> list[CGSystem]:
        """The CG systems ``names``, mapped with the run's CG settings and encoded with its
        type vocabulary."""
        if self.dataset is None:
            return [s for s in self.prepared if s.name in names]
        return prepare_systems(self.dataset, CGSettings.from_config(loaded.config.data),
                               loaded.simulator.vocabulary, names)


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
    if Path(loaded.metadata.dataset or "").resolve() != Path(dataset.path).resolve():
        return dataset.names
    if not loaded.metadata.test:
        split = loaded.config.data.split
        raise ConfigError(
            f"--systems: the run of {loaded.checkpoint} has no test systems "
            f"(data.split {list(split)} over {len(dataset)} systems), and rolling out the "
            "systems it was trained on would say nothing about held-out ones; name the "
            "systems with --systems")
    return list(loaded.metadata.test)


@contextmanager
def rollout_session(out: Path, n_steps: int, options: RolloutOptions
                    ) -> Iterator[DistributedContext]:
    """Check ``options``, then hold the rollout's process group (one process, or this rank of
    ``torchrun``), its claim on ``out`` (rank 0) and Ctrl-C/SIGTERM handling while the body
    loads, starts and executes the rollout."""
    options.check(out, n_steps)
    ctx = distributed_context(resolve_device(options.device))
    try:
        if options.resume and ctx.world > 1:
            raise ConfigError("--resume: a rollout under torchrun cannot be resumed; run the "
                              "rollout in one process to make it resumable")
        claim = (claim_output(out, "rollout", resume=options.resume, overwrite=options.overwrite)
                 if ctx.is_main else nullcontext())
        with interruptible(), claim:
            yield ctx
    finally:
        ctx.close()


def execute(
    loaded: LoadedRun, start: RolloutStart, out: str | os.PathLike, n_steps: int,
    options: RolloutOptions, ctx: DistributedContext,
) -> Path:
    """Roll ``loaded`` out from ``start`` for ``n_steps`` learned steps into ``out`` (inside
    :func:`rollout_session`); returns ``out``."""
    out = Path(out)
    settings = options.resolved_settings(loaded.config.rollout)
    request = json.loads(json.dumps({
        "checkpoint": str(loaded.checkpoint), "checkpoint_step": loaded.metadata.step,
        **start.request, "systems": start.names, "settings": dataclasses.asdict(settings),
        "save_every": options.save_every, "start_frame": options.start_frame,
        "seed": options.seed, "dtype": str(options.dtype).removeprefix("torch."),
        "device": ctx.device.type,
    }))
    job = RolloutJob(
        run=loaded.run, out=out, n_steps=n_steps, config=loaded.config,
        metadata=loaded.metadata, settings=settings, systems=start.names, stride=start.stride,
        start_frame=options.start_frame, save_every=options.save_every, seed=options.seed,
        request=request, dataset_hash=start.dataset_hash, command=tuple(options.command),
        compile=options.compile, show_progress=options.show_progress and ctx.is_main,
        flush_seconds=options.flush_seconds)
    state = resume_state(job) if options.resume else None
    if state is not None and state.status == COMPLETE and state.step == n_steps:
        finish(job)
        return out
    simulator = loaded.simulator
    mine = job.systems[ctx.rank :: ctx.world]
    cg_systems = start.coarse_grain(mine, loaded) if mine else []
    if simulator.requires_temperature:
        require_temperatures(cg_systems, f"rollout of run {loaded.run}")
    batch = (start_batch(cg_systems, simulator.history, start.stride, options.start_frame,
                         options.dtype).to(ctx.device) if mine else None)
    generator = torch.Generator(device=ctx.device)
    generator.manual_seed(options.seed + ctx.rank)
    if ctx.world == 1:
        stream(job, simulator, cg_systems, batch, generator, state)
    else:
        roll_out_ranks(job, simulator, cg_systems, batch, generator, ctx)
    return out


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
    ``settings=...``), say how; ``out`` is claimed as a rollout
    (:func:`~eqcg.runtime.outputs.claim_output`). Returns the output directory. Saved frames
    stream into ``out/rollout.h5`` in chunks at least ``flush_seconds`` apart (and at the end,
    on failure and on interruption); ``resume=True`` continues the rollout there, with the same
    arguments, up to ``n_steps`` (which may exceed the original). When a system blows up, the
    frames before it are kept and :class:`~eqcg.simulation.rollout.RolloutFailure` is raised;
    Ctrl-C or SIGTERM raise :class:`~eqcg.runtime.interrupt.Interrupted` after the last chunk is
    written. Under ``torchrun`` the systems are split across ranks (rank ``r`` takes every
    ``world``-th) and rank 0 writes them all at the end (not resumable).
    """
    options = dataclasses.replace(options or RolloutOptions(), **changes)
    out = Path(out)
    with rollout_session(out, n_steps, options) as ctx:
        loaded = LoadedRun.load(run, options, ctx.device)
        start = RolloutStart.from_dataset(loaded, data, systems)
        return execute(loaded, start, out, n_steps, options, ctx)


__all__ = ["LoadedRun", "RolloutOptions", "RolloutStart", "execute", "rollout_session",
           "run_rollout", "start_batch"]
