"""The integrator every variant shares, and its exact inverse (the training target).

Time is counted in learned steps (``dt = 1``). With ``v[t] = x[t] - x[t-1]``, one semi-implicit
Euler step is ``v[t+1] = v[t] + a``, ``x[t+1] = x[t] + v[t+1]``; its inverse gives the target
``a = x[t+1] - 2 x[t] + x[t-1]``.
"""

from __future__ import annotations

import torch


def finite_difference_velocities(pos_history: torch.Tensor) -> torch.Tensor:
    """``(n, k - 1, 3)`` velocities ``x[t] - x[t-1]`` of ``pos_history (n, k, 3)``."""
    return pos_history[:, 1:] - pos_history[:, :-1]


def euler_step(pos_history: torch.Tensor, acceleration: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` next position from ``pos_history (n, k, 3)`` and ``acceleration (n, 3)``."""
    velocity = pos_history[:, -1] - pos_history[:, -2] + acceleration
    return pos_history[:, -1] + velocity


def acceleration_target(pos_history: torch.Tensor, next_pos: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` acceleration that :func:`euler_step` turns into ``next_pos (n, 3)``."""
    return next_pos - 2.0 * pos_history[:, -1] + pos_history[:, -2]


def append_frame(pos_history: torch.Tensor, next_pos: torch.Tensor) -> torch.Tensor:
    """Drop the oldest frame of ``pos_history (n, k, 3)`` and append ``next_pos (n, 3)``."""
    return torch.cat([pos_history[:, 1:], next_pos.unsqueeze(1)], dim=1)
