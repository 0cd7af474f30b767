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


def annealed_langevin(
    score: ScoreFunction,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    steps_per_level: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Refine ``x (n, 3)`` with annealed Langevin dynamics.

    Args:
        score: ``(x, sigma) -> (n, 3)`` score at noise level ``sigma`` (0-d tensor), 1/length.
        x: ``(n, 3)`` starting positions.
        sigmas: ``(n_levels,)`` noise levels, largest first (length units).
        steps_per_level: Langevin steps per level.
        step_size: ``eps`` (length² units).
        generator: source of the Langevin noise (on ``x``'s device).

    Returns the refined ``(n, 3)`` positions.
    """
    noise_scale = math.sqrt(2.0 * step_size)
    for sigma in sigmas:
        for _ in range(steps_per_level):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + step_size * score(x, sigma) + noise_scale * z
    return x
