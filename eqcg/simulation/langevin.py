"""Samplers behind every rollout's refinement: annealed Langevin dynamics and few-step
level-to-level denoisers, all driven by a score ``∇ log p_sigma`` at noise levels ``sigma``.

Annealed Langevin dynamics (:func:`annealed_langevin`) takes, for each noise level ``sigma_i``
(largest first), a few steps of ``x <- x + a_i * score(x, sigma_i) + sqrt(2 a_i) z``:

* ``constant``: ``a_i = eps`` at every level, as in the reference implementation of Fu et al.;
  with ``eps = 5e-5`` the large levels move a sample by almost nothing, so nearly all of the
  correction happens at the few smallest levels;
* ``ncsn``: ``a_i = eps * (sigma_i / sigma_min)²``, the annealed Langevin dynamics of Song &
  Ermon (2019): every level moves samples on its own length scale.

``denoise=True`` ends with one noise-free step ``x + sigma_min² score(x, sigma_min)`` (Tweedie's
posterior mean) that removes the noise the last Langevin step left at the smallest level.

The level-to-level samplers (:func:`level_to_level`) take one step per level, from ``a =
sigma_i`` to ``b = sigma_{i+1}``, towards the denoised estimate ``x0 = x + a² score(x, a)``:
``x <- x0 + c (x - x0) + d z``, and the denoising step ``x0`` at the last level:

* ``ancestral``: DDPM's posterior step (Ho et al. 2020) in variance-exploding form:
  ``c = b²/a²``, ``d = b sqrt(1 - b²/a²)``; taking the posterior mean for ``x0`` drops the
  posterior's own variance, so samples come out too narrow (0.8x the std of a Gaussian in 10
  levels);
* ``geometric``: the same mean with the noise variance ``a b (1 - b²/a²)``, the geometric mean
  of DDPM's and that of the reverse-diffusion predictor of Song et al. (2021), which is too wide
  by about as much: within 3 % of a Gaussian's std in 10 levels;
* ``ddim``: the deterministic DDIM step (Song, Meng & Ermon 2021), ``c = b/a``, ``d = 0``:
  the randomness of the dynamics sample is kept and only moved, as in PDE-Refiner.

Each removes most of a level's noise in one step, so a few levels suffice where Langevin
dynamics needs several steps per level. Levels may differ per bead: ``sigmas`` of shape
``(n_levels, n)`` gives each bead (in practice each system) its own ladder, e.g. one that
starts at the dynamics network's predicted spread.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from eqcg.config import LANGEVIN_SCHEDULES, LEVEL_SCHEDULES
from eqcg.models.gaussian import NoiseFunction

ScoreFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def geometric_ladder(
    top: torch.Tensor, bottom: float | torch.Tensor, n_levels: int
) -> torch.Tensor:
    """``(n_levels, *top.shape)`` noise levels falling geometrically from ``top`` to ``bottom``.

    ``top`` may be a scalar or one start per bead; with one level the ladder is ``top`` alone.
    """
    fraction = torch.linspace(0.0, 1.0, n_levels, dtype=top.dtype, device=top.device)
    fraction = fraction.reshape(-1, *([1] * top.dim()))
    log_top = torch.log(top)
    log_bottom = torch.log(torch.as_tensor(bottom, dtype=top.dtype, device=top.device))
    return torch.exp(log_top + fraction * (log_bottom - log_top))


def evaluations(schedule: str, n_levels: int, steps_per_level: int, denoise: bool) -> int:
    """Score evaluations of one refinement with ``schedule`` (level-to-level schedules take
    one step per level, the last one the denoising step)."""
    if schedule in LEVEL_SCHEDULES:
        return n_levels
    return n_levels * steps_per_level + int(denoise)


def _per_bead(sigmas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigmas[:, None].expand(-1, x.shape[0]) if sigmas.dim() == 1 else sigmas


def annealed_langevin(
    score: ScoreFunction,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    steps_per_level: int,
    step_size: float,
    noise: NoiseFunction,
    schedule: str = "constant",
    *,
    denoise: bool = False,
) -> torch.Tensor:
    """Refine ``x (n, 3)`` with annealed Langevin dynamics.

    Args:
        score: ``(x, sigma) -> (n, 3)`` score at noise levels ``sigma (n,)``, 1/length.
        x: ``(n, 3)`` starting positions.
        sigmas: ``(n_levels,)`` or per bead ``(n_levels, n)`` noise levels, largest first
            (length units).
        steps_per_level: Langevin steps per level.
        step_size: ``eps`` (length² units), the step at the last (smallest) level.
        noise: source of the Langevin noise (e.g. :func:`~eqcg.models.gaussian.gaussian_noise`).
        schedule: ``constant`` or ``ncsn`` (see the module docstring).
        denoise: finish with the noise-free step ``x + sigma_min² score(x, sigma_min)``.

    Returns the refined ``(n, 3)`` positions after ``n_levels * steps_per_level + denoise``
    score calls.
    """
    if schedule not in LANGEVIN_SCHEDULES:
        raise ValueError(f"unknown Langevin schedule {schedule!r}; known: "
                         f"{', '.join(LANGEVIN_SCHEDULES)}")
    per_bead = _per_bead(sigmas, x)
    bottom = per_bead[-1]
    for sigma in per_bead:  # tensors stay on the device: no host round trip per level
        ratio = (sigma / bottom) ** 2 if schedule == "ncsn" else torch.ones_like(sigma)
        step = (step_size * ratio)[:, None]
        noise_scale = torch.sqrt(2.0 * step)
        for _ in range(steps_per_level):
            x = x + step * score(x, sigma) + noise_scale * noise(x)
    if denoise:
        x = x + bottom.pow(2)[:, None] * score(x, bottom)
    return x


def level_to_level(
    score: ScoreFunction,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    noise: NoiseFunction,
    schedule: str = "geometric",
) -> torch.Tensor:
    """Refine ``x (n, 3)``, taken as a sample at the first level, down the ladder ``sigmas``.

    Args:
        score, x, sigmas, noise: as for :func:`annealed_langevin`.
        schedule: ``ancestral``, ``geometric`` or ``ddim`` (see the module docstring).

    Returns the refined ``(n, 3)`` positions after ``n_levels`` score calls (the last one the
    denoising step at the smallest level).
    """
    if schedule not in LEVEL_SCHEDULES:
        raise ValueError(f"unknown level-to-level schedule {schedule!r}; known: "
                         f"{', '.join(LEVEL_SCHEDULES)}")
    per_bead = _per_bead(sigmas, x)
    for a, b in zip(per_bead[:-1], per_bead[1:]):
        to_x0 = a.pow(2)[:, None] * score(x, a)
        ratio = (b / a)[:, None]
        keep = ratio if schedule == "ddim" else ratio.pow(2)
        x = x + (1.0 - keep) * to_x0
        if schedule != "ddim":
            spread = b if schedule == "ancestral" else (a * b).sqrt()
            x = x + spread[:, None] * (1.0 - ratio.pow(2)).sqrt() * noise(x)
    last = per_bead[-1]
    return x + last.pow(2)[:, None] * score(x, last)
