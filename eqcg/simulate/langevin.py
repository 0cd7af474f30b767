"""Annealed Langevin dynamics: the refinement step of every rollout.

For each noise level ``sigma`` (largest first) a few steps of
``x <- x + eps * score(x, sigma) + sqrt(2 eps) z`` are taken with a fixed step size ``eps``,
as in the reference implementation of Fu et al. (the score is the network output divided by
sigma). Small levels do the work: they pull colliding beads apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScoreFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFunction = Callable[[torch.Tensor], torch.Tensor]


def gaussian_noise(generator: torch.Generator | None = None) -> NoiseFunction:
    """``like -> z``: standard normal noise shaped like ``like``, drawn from ``generator``."""
    return lambda like: torch.randn(like.shape, generator=generator, dtype=like.dtype,
                                    device=like.device)


def annealed_langevin(
    score: ScoreFunction,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    steps_per_level: int,
    step_size: float,
    noise: NoiseFunction,
) -> torch.Tensor:
    """Refine ``x (n, 3)`` with annealed Langevin dynamics.

    Args:
        score: ``(x, sigma) -> (n, 3)`` score at noise level ``sigma`` (0-d tensor), 1/length.
        x: ``(n, 3)`` starting positions.
        sigmas: ``(n_levels,)`` noise levels, largest first (length units).
        steps_per_level: Langevin steps per level.
        step_size: ``eps`` (length² units).
        noise: source of the Langevin noise (e.g. :func:`gaussian_noise`).

    Returns the refined ``(n, 3)`` positions.
    """
    noise_scale = math.sqrt(2.0 * step_size)
    for sigma in sigmas:
        for _ in range(steps_per_level):
            x = x + step_size * score(x, sigma) + noise_scale * noise(x)
    return x
