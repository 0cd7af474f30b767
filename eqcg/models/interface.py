"""What every variant's dynamics and score networks take and give.

The shared :class:`~eqcg.models.simulator.Simulator` builds these inputs (velocities, typed CG
edges, bead embeddings) once for all variants; a variant only maps inputs to outputs. All
lengths here are normalised: velocities and displacements by the simulator's velocity scale,
edge vectors by the cut-off radius (bond edges may be longer than 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from eqcg.models.gaussian import GaussianAcceleration


@dataclass
class GraphInputs:
    """The CG graph at one instant.

    Attributes:
        bead_features: ``(n_beads, embed_dim)`` invariant features from the embedding GNN.
        edge_index: ``(2, n_edges)`` source and target bead of each edge.
        edge_vec: ``(n_edges, 3)`` displacement source -> target (minimum image) / radius.
        edge_type: ``(n_edges,)`` ``RADIUS_EDGE`` or ``BOND_EDGE`` (:mod:`eqcg.graphs.neighbors`).
        batch: ``(n_beads,)`` system index of each bead.
        molecule: ``(n_beads,)`` molecule index of each bead, unique over the batch and below
            ``n_beads`` (for noise shared per molecule:
            :func:`~eqcg.models.gaussian.molecule_noise`).
        edge_mask: ``(n_edges,)`` which edges are real, or ``None`` (all are): a fixed-capacity
            neighbour search (:class:`~eqcg.graphs.neighbors.DeviceNeighbors`) pads its edges
            with masked ones, which a network must leave out of every sum over edges.
    """

    bead_features: torch.Tensor
    edge_index: torch.Tensor
    edge_vec: torch.Tensor
    edge_type: torch.Tensor
    batch: torch.Tensor
    molecule: torch.Tensor
    edge_mask: torch.Tensor | None = None


@dataclass
class DynamicsOutput:
    """A dynamics network's prediction, normalised by the acceleration scale.

    Attributes:
        acceleration: per-bead Gaussian over the normalised acceleration.
        latent: ``(n_beads, ...)`` features handed to the score network as context (layout
            is the variant's business: plain features, or e3nn irreps).
        invariant_latent: ``(n_beads, d)`` features that do not change under rotations of the
            input (for the equivariant variant; the baseline passes its latent), read by the
            property head.
    """

    acceleration: GaussianAcceleration
    latent: torch.Tensor
    invariant_latent: torch.Tensor


class DynamicsNetwork(nn.Module):
    """Base class: ``forward(graph, velocities) -> DynamicsOutput``.

    ``velocities`` is ``(n_beads, k - 1, 3)``, oldest first, normalised.
    """

    invariant_dim: int

    def forward(self, graph: GraphInputs, velocities: torch.Tensor) -> DynamicsOutput:
        raise NotImplementedError


class ScoreNetwork(nn.Module):
    """Base class: ``forward(graph, context, displacement, log_sigma) -> (n_beads, 3)``.

    ``graph`` is built on the noisy next positions; ``context`` is the dynamics latent;
    ``displacement (n_beads, 3)`` is noisy next position minus last known position, normalised;
    ``log_sigma (n_beads,)`` is the log of the noise level (in length units). The output ``f``
    is the score times sigma: ``score = f / sigma``.
    """

    def forward(
        self,
        graph: GraphInputs,
        context: torch.Tensor,
        displacement: torch.Tensor,
        log_sigma: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError
