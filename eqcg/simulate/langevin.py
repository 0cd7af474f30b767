"""Annealed Langevin dynamics: the sampler behind every rollout's refinement.

For each noise level ``sigma_i`` (largest first) a few steps of
``x <- x + a_i * score(x, sigma_i) + sqrt(2 a_i) z`` are taken. Step-size schedules:

* ``constant``: ``a_i = eps`` at every level, as in the reference implementation of Fu et al.;
  with ``eps = 5e-5`` the large levels move a sample by almost nothing, so nearly all of the
  correction happens at the few smallest levels;
* ``ncsn``: ``a_i = eps * (sigma_i / sigma_min)²``, the annealed Langevin dynamics of Song &
  Ermon (2019): every level moves samples on its own length scale;
* ``denoise``: no Langevin noise; every step is the Tweedie denoiser ``x + sigma_i² score``
  (the posterior mean of a sample perturbed by ``sigma_i``): a deterministic few-step refiner
  in the spirit of PDE-Refiner.
* ``ancestral``: the reverse-diffusion sampler of Song et al. (2021) for the variance-exploding
  process, one step per level from ``sigma_i`` to the next level ``sigma_{i+1}``:
  ``x + (sigma_i² - sigma_{i+1}²) score + sqrt(sigma_i² - sigma_{i+1}²) z``; it removes most
  of a level's noise in one step and puts back the right amount for the next, so a few levels
  suffice (the last level has no successor: there it takes the ``denoise`` step).

``denoise=True`` ends with one noise-free step ``x + sigma_min² score(x, sigma_min)`` that
removes the noise the last Langevin step left at the smallest level.

Levels may differ per bead: ``sigmas`` of shape ``(n_levels, n)`` gives each bead (in practice
each system) its own ladder, e.g. one that starts at the dynamics network's predicted spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScoreFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFunction = Callable[[torch.Tensor], torch.Tensor]
SCHEDULES = ("constant", "ncsn", "denoise", "ancestral")


def gaussian_noise(generator: torch.Generator | None = None) -> NoiseFunction:
    """``like -> z``: standard normal noise shaped like ``like``, drawn from ``generator``."""
    return lambda like: torch.randn(like.shape, generator=generator, dtype=like.dtype,
                                    device=like.device)


def geometric_ladder(top: torch.Tensor, bottom: float, n_levels: int) -> torch.Tensor:
    """``(n_levels, *top.shape)`` noise levels falling geometrically from ``top`` to ``bottom``.

    ``top`` may be a scalar or one start per bead; with one level the ladder is ``top`` alone.
    """
    fraction = torch.linspace(0.0, 1.0, n_levels, dtype=top.dtype, device=top.device)
    fraction = fraction.reshape(-1, *([1] * top.dim()))
    log_top = torch.log(top)
    return torch.exp(log_top + fraction * (math.log(bottom) - log_top))


def evaluations(n_levels: int, steps_per_level: int, denoise: bool) -> int:
    """Score evaluations of one :func:`annealed_langevin` call."""
    return n_levels * steps_per_level + int(denoise)


def annealed_langevin(
    score: ScoreFunction,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    steps_per_level: int,
    step_size: float,
    noise: NoiseFunction,
    schedule: str = "constant",
    *,
    sigma_min: float | None = None,
    denoise: bool = False,
) -> torch.Tensor:
    """Refine ``x (n, 3)`` with annealed Langevin dynamics.

    Args:
        score: ``(x, sigma) -> (n, 3)`` score at noise levels ``sigma (n,)``, 1/length.
        x: ``(n, 3)`` starting positions.
        sigmas: ``(n_levels,)`` or per bead ``(n_levels, n)`` noise levels, largest first
            (length units).
        steps_per_level: steps per level.
        step_size: ``eps`` (length² units), the Langevin step at ``sigma_min`` (used by
            ``constant`` and ``ncsn`` only).
        noise: source of the Langevin noise (e.g. :func:`gaussian_noise`).
        schedule: ``constant``, ``ncsn``, ``denoise`` or ``ancestral`` (module docstring).
        sigma_min: the level ``eps`` refers to for ``ncsn`` and the final denoising step
            (default: the last level).
        denoise: finish with the noise-free step ``x + sigma_min² score(x, sigma_min)``.

    Returns the refined ``(n, 3)`` positions after
    :func:`evaluations` ``(n_levels, steps_per_level, denoise)`` score calls.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown Langevin schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    per_bead = sigmas[:, None].expand(-1, x.shape[0]) if sigmas.dim() == 1 else sigmas
    bottom = per_bead[-1] if sigma_min is None else torch.full_like(per_bead[-1], sigma_min)
    n_levels = per_bead.shape[0]
    for level, sigma in enumerate(per_bead):  # tensors on the device: no host sync per level
        if schedule == "ancestral" and level + 1 < n_levels:
            drop = (sigma.pow(2) - per_bead[level + 1].pow(2))[:, None]
            step, noise_scale = drop, drop.sqrt()
        elif schedule in ("denoise", "ancestral"):
            step, noise_scale = sigma.pow(2)[:, None], None
        else:
            ratio = (sigma / bottom) ** 2 if schedule == "ncsn" else torch.ones_like(sigma)
            step = (step_size * ratio)[:, None]
            noise_scale = torch.sqrt(2.0 * step)
        for _ in range(steps_per_level):
            x = x + step * score(x, sigma)
            if noise_scale is not None:
                x = x + noise_scale * noise(x)
    if denoise:
        x = x + bottom.pow(2)[:, None] * score(x, bottom)
    return x
