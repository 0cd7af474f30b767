"""The training loop: single process, or DistributedDataParallel under ``torchrun``.

Every random choice of a step (which windows, history noise, score noise levels) is drawn from
generators seeded by ``(seed, step)``, so ``--resume`` continues exactly as an uninterrupted run
would. Under ``torchrun`` each rank takes its share of the same global batch, DDP averages
gradients, and rank 0 alone logs and writes checkpoints.

:func:`train` checks its arguments into a :class:`_Job` (what was asked) and runs the stages in
order: ``_resume_state`` (the checkpoint to continue, checked against the config and dataset),
``_prepare_data`` (split, coarse-grain, cut windows, velocity/acceleration scales),
``_start_run`` (model, optimiser and schedule into a :class:`_Run`; rank 0 writes the config and
``run.json`` and opens ``metrics.csv``), ``_run_steps`` (``_train_step``, then ``_after_step``:
logging, validation and ``last.pt`` at their cadence) and ``_finish`` (final ``last.pt``, also
on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, config_from_dict, save_config
from eqcg.data.store import dataset_file, load_dataset
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import (
    CGSystem,
    TypeVocabulary,
    prepare_systems,
    require_temperatures,
)
from eqcg.graphs.windows import WindowDataset, split_of
from eqcg.models.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST,
    RunMetadata,
    build_simulator,
    check_same_run,
    load_checkpoint,
    model_state,
    save_checkpoint,
)
from eqcg.models.registry import check_variant
from eqcg.models.simulator import Simulator
from eqcg.runtime.arguments import at_least, resolve_device
from eqcg.runtime.distributed import DistributedContext, distributed_context
from eqcg.runtime.interrupt import Interrupted, interruptible, signal_of, uninterrupted
from eqcg.runtime.outputs import check_output, claim_output
from eqcg.runtime.run_info import write_run_info
from eqcg.training.losses import LossTerms, compute_losses

METRICS_CSV = "metrics.csv"
_CSV_FIELDS = ("step", "split", "total", "nll", "score", "rg", "mse", "mse_zero", "pushforward",
               "lr", "seconds")


@dataclass
class TrainResult:
    """Where a run wrote its outputs, how it ended, and the trained simulator (this rank's)."""

    run_dir: Path
    step: int
    best_val_nll: float
    last_val: dict[str, float]
    simulator: Simulator


class _LossModule(nn.Module):
    """Wraps the simulator so that DDP sees the whole loss computation as one forward."""

    def __init__(self, simulator: Simulator):
        super().__init__()
        self.simulator = simulator

    def forward(self, batch: Batch, generator: torch.Generator, config: Config) -> dict:
        terms = compute_losses(
            self.simulator, batch,
            noise_begin=config.train.noise_begin, noise_end=config.train.noise_end,
            pushforward=config.train.pushforward,
            score_weight=config.train.score_weight, property_weight=config.train.property_weight,
            generator=generator,
        )
        return vars(terms)


def _scales(systems: list[CGSystem], dilation: int) -> tuple[float, float]:
    """RMS per-component velocity and acceleration per learned step over training systems."""
    sq_v, sq_a, count_v, count_a = 0.0, 0.0, 0, 0
    for system in systems:
        x = system.bead_positions[::dilation]
        v = np.diff(x, axis=0)
        a = np.diff(x, n=2, axis=0)
        sq_v, count_v = sq_v + float((v**2).sum()), count_v + v.size
        sq_a, count_a = sq_a + float((a**2).sum()), count_a + a.size
    if count_a == 0:
        raise DataError("training trajectories are too short to estimate acceleration scales")
    return math.sqrt(sq_v / count_v) or 1.0, math.sqrt(sq_a / count_a) or 1.0


def step_windows(
    step: int, n_windows: int, global_batch: int, seed: int, rank: int = 0, world: int = 1
) -> np.ndarray:
    """Window indices this rank trains on at ``step`` (epochs of seeded permutations)."""
    global_batch = min(global_batch, n_windows)
    per_epoch = n_windows // global_batch
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_windows)
    return order[position * global_batch : (position + 1) * global_batch][rank::world]


def within_bead_budget(indices: np.ndarray, beads: np.ndarray, max_beads: int) -> np.ndarray:
    """The longest prefix of ``indices`` whose windows hold at most ``max_beads`` beads in all,
    and never fewer than one window (``max_beads`` 0: all of ``indices``).

    Args:
        indices: window indices of a step, in their drawn order.
        beads: ``(n_windows,)`` beads of every window (:attr:`WindowDataset.beads`).
    """
    if max_beads == 0:
        return indices
    total = np.cumsum(beads[indices])
    return indices[: max(int(np.searchsorted(total, max_beads, side="right")), 1)]


_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1


def _step_generator(
    seed: int, stream: int, step: int, rank: int, device: torch.device
) -> torch.Generator:
    """A generator on ``device`` determined by ``(seed, stream, step, rank)`` alone."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.default_rng([seed, stream, step, rank]).integers(2**62)))
    return generator


def _batch(dataset: WindowDataset, indices: Sequence[int], device: torch.device) -> Batch:
    return Batch.from_data_list([dataset[int(i)] for i in indices]).to(device)


@torch.no_grad()
def validate(
    simulator: Simulator, dataset: WindowDataset, config: Config, device: torch.device
) -> dict[str, float]:
    """Mean loss terms over ``train.val_windows`` evenly spaced windows, no augmentation."""
    simulator.eval()
    n = len(dataset)
    chosen = np.unique(np.linspace(0, n - 1, min(n, config.train.val_windows)).astype(int))
    sums: dict[str, float] = {}
    for start in range(0, len(chosen), config.train.batch_size):
        indices = chosen[start : start + config.train.batch_size]
        terms = compute_losses(
            simulator, _batch(dataset, indices, device), noise_begin=0.0, noise_end=0.0,
            score_weight=config.train.score_weight, property_weight=config.train.property_weight,
            generator=_step_generator(config.train.seed, _VALIDATION_STREAM, start, 0, device),
        )
        for name, value in terms.as_floats().items():
            sums[name] = sums.get(name, 0.0) + value * len(indices)
    simulator.train()
    return {name: value / len(chosen) for name, value in sums.items()}


class _MetricsLog:
    """CSV + TensorBoard log of training and validation losses (rank 0 only)."""

    def __init__(self, run_dir: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.csv_path = run_dir / METRICS_CSV
        kept: list[dict[str, str]] = []
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)

    def write(
        self, step: int, split: str, values: dict[str, float], lr: float, seconds: float
    ) -> None:
        row = {"step": step, "split": split, "lr": lr, "seconds": round(seconds, 3)}
        row.update({k: values[k] for k in _CSV_FIELDS if k in values})
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=_CSV_FIELDS).writerow(row)
        for name, value in values.items():
            self.tensorboard.add_scalar(f"{split}/{name}", value, step)
        self.tensorboard.add_scalar("lr", lr, step)

    def close(self) -> None:
        self.tensorboard.close()


def _warn_single_beads(systems: list[CGSystem], cg_level: int) -> None:
    """Warn when ``cg_level`` leaves every molecule METIS would split as a single bead."""
    sizes, beads = [], []
    for system in systems:
        mapping = system.mapping
        atoms_per_bead = np.bincount(mapping.atom_to_bead, minlength=mapping.n_beads)
        sizes.append(np.bincount(mapping.bead_molecule, weights=atoms_per_bead).astype(int))
        beads.append(np.bincount(mapping.bead_molecule))
    size, bead = np.concatenate(sizes), np.concatenate(beads)
    split = size > systems[0].mapping.settings.whole_molecule_max_atoms
    if split.any() and (bead[split] == 1).all():
        warnings.warn(
            f"data.cg_level={cg_level} turns every molecule into a single bead: the training "
            f"systems' molecules have {size[split].min()}-{size[split].max()} atoms; lower "
            "data.cg_level for several beads per molecule", stacklevel=5,
        )


@dataclass(frozen=True, kw_only=True)
class _Job:
    """What :func:`train` was asked to do: its config, dataset, output directory and options."""

    config: Config
    data: Path
    run_dir: Path
    stop_after: int | None
    resume: bool
    force_data: bool
    dtype: torch.dtype
    compile: bool
    show_progress: bool
    command: Sequence[str]

    @property
    def last_path(self) -> Path:
        """The run's ``last.pt``: written by every stop, read by ``resume``."""
        return self.run_dir / CHECKPOINT_DIR / LAST

    @property
    def end(self) -> int:
        """The step this call stops at: ``train.max_steps``, or ``stop_after`` when earlier."""
        max_steps = self.config.train.max_steps
        return max_steps if self.stop_after is None else min(max_steps, self.stop_after)


@dataclass(frozen=True, kw_only=True)
class _Data:
    """The windows a run trains and validates on, with what the model and checkpoints need."""

    vocabulary: TypeVocabulary
    windows: WindowDataset
    window_beads: np.ndarray  # (n_windows,) beads of every training window
    val_windows: WindowDataset
    velocity_scale: float
    acceleration_scale: float
    temperature_scale: float  # mean temperature of the training systems (1 without them)
    metadata: RunMetadata  # dataset, units, frame interval and split, stored in checkpoints


@dataclass(kw_only=True)
class _Run:
    """A run in progress: the model, its optimiser and schedule, and how far it has come."""

    job: _Job
    ctx: DistributedContext
    simulator: Simulator
    module: nn.Module  # the loss computation, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    metadata: RunMetadata
    log: _MetricsLog | None  # rank 0 only: rank 0 alone logs and writes checkpoints
    step: int
    best_val: float
    last_val: dict[str, float] = field(default_factory=dict)

    def checkpoint(self, name: str, *, full: bool) -> None:
        """Write ``checkpoints/<name>``; ``full`` adds what ``resume`` needs."""
        state = model_state(self.simulator, self.job.config, dataclasses.replace(
            self.metadata, step=self.step, val_nll=self.best_val))
        if full:
            state.update(optimizer=self.optimizer.state_dict(),
                         scheduler=self.scheduler.state_dict(),
                         step=self.step, best_val_nll=self.best_val)
        save_checkpoint(self.job.run_dir / CHECKPOINT_DIR / name, state)


def train(
    config: Config,
    data: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    max_steps: int | None = None,
    stop_after: int | None = None,
    resume: bool = False,
    force_data: bool = False,
    device: str = "auto",
    dtype: torch.dtype = torch.float32,
    compile: bool = False,
    show_progress: bool = True,
    command: Sequence[str] = (),
) -> TrainResult:
    """Train a simulator on the dataset at ``data``; write logs and checkpoints to ``run_dir``.

    Args:
        config: validated run configuration.
        data: dataset directory (or its ``dataset.h5``).
        run_dir: output directory (``config.yaml``, ``run.json``, ``metrics.csv``,
            ``tensorboard/``, ``checkpoints/{last,best}.pt``), claimed as a run
            (:func:`~eqcg.runtime.outputs.claim_output`): one holding ``last.pt`` needs ``resume``.
        max_steps: overrides ``config.train.max_steps`` (the length of the run and of its
            learning-rate schedule).
        stop_after: stop once this many steps are done, writing ``last.pt`` as an interruption
            would (for time-limited jobs: continue later with ``resume=True``); 0 writes the
            initial state.
        resume: continue from ``run_dir/checkpoints/last.pt``. The config must be the run's
            except for the keys in :data:`~eqcg.models.checkpoint.RESUMABLE_KEYS` (budget and
            logging), and the dataset the one it was trained on unless ``force_data``.
        force_data: let ``resume`` continue on another dataset than the run's.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
        dtype: float dtype of model and data.
        compile: train with the dynamics and score networks compiled by ``torch.compile``
            (:meth:`~eqcg.models.simulator.Simulator.compile_networks`; the checkpoints are
            those of the eager model). Recorded in ``run.json``.
        show_progress: draw the progress bar (rank 0).
        command: the command line, recorded in ``run.json``.

    Ctrl-C and SIGTERM (preemption) write ``last.pt`` and raise
    :class:`~eqcg.runtime.interrupt.Interrupted` saying the step reached.
    """
    config = dataclasses.replace(config, model=check_variant(config.model, config.source))
    if max_steps is not None:
        at_least("max_steps (--max-steps)", max_steps, 1)
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, max_steps=max_steps)
        )
    if stop_after is not None:
        at_least("stop_after (--stop-after)", stop_after, 0)
    job = _Job(config=config, data=Path(data), run_dir=Path(run_dir), stop_after=stop_after,
               resume=resume, force_data=force_data, dtype=dtype, compile=compile,
               show_progress=show_progress, command=command)
    check_output(job.run_dir, "run", resume=resume)
    ctx = distributed_context(resolve_device(device))
    try:
        claim = claim_output(job.run_dir, "run", resume=resume) if ctx.is_main else nullcontext()
        with interruptible(), claim:
            return _train(job, ctx)
    finally:
        ctx.close()


def _train(job: _Job, ctx: DistributedContext) -> TrainResult:
    """The stages of a run, in order: resume state, data, model and outputs, steps, finish."""
    torch.manual_seed(job.config.train.seed)
    state = _resume_state(job, ctx.device)
    resumed = None if state is None else build_simulator(state, str(job.last_path))[0]
    data = _prepare_data(job, None if resumed is None else resumed.vocabulary)
    run = _start_run(job, ctx, data, state, resumed)
    bar = tqdm(total=job.config.train.max_steps, initial=run.step, desc="train", unit="step",
               disable=not (job.show_progress and ctx.is_main), dynamic_ncols=True)
    try:
        _run_steps(run, data, bar)
    except KeyboardInterrupt as exc:
        _finish(run, bar, interrupted=True)
        raise Interrupted(
            f"{str(exc) or 'interrupted'} at step {run.step} of {job.config.train.max_steps}; "
            f"{job.last_path} holds that step: continue with --resume", signal_of(exc)
        ) from None
    except BaseException:
        bar.close()  # what went wrong then prints on a line of its own
        raise
    _finish(run, bar, interrupted=False)
    return TrainResult(job.run_dir, run.step, run.best_val, run.last_val, run.simulator)


def _resume_state(job: _Job, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint a resumed run continues from (None for a new run), checked to be the
    run's config and dataset before anything is written."""
    where = job.last_path
    if not job.resume:  # (a finished run is refused by its claim: eqcg.runtime.outputs)
        return None
    if not where.exists():
        raise ConfigError(f"--resume: no checkpoint at {where}")
    state = load_checkpoint(where, map_location=device)
    stored = config_from_dict(state["config"], where=str(where))
    check_same_run(stored, job.config, str(where), "the config of --resume",
                   f"start a new run with another --out than {job.run_dir}")
    trained_on = RunMetadata.from_dict(state.get("metadata", {}), str(where)).dataset
    requested = dataset_file(job.data).resolve()
    if trained_on and Path(trained_on).resolve() != requested and not job.force_data:
        raise ConfigError(
            f"--resume: {job.run_dir} was trained on {trained_on}, not {requested}; pass "
            "--force-data (force_data=True) to continue training on other data"
        )
    return state


def _prepare_data(job: _Job, vocabulary: TypeVocabulary | None) -> _Data:
    """Split the dataset, coarse-grain its systems and cut them into training and validation
    windows; ``vocabulary`` None learns the types from the dataset (a new run)."""
    config = job.config
    dataset = load_dataset(job.data)
    train_names, val_names, test_names = split_of(
        dataset.names, [s.n_atoms for s in dataset.systems], config.data)
    settings = CGSettings.from_config(config.data)
    if vocabulary is None:
        vocabulary = TypeVocabulary.from_systems(dataset.systems)
    train_systems = prepare_systems(dataset, settings, vocabulary, train_names)
    _warn_single_beads(train_systems, config.data.cg_level)
    if not val_names:
        warnings.warn(
            f"no validation systems (data.split {list(config.data.split)} over "
            f"{len(dataset)} systems): best.pt is chosen by the NLL on the training systems, "
            "which rewards overfitting; give data.split a validation fraction (and the dataset "
            "enough systems for it)", stacklevel=3)
    val_systems = prepare_systems(dataset, settings, vocabulary, val_names or train_names)
    # the pushforward term needs one more history frame than the model sees (train.losses)
    windows = WindowDataset(train_systems, config.data.history + int(config.train.pushforward),
                            config.data.dilation, config.data.stride, job.dtype)
    velocity_scale, acceleration_scale = _scales(train_systems, config.data.dilation)
    temperature_scale = 1.0
    if config.model.temperature_input:
        require_temperatures(train_systems + val_systems, f"dataset {dataset.path}")
        temperature_scale = float(np.mean([system.temperature for system in train_systems]))
    return _Data(
        vocabulary=vocabulary,
        windows=windows,
        window_beads=windows.beads,
        val_windows=WindowDataset(val_systems, config.data.history, config.data.dilation, 1,
                                  job.dtype),
        velocity_scale=velocity_scale,
        acceleration_scale=acceleration_scale,
        temperature_scale=temperature_scale,
        metadata=RunMetadata(
            dataset=str(dataset.path), units=dataset.units,
            frame_interval=float(train_systems[0].time[1] - train_systems[0].time[0]),
            train=tuple(train_names), val=tuple(val_names), test=tuple(test_names)),
    )


def _start_run(
    job: _Job, ctx: DistributedContext, data: _Data, state: dict[str, Any] | None,
    resumed: Simulator | None,
) -> _Run:
    """Build the model, optimiser and schedule (restored from ``state`` when resuming); rank 0
    writes the run's config and ``run.json`` and opens the metrics log."""
    config = job.config
    simulator = resumed or Simulator(config.model, config.score, data.vocabulary,
                                     config.data.history, data.velocity_scale,
                                     data.acceleration_scale, data.temperature_scale)
    simulator = simulator.to(device=ctx.device, dtype=job.dtype)
    if job.compile:
        simulator.compile_networks()
    module = ctx.wrap(_LossModule(simulator))
    optimizer = torch.optim.Adam(simulator.parameters(), lr=config.train.lr)
    horizon = config.train.max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: config.train.lr_decay ** (min(done, horizon) / horizon)
    )
    step, best_val = 0, math.inf
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best_val = int(state["step"]), float(state["best_val_nll"])
    log = None
    if ctx.is_main:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, job.run_dir / CONFIG_FILE)
        write_run_info(job.run_dir, config.to_dict(), config.train.seed, job.command,
                       extra={"world_size": ctx.world, "compile": job.compile})
        log = _MetricsLog(job.run_dir, step)
    return _Run(job=job, ctx=ctx, simulator=simulator, module=module, optimizer=optimizer,
                scheduler=scheduler, metadata=data.metadata, log=log, step=step,
                best_val=best_val)


def _run_steps(run: _Run, data: _Data, bar: tqdm) -> None:
    """Train until :attr:`_Job.end`; a new run first validates its initial state."""
    started = time.perf_counter()
    if run.log is not None and run.step == 0:
        run.last_val = validate(run.simulator, data.val_windows, run.job.config, run.ctx.device)
        run.log.write(0, "val", run.last_val, run.job.config.train.lr, 0.0)
    running: dict[str, float] = {}
    while run.step < run.job.end:
        values = _train_step(run, data)
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in values.items()}
        bar.set_postfix(nll=f"{running['nll']:.3f}", score=f"{running['score']:.3f}")
        bar.update()
        if run.log is not None:
            _after_step(run, data, values, time.perf_counter() - started)


def _train_step(run: _Run, data: _Data) -> dict[str, float]:
    """One optimisation step on this rank's share of the step's windows; its loss terms."""
    config, ctx, seed = run.job.config, run.ctx, run.job.config.train.seed
    indices = within_bead_budget(
        step_windows(run.step, len(data.windows), config.train.batch_size * ctx.world, seed,
                     ctx.rank, ctx.world),
        data.window_beads, config.train.max_beads)
    batch = _batch(data.windows, indices, ctx.device)
    generator = _step_generator(seed, _TRAIN_STREAM, run.step, ctx.rank, ctx.device)
    terms = run.module(batch, generator, config)
    loss = terms["total"]
    if not torch.isfinite(loss):
        raise DataError(
            f"step {run.step}: training loss is {float(loss)}; lower train.lr or check the data"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with uninterrupted():  # parameters, optimizer and step change together
        torch.nn.utils.clip_grad_norm_(run.simulator.parameters(), config.train.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.step += 1
    return LossTerms(**terms).as_floats()


def _after_step(run: _Run, data: _Data, values: dict[str, float], elapsed: float) -> None:
    """Rank 0 after a step: log, validate (keeping ``best.pt``) and write ``last.pt``, each at
    its ``train.*_every`` cadence; the last step of the run always validates."""
    assert run.log is not None
    train, step = run.job.config.train, run.step
    lr = run.scheduler.get_last_lr()[0]
    if step % train.log_every == 0:
        run.log.write(step, "train", values, lr, elapsed)
    if step % train.val_every == 0 or step == train.max_steps:
        run.last_val = validate(run.simulator, data.val_windows, run.job.config, run.ctx.device)
        run.log.write(step, "val", run.last_val, lr, elapsed)
        if run.last_val["nll"] < run.best_val:
            run.best_val = run.last_val["nll"]
            run.checkpoint(BEST, full=False)
    if step % train.checkpoint_every == 0:
        run.checkpoint(LAST, full=True)


def _finish(run: _Run, bar: tqdm, *, interrupted: bool) -> None:
    """Close the progress bar; rank 0 writes ``last.pt`` (after an interruption always, else
    unless the step loop just did) and closes the log."""
    bar.close()
    if run.log is None:
        return
    if interrupted or run.step == 0 or run.step % run.job.config.train.checkpoint_every != 0:
        run.checkpoint(LAST, full=True)
    run.log.close()
