"""Distil a run's score network into one that refines a step in a few score calls.

The teacher is a trained run refined by the ``geometric`` level-to-level sampler on its
``score.n_levels`` levels (10 calls per step by default). The student starts as a copy of the
teacher's score network and learns to take ``levels`` steps on the ladder
:func:`~eqcg.simulation.langevin.distilled_ladder` (the teacher's geometric ladder with
``levels + 1`` levels, less the smallest), each standing for the teacher's steps between two of
its levels (progressive distillation, Salimans & Ho 2022, in one stage):

* a training sample at the student level ``a`` is the true next frame plus ``a z`` (the
  denoising-score-matching perturbation); the teacher descends from it through its own levels
  between ``a`` and the next student level ``b`` (to its denoised output after the last);
* the student's step ``x + (1 - b²/a²) a² s(x, a)`` (the level-to-level mean) regresses onto
  that descent: with ``f = a s`` the loss is ``0.5 mean ||f - f*||²`` for
  ``f* = (x_teacher - x) / ((1 - b²/a²) a)``. The teacher's descent is random, so the student
  learns its mean;
* the descent's spread around that mean, per component, is measured afterwards from pairs of
  teacher descents from the same start (:func:`draw_variance`) and stored as the run's
  ``distilled_noise``: the noise the distilled sampler adds at each step.

The dynamics and embedding networks are the teacher's, frozen; only the score network trains.
The distilled run is a run like any other (``checkpoints/``, ``config.yaml`` with
``score.distilled_levels`` and ``rollout.schedule: distilled``, ``metrics.csv``, ``run.json``):
``eqcg rollout``, ``evaluate`` and the benchmarks take it as they are.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from eqcg import keys
from eqcg.cg.mapping import CGSettings
from eqcg.config import DISTILLED, Config, save_config
from eqcg.data.store import load_dataset
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import prepare_systems
from eqcg.graphs.windows import WindowDataset
from eqcg.models.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST,
    RunMetadata,
    load_checkpoint,
    load_simulator,
    model_state,
    save_checkpoint,
)
from eqcg.models.gaussian import NoiseFunction, gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.runtime.arguments import at_least, resolve_device
from eqcg.runtime.interrupt import Interrupted, interruptible, signal_of, uninterrupted
from eqcg.runtime.outputs import check_output, claim_output
from eqcg.runtime.run_info import write_run_info
from eqcg.simulation.langevin import (
    ScoreFunction,
    denoise_step,
    descend,
    distilled_ladder,
)
from eqcg.training.trainer import (
    MetricsLog,
    step_generator,
    step_windows,
    window_batch,
    within_bead_budget,
)

_METRICS = ("step", "split", "loss", "floor", "level", "lr", "seconds")
_TRAIN_STREAM, _VALIDATION_STREAM, _CALIBRATION_STREAM = 10, 11, 12
_RELATIVE_TOLERANCE = 1e-4  # levels closer than this (relative) are the same level


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    """What ``eqcg distill`` was asked for (stored in every checkpoint of the distilled run).

    Attributes:
        levels: steps of the distilled sampler (below the teacher's ``score.n_levels``).
        steps: optimisation steps.
        batch_size: windows per step.
        lr: Adam learning rate (decayed 10x over the run).
        seed: seeds every random draw (windows, levels, noise).
        calibration_batches: batches per level that measure the teacher's spread.
        teacher: the teacher's checkpoint file.
    """

    levels: int
    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-4
    seed: int = 0
    calibration_batches: int = 16
    teacher: str = ""


def teacher_levels(model_sigmas: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None
                   ) -> torch.Tensor:
    """``(m,)`` the teacher's ladder from ``a`` down to ``b``: ``a``, the teacher's levels
    strictly between, and ``b`` (``None``: down to the teacher's smallest level)."""
    low = model_sigmas[-1] if b is None else b
    inside = ((model_sigmas < a * (1 - _RELATIVE_TOLERANCE))
              & (model_sigmas > low * (1 + _RELATIVE_TOLERANCE)))
    return torch.cat([a[None], model_sigmas[inside], low[None]])


def teacher_step(score: ScoreFunction, x: torch.Tensor, ladder: torch.Tensor, last: bool,
                 noise: NoiseFunction) -> torch.Tensor:
    """The teacher's geometric descent of ``x (n, 3)`` down ``ladder (m,)``, then its
    denoising step when this is the ``last`` student step."""
    x = descend(score, x, ladder, noise, "geometric")
    if last:
        x = denoise_step(score, x, ladder[-1].expand(x.shape[0]))
    return x


def distillation_target(x: torch.Tensor, x_teacher: torch.Tensor, a: torch.Tensor,
                        b: torch.Tensor | None) -> torch.Tensor:
    """``(n, 3)`` the output ``f* = a s*`` whose level-to-level step from ``a`` to ``b``
    (``None``: 0) lands on ``x_teacher``."""
    shrink = 1.0 if b is None else 1.0 - (b / a) ** 2
    return (x_teacher - x) / (shrink * a)


def distillation_loss(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 mean_beads ||f - f*||²``, the scale of the denoising score-matching loss."""
    return 0.5 * (f - target).pow(2).sum(-1).mean()


def draw_variance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Variance per component of a random quantity from two independent draws of it (``(n,
    3)`` each, the same inputs): ``0.5 mean (first - second)²``, unbiased whatever its mean."""
    return 0.5 * (first - second).pow(2).mean()


@dataclasses.dataclass
class _Context:
    """What every step of a batch shares: the teacher's features and dynamics latent."""

    batch: Batch
    features: torch.Tensor
    latent: torch.Tensor
    last: torch.Tensor

    @classmethod
    def of(cls, teacher: Simulator, batch: Batch) -> _Context:
        with torch.no_grad():
            history = batch[keys.POS_HISTORY]
            features = teacher.embed(batch)
            latent = teacher.predict(batch, history, features).latent
        return cls(batch, features, latent, history[:, -1])

    def score(self, simulator: Simulator) -> ScoreFunction:
        def score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return simulator.score(self.batch, x, self.last, sigma, self.features, self.latent)
        return score


def _level_pair(ladder: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    return ladder[k], (ladder[k + 1] if k + 1 < len(ladder) else None)


def _noisy_targets(teacher: Simulator, context: _Context, ladder: torch.Tensor, k: int,
                   generator: torch.Generator, draws: int) -> tuple[torch.Tensor, list]:
    """A batch's next frames perturbed at student level ``k`` (``(n, 3)``) and ``draws``
    distillation targets of each (independent teacher descents from it)."""
    a, b = _level_pair(ladder, k)
    target_pos = context.batch[keys.TARGET_POS]
    noisy = target_pos + a * torch.randn(target_pos.shape, generator=generator,
                                         dtype=target_pos.dtype, device=target_pos.device)
    levels = teacher_levels(teacher.sigmas, a, b)
    with torch.no_grad():
        targets = [distillation_target(noisy, teacher_step(context.score(teacher), noisy, levels,
                                                           b is None, gaussian_noise(generator)),
                                       a, b)
                   for _ in range(draws)]
    return noisy, targets


def _student_output(student: Simulator, context: _Context, noisy: torch.Tensor,
                    sigma: torch.Tensor) -> torch.Tensor:
    return student.score_times_sigma(context.batch, noisy, context.last,
                                     sigma.expand(noisy.shape[0]), context.features,
                                     context.latent)


def distill(
    run: str | os.PathLike,
    out: str | os.PathLike,
    settings: DistillSettings,
    *,
    data: str | os.PathLike | None = None,
    resume: bool = False,
    device: str = "auto",
    show_progress: bool = True,
    command: Sequence[str] = (),
) -> Path:
    """Distil the score network of the trained ``run`` (its ``best.pt``) into a new run ``out``
    refined by ``settings.levels`` steps (module docstring); returns ``out``.

    Args:
        run: the teacher's run directory or checkpoint file.
        out: the distilled run's directory (``resume`` continues its ``last.pt``).
        settings: what to distil and how.
        data: the dataset (default: the one the teacher was trained on); its training systems
            are the teacher's.
        device: ``auto``, ``cpu``, ``cuda``...

    Ctrl-C and SIGTERM write ``last.pt`` and raise :class:`Interrupted`; ``resume`` continues.
    """
    at_least("levels (--levels)", settings.levels, 1)
    at_least("steps (--steps)", settings.steps, 1)
    at_least("batch_size (--batch-size)", settings.batch_size, 1)
    at_least("calibration_batches (--calibration-batches)", settings.calibration_batches, 1)
    if not (math.isfinite(settings.lr) and settings.lr > 0):
        raise ConfigError(f"lr (--lr) must be finite and > 0, got {settings.lr!r}")
    out = Path(out)
    check_output(out, "run", resume=resume)
    torch_device = resolve_device(device)
    teacher, config, metadata = load_simulator(run, BEST, torch_device)
    where = f"teacher {run}"
    if config.score.distilled_levels:
        raise ConfigError(f"{where}: its score network is distilled already "
                          f"({config.score.distilled_levels} levels); distil the run it came "
                          "from")
    if settings.levels >= config.score.n_levels:
        raise ConfigError(f"--levels {settings.levels}: must be below the teacher's "
                          f"score.n_levels ({config.score.n_levels})")
    settings = dataclasses.replace(settings, teacher=str(Path(run).resolve()))
    student_config = distilled_config(config, settings.levels)
    windows, val_windows = _windows(teacher, config, metadata, data)
    with interruptible(), claim_output(out, "run", resume=resume):
        return _distill(teacher, student_config, metadata, settings, windows, val_windows, out,
                        resume, show_progress, command)


def distilled_config(config: Config, levels: int) -> Config:
    """The teacher's ``config`` with its score network distilled for ``levels`` steps."""
    return dataclasses.replace(
        config,
        score=dataclasses.replace(config.score, distilled_levels=levels),
        rollout=dataclasses.replace(config.rollout, refine=True, schedule=DISTILLED,
                                    refine_levels=levels, refine_start="top"),
    )


def _windows(teacher: Simulator, config: Config, metadata: RunMetadata,
             data: str | os.PathLike | None) -> tuple[WindowDataset, WindowDataset]:
    """Training and validation windows of the teacher's split."""
    path = data if data is not None else metadata.dataset
    if path is None:
        raise ConfigError("the teacher's checkpoint names no dataset: pass --data")
    if not metadata.train:
        raise DataError(f"the teacher's checkpoint records no training systems ({path})")
    dataset = load_dataset(path)
    missing = sorted(set(metadata.train + metadata.val) - set(dataset.names))
    if missing:
        raise DataError(f"{dataset.path}: lacks the teacher's systems {', '.join(missing[:5])}"
                        "; pass the teacher's dataset with --data")
    cg = CGSettings.from_config(config.data)
    train = prepare_systems(dataset, cg, teacher.vocabulary, list(metadata.train))
    val = prepare_systems(dataset, cg, teacher.vocabulary, list(metadata.val or metadata.train))
    history, dilation, dtype = config.data.history, config.data.dilation, teacher.sigmas.dtype
    return (WindowDataset(train, history, dilation, config.data.stride, dtype),
            WindowDataset(val, history, dilation, 1, dtype))


def _student(teacher: Simulator, config: Config) -> Simulator:
    """A copy of ``teacher`` for ``config``: the score network alone trains."""
    student = Simulator(config.model, config.score, teacher.vocabulary, teacher.history)
    state = {**teacher.state_dict(),
             "distilled_noise": torch.zeros(config.score.distilled_levels)}
    student.load_state_dict(state)
    student = student.to(device=teacher.sigmas.device, dtype=teacher.sigmas.dtype)
    for name, parameter in student.named_parameters():
        parameter.requires_grad_(name.startswith("score_network."))
    return student


def _distill(teacher: Simulator, config: Config, metadata: RunMetadata,
             settings: DistillSettings, windows: WindowDataset, val_windows: WindowDataset,
             out: Path, resume: bool, show_progress: bool, command: Sequence[str]) -> Path:
    student = _student(teacher, config)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad],
                                 lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: 0.1 ** (min(done, settings.steps) / settings.steps))
    last_path = out / CHECKPOINT_DIR / LAST
    step = _restore(last_path, settings, student, optimizer, scheduler) if resume else 0
    ladder = distilled_ladder(teacher.sigmas[0], teacher.sigmas[-1], settings.levels)
    save_config(config, out / CONFIG_FILE)
    write_run_info(out, config.to_dict(), settings.seed, command,
                   extra={"distillation": dataclasses.asdict(settings)})
    log = MetricsLog(out, step, _METRICS)

    def save(name: str, *, full: bool) -> None:
        state = model_state(student, config, dataclasses.replace(metadata, step=step))
        state["distillation"] = dataclasses.asdict(settings)
        if full:
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                         step=step)
        save_checkpoint(out / CHECKPOINT_DIR / name, state)

    started = time.perf_counter()
    if step == 0:
        _validate(teacher, student, val_windows, ladder, settings, log, 0, settings.lr, 0.0)
    bar = tqdm(total=settings.steps, initial=step, desc="distill", unit="step",
               disable=not show_progress, dynamic_ncols=True)
    beads = windows.beads
    try:
        while step < settings.steps:
            indices = within_bead_budget(
                step_windows(step, len(windows), settings.batch_size, settings.seed),
                beads, config.train.max_beads)
            device = teacher.sigmas.device
            generator = step_generator(settings.seed, _TRAIN_STREAM, step, 0, device)
            k = int(torch.randint(settings.levels, (1,), generator=generator, device=device))
            context = _Context.of(teacher, window_batch(windows, indices, device))
            noisy, (target,) = _noisy_targets(teacher, context, ladder, k, generator, 1)
            loss = distillation_loss(_student_output(student, context, noisy, ladder[k]), target)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise DataError(f"step {step}: distillation loss is {value}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with uninterrupted():
                torch.nn.utils.clip_grad_norm_(student.score_network.parameters(),
                                               config.train.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
            bar.set_postfix(loss=f"{value:.3f}", level=k)
            bar.update()
            if step % config.train.log_every == 0:
                log.write(step, "train", {"loss": value, "level": k},
                          scheduler.get_last_lr()[0], time.perf_counter() - started)
            if step % config.train.checkpoint_every == 0:
                save(LAST, full=True)
    except KeyboardInterrupt as exc:
        bar.close()
        save(LAST, full=True)
        log.close()
        raise Interrupted(f"{str(exc) or 'interrupted'} at step {step} of {settings.steps}; "
                          f"{last_path} holds that step: continue with --resume",
                          signal_of(exc)) from None
    bar.close()
    _validate(teacher, student, val_windows, ladder, settings, log, step,
              scheduler.get_last_lr()[0], time.perf_counter() - started)
    student.distilled_noise.copy_(_calibrate(teacher, val_windows, ladder, settings))
    save(BEST, full=False)
    save(LAST, full=True)
    log.close()
    return out


def _restore(path: Path, settings: DistillSettings, student: Simulator,
             optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load ``path`` (a distilled run's ``last.pt``) into the student and its optimiser;
    the step it holds. Refused when it was distilled with other settings."""
    if not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}")
    state = load_checkpoint(path, map_location=student.sigmas.device)
    stored = state.get("distillation", {})
    if stored != dataclasses.asdict(settings):
        changed = [f"{key}: {stored.get(key)!r} -> {value!r}"
                   for key, value in dataclasses.asdict(settings).items()
                   if stored.get(key) != value]
        raise ConfigError(f"--resume: {path} was distilled with other settings "
                          f"({'; '.join(changed)}); distil into another --out")
    student.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def _validation_batches(windows: WindowDataset, batch_size: int, n_batches: int
                        ) -> list[np.ndarray]:
    """Up to ``n_batches`` batches of evenly spaced windows."""
    n = len(windows)
    chosen = np.unique(np.linspace(0, n - 1, min(n, batch_size * n_batches)).astype(int))
    return [chosen[i:i + batch_size] for i in range(0, len(chosen), batch_size)]


def _validate(teacher: Simulator, student: Simulator, windows: WindowDataset,
              ladder: torch.Tensor, settings: DistillSettings, log: MetricsLog, step: int,
              lr: float, seconds: float) -> None:
    """Log the distillation loss of every level on the validation windows, and its floor: the
    part no student can remove, half the teacher's own variance around its mean (from two
    descents per sample: ``0.25 E||f*1 - f*2||²``). ``loss - floor`` is the student's error."""
    device = teacher.sigmas.device
    for k in range(settings.levels):
        loss, floor, count = 0.0, 0.0, 0
        for i, indices in enumerate(_validation_batches(windows, settings.batch_size, 4)):
            generator = step_generator(settings.seed, _VALIDATION_STREAM, i, k, device)
            context = _Context.of(teacher, window_batch(windows, indices, device))
            noisy, (first, second) = _noisy_targets(teacher, context, ladder, k, generator, 2)
            with torch.no_grad():
                f = _student_output(student, context, noisy, ladder[k])
            loss += float(distillation_loss(f, first)) * len(indices)
            floor += 0.5 * float(distillation_loss(first, second)) * len(indices)
            count += len(indices)
        log.write(step, "val", {"loss": loss / count, "floor": floor / count, "level": k}, lr,
                  seconds)


@torch.no_grad()
def _calibrate(teacher: Simulator, windows: WindowDataset, ladder: torch.Tensor,
               settings: DistillSettings) -> torch.Tensor:
    """``(levels,)`` the spread per component (length) of the teacher's descent of each student
    step, from pairs of descents (:func:`draw_variance`) over ``settings.calibration_batches``
    validation batches."""
    device = teacher.sigmas.device
    batches = _validation_batches(windows, settings.batch_size, settings.calibration_batches)
    variance = torch.zeros(settings.levels, dtype=ladder.dtype, device=device)
    for k in range(settings.levels):
        a, b = _level_pair(ladder, k)
        step_length = a if b is None else (1.0 - (b / a) ** 2) * a  # position per unit of f
        for i, indices in enumerate(batches):
            generator = step_generator(settings.seed, _CALIBRATION_STREAM, i, k, device)
            context = _Context.of(teacher, window_batch(windows, indices, device))
            _, (first, second) = _noisy_targets(teacher, context, ladder, k, generator, 2)
            variance[k] += draw_variance(first, second) * step_length**2
    return torch.sqrt(variance / len(batches))
