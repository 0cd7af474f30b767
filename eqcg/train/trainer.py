"""The training loop: single process, or DistributedDataParallel under ``torchrun``.

Every random choice of a step (which windows, history noise, score noise levels) is drawn from
generators seeded by ``(seed, step)``, so ``--resume`` continues exactly as an uninterrupted run
would. Under ``torchrun`` each rank takes its share of the same global batch, DDP averages
gradients, and rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from eqcg.arguments import at_least, resolve_device
from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, config_from_dict, save_config
from eqcg.data.store import dataset_file, load_dataset
from eqcg.distributed import DistributedContext, distributed_context
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import CGSystem, TypeVocabulary, prepare_systems
from eqcg.graphs.windows import WindowDataset, split_systems
from eqcg.interrupt import Interrupted, interruptible, signal_of, uninterrupted
from eqcg.models.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST,
    build_simulator,
    check_same_run,
    load_checkpoint,
    model_state,
    save_checkpoint,
)
from eqcg.models.registry import check_variant
from eqcg.models.simulator import Simulator
from eqcg.run_info import write_run_info
from eqcg.train.losses import LossTerms, compute_losses

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
            "data.cg_level for several beads per molecule", stacklevel=4,
        )


def _check_resume(
    state: dict, config: Config, data: Path, run_dir: Path, where: Path, force_data: bool
) -> None:
    """Refuse a resume whose config or dataset is not the run's (before anything is written)."""
    stored = config_from_dict(state["config"], where=str(where))
    check_same_run(stored, config, str(where), "the config of --resume",
                   f"start a new run with another --out than {run_dir}")
    trained_on = state.get("metadata", {}).get("dataset")
    requested = dataset_file(data).resolve()
    if trained_on and Path(trained_on).resolve() != requested and not force_data:
        raise ConfigError(
            f"--resume: {run_dir} was trained on {trained_on}, not {requested}; pass "
            "--force-data (force_data=True) to continue training on other data"
        )


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
    show_progress: bool = True,
    command: Sequence[str] = (),
) -> TrainResult:
    """Train a simulator on the dataset at ``data``; write logs and checkpoints to ``run_dir``.

    Args:
        config: validated run configuration.
        data: dataset directory (or its ``dataset.h5``).
        run_dir: output directory (``config.yaml``, ``run.json``, ``metrics.csv``,
            ``tensorboard/``, ``checkpoints/{last,best}.pt``).
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
        show_progress: draw the progress bar (rank 0).
        command: the command line, recorded in ``run.json``.

    Ctrl-C and SIGTERM (preemption) write ``last.pt`` and raise
    :class:`~eqcg.interrupt.Interrupted` saying the step reached.
    """
    check_variant(config.model, "config")
    if max_steps is not None:
        at_least("max_steps (--max-steps)", max_steps, 1)
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, max_steps=max_steps)
        )
    if stop_after is not None:
        at_least("stop_after (--stop-after)", stop_after, 0)
    ctx = distributed_context(resolve_device(device))
    try:
        with interruptible():
            return _train(config, Path(data), Path(run_dir), stop_after, resume, force_data,
                          ctx, dtype, show_progress, command)
    finally:
        ctx.close()


def _train(
    config: Config, data: Path, run_dir: Path, stop_after: int | None, resume: bool,
    force_data: bool, ctx: DistributedContext, dtype: torch.dtype, show_progress: bool,
    command: Sequence[str],
) -> TrainResult:
    device, seed = ctx.device, config.train.seed
    torch.manual_seed(seed)
    last_path = run_dir / CHECKPOINT_DIR / LAST
    if resume and not last_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {last_path}")
    if not resume and last_path.exists():
        raise ConfigError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out"
        )
    if resume:
        state = load_checkpoint(last_path, map_location=device)
        _check_resume(state, config, data, run_dir, last_path, force_data)

    dataset = load_dataset(data)
    train_names, val_names, test_names = split_systems(dataset.names, config.data.split,
                                                       config.data.split_seed)
    settings = CGSettings.from_config(config.data)
    if resume:
        simulator, _ = build_simulator(state, str(last_path))
        vocabulary = simulator.vocabulary
    else:
        vocabulary = TypeVocabulary.from_systems(dataset.systems)
    train_systems = prepare_systems(dataset, settings, vocabulary, train_names)
    _warn_single_beads(train_systems, config.data.cg_level)
    val_systems = prepare_systems(dataset, settings, vocabulary, val_names or train_names)
    # the pushforward term needs one more history frame than the model sees (train.losses)
    windows = WindowDataset(train_systems, config.data.history + int(config.train.pushforward),
                            config.data.dilation, config.data.stride, dtype)
    val_windows = WindowDataset(val_systems, config.data.history, config.data.dilation, 1, dtype)
    velocity_scale, acceleration_scale = _scales(train_systems, config.data.dilation)
    metadata = {
        "dataset": str(dataset.path),
        "units": dataset.units,
        "frame_interval": float(train_systems[0].time[1] - train_systems[0].time[0]),
        "split": {"train": train_names, "val": val_names, "test": test_names},
    }

    if not resume:
        simulator = Simulator(config.model, config.score, vocabulary, config.data.history,
                              velocity_scale, acceleration_scale)
    simulator = simulator.to(device=device, dtype=dtype)
    module = ctx.wrap(_LossModule(simulator))
    optimizer = torch.optim.Adam(simulator.parameters(), lr=config.train.lr)
    horizon = config.train.max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: config.train.lr_decay ** (min(done, horizon) / horizon)
    )
    step, best_val = 0, math.inf
    if resume:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best_val = int(state["step"]), float(state["best_val_nll"])

    log = None
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_FILE)
        write_run_info(run_dir, config.to_dict(), seed, command, extra={"world_size": ctx.world})
        log = _MetricsLog(run_dir, step)

    def checkpoint(path: Path, full: bool) -> None:
        state = model_state(simulator, config, {**metadata, "step": step, "val_nll": best_val})
        if full:
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                         step=step, best_val_nll=best_val)
        save_checkpoint(path, state)

    window_beads = windows.beads
    bar = tqdm(total=config.train.max_steps, initial=step, desc="train", unit="step",
               disable=not (show_progress and ctx.is_main), dynamic_ncols=True)
    started = time.perf_counter()
    last_val: dict[str, float] = {}
    running: dict[str, float] = {}
    end = config.train.max_steps if stop_after is None else min(config.train.max_steps, stop_after)
    try:
        if log is not None and step == 0:
            last_val = validate(simulator, val_windows, config, device)
            log.write(0, "val", last_val, config.train.lr, 0.0)
        while step < end:
            indices = within_bead_budget(
                step_windows(step, len(windows), config.train.batch_size * ctx.world, seed,
                             ctx.rank, ctx.world),
                window_beads, config.train.max_beads)
            batch = _batch(windows, indices, device)
            generator = _step_generator(seed, _TRAIN_STREAM, step, ctx.rank, device)
            terms = module(batch, generator, config)
            loss = terms["total"]
            if not torch.isfinite(loss):
                raise DataError(
                    f"step {step}: training loss is {float(loss)}; lower train.lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with uninterrupted():  # parameters, optimizer and step change together
                torch.nn.utils.clip_grad_norm_(simulator.parameters(), config.train.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
            values = LossTerms(**terms).as_floats()
            running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in values.items()}
            bar.set_postfix(nll=f"{running['nll']:.3f}", score=f"{running['score']:.3f}")
            bar.update()
            elapsed = time.perf_counter() - started
            lr = scheduler.get_last_lr()[0]
            if log is not None and step % config.train.log_every == 0:
                log.write(step, "train", values, lr, elapsed)
            final = step == config.train.max_steps
            if log is not None and (step % config.train.val_every == 0 or final):
                last_val = validate(simulator, val_windows, config, device)
                log.write(step, "val", last_val, lr, elapsed)
                if last_val["nll"] < best_val:
                    best_val = last_val["nll"]
                    checkpoint(run_dir / CHECKPOINT_DIR / BEST, full=False)
            if log is not None and step % config.train.checkpoint_every == 0:
                checkpoint(last_path, full=True)
    except KeyboardInterrupt as exc:
        bar.close()
        if log is not None:
            checkpoint(last_path, full=True)
            log.close()
        raise Interrupted(
            f"{str(exc) or 'interrupted'} at step {step} of {config.train.max_steps}; {last_path} "
            "holds that step: continue with --resume", signal_of(exc)
        ) from None
    if log is not None and (step == 0 or step % config.train.checkpoint_every != 0):
        checkpoint(last_path, full=True)
    bar.close()
    if log is not None:
        log.close()
    return TrainResult(run_dir, step, best_val, last_val, simulator)


