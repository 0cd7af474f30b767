"""Score-based refinement of a predicted step: the call into the sampler.

Its settings are the run's ``rollout`` section (:class:`~eqcg.config.RolloutConfig`). A
refinement visits ``refine_levels`` noise levels falling geometrically to the model's smallest
training level ``sigma_end``, with ``langevin_steps`` Langevin steps each and an optional final
denoising step, or one level-to-level step each (:mod:`eqcg.simulation.langevin`). The ladder
starts (``refine_start``) at

* ``top``: the model's largest training level ``sigma_begin`` (the paper), or
* ``spread``: each system's predicted spread, the RMS over its beads of the std of the
  dynamics network's Gaussian (clamped to the training range): the dynamics sample deviates from
  a plausible next state by about that much, so levels above it only add noise, and levels far
  below it cannot move the sample far enough.

An optional excluded-volume correction (``excluded_volume > 0``) finally pushes bead pairs
closer than that distance apart symmetrically, half the overlap each; bonded pairs too (in the
reference MD no CG bond is ever that short either).

With ``keep_com`` the refined step keeps each molecule's mass-weighted centre where the
dynamics sample put it (:func:`keep_molecule_centres`): the score network corrects a molecule's
internal structure (collisions, bond lengths), the dynamics network alone moves its centre of
mass. Denoising pulls every bead towards the most probable next state, molecules included, and
so damps their diffusion (on the polymer chains refinement cut the centre-of-mass step variance
to 0.77 of the MD's where the unrefined sample had 1.03: results/ablation/polymer_transport).
"""

from __future__ import annotations

import torch
from torch_geometric.utils import scatter

from eqcg.config import LEVEL_SCHEDULES, RolloutConfig
from eqcg.models.gaussian import predicted_spread
from eqcg.simulation.langevin import (
    NoiseFunction,
    ScoreFunction,
    annealed_langevin,
    evaluations,
    geometric_ladder,
    level_to_level,
)


def score_evaluations(settings: RolloutConfig, model_levels: int) -> int:
    """Score-network calls per refined step of a model trained on ``model_levels`` levels (0
    without refinement)."""
    if not settings.refine:
        return 0
    return evaluations(settings.schedule, settings.levels(model_levels), settings.langevin_steps,
                       settings.denoise)


def refine_sample(
    settings: RolloutConfig, score: ScoreFunction, x: torch.Tensor, sigmas: torch.Tensor,
    noise: NoiseFunction,
) -> torch.Tensor:
    """Refine ``x (n, 3)`` down the per-bead ladder ``sigmas (n_levels, n)`` with the sampler
    ``settings.schedule``."""
    if settings.schedule in LEVEL_SCHEDULES:
        return level_to_level(score, x, sigmas, noise, settings.schedule)
    return annealed_langevin(score, x, sigmas, settings.langevin_steps, settings.step_size, noise,
                             settings.schedule, denoise=settings.denoise)


def noise_ladder(
    settings: RolloutConfig,
    model_sigmas: torch.Tensor,
    covariance: torch.Tensor,
    graph_of_bead: torch.Tensor,
    n_graphs: int,
) -> torch.Tensor:
    """``(n_levels, n_beads)`` noise levels of each bead, largest first (no host sync).

    Args:
        model_sigmas: ``(n_model_levels,)`` the score network's training levels, largest first.
        covariance: ``(n_beads, 3, 3)`` predicted acceleration covariance (length²), for the
            ``spread`` start (:func:`predicted_spread`).
        graph_of_bead: ``(n_beads,)`` system of each bead.
    """
    top, bottom = model_sigmas[0], model_sigmas[-1]
    if settings.refine_start == "spread":
        spread = predicted_spread(covariance, graph_of_bead, n_graphs)
        start = spread.maximum(bottom).minimum(top)[graph_of_bead]
    else:
        start = top.expand(graph_of_bead.shape[0])
    return geometric_ladder(start, bottom, settings.levels(len(model_sigmas)))


def push_apart(
    pos: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, distance: float,
    edge_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Move the beads of every pair closer than ``distance`` apart, half the overlap each,
    along their separation (one Jacobi sweep; equivariant, translation-invariant).

    Args:
        pos: ``(n_beads, 3)`` positions.
        edge_index: ``(2, E)`` ordered pairs (both directions present), source -> target.
        edge_vec: ``(E, 3)`` displacement source -> target at ``pos`` (minimum image).
        edge_mask: ``(E,)`` the pairs to use (``None``: all).
    """
    length = edge_vec.norm(dim=-1)
    overlap = (distance - length).clamp(min=0.0)
    if edge_mask is not None:
        overlap = torch.where(edge_mask, overlap, 0.0)
    direction = edge_vec / length.clamp(min=1e-12)[:, None]
    push = scatter(0.5 * overlap[:, None] * direction, edge_index[1], dim=0,
                   dim_size=pos.shape[0], reduce="sum")
    return pos + push


def keep_molecule_centres(
    refined: torch.Tensor, sampled: torch.Tensor, masses: torch.Tensor, molecule: torch.Tensor
) -> torch.Tensor:
    """``refined (n_beads, 3)`` with every molecule translated so that its mass-weighted centre
    is that of ``sampled (n_beads, 3)`` (unwrapped positions; equivariant).

    Args:
        masses: ``(n_beads,)`` bead masses.
        molecule: ``(n_beads,)`` molecule of each bead, numbered below ``n_beads``.
    """
    n = refined.shape[0]
    weight = masses[:, None]
    total = scatter(masses, molecule, dim=0, dim_size=n, reduce="sum").clamp_min(1e-30)
    shift = scatter(weight * (sampled - refined), molecule, dim=0, dim_size=n, reduce="sum")
    return refined + (shift / total[:, None])[molecule]
