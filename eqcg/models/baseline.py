"""The frame-dependent GNS-style baseline (``model.variant: baseline``) of Fu et al. (TMLR 2023).

Encode–process–decode graph networks of plain MLPs. Node inputs of the dynamics network are the
flattened ``k - 1`` velocities in the lab frame plus the bead features, so rotating the input
does *not* rotate the output: the baseline is translation invariant but not equivariant, on
purpose (it is the ablation of the equivariant variant). Edge inputs are the edge vector over
the radius, its length and the one-hot edge type. Each processor step updates edges from
``[e, h_src, h_dst]`` and nodes from ``[h, Σ incoming e]``, both residual, both MLPs ending in
LayerNorm. The acceleration spread is a per-axis std: a diagonal covariance in the lab frame;
noise shared per molecule (``model.shared_noise_rank``) enters through diagonal lab-frame
factors.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from eqcg.config import ModelConfig
from eqcg.graphs.neighbors import N_EDGE_TYPES
from eqcg.models.gaussian import GaussianAcceleration, diagonal_covariance, molecule_noise
from eqcg.models.interface import DynamicsNetwork, DynamicsOutput, GraphInputs, ScoreNetwork
from eqcg.models.mlp import mlp
from eqcg.models.registry import Variant, register_variant

COVARIANCES = ("diagonal",)

EDGE_INPUT_DIM = 3 + 1 + N_EDGE_TYPES  # edge vector, its length, one-hot edge type


def edge_inputs(graph: GraphInputs) -> torch.Tensor:
    """``(n_edges, EDGE_INPUT_DIM)`` raw edge features: vector / radius, length, one-hot type."""
    vec = graph.edge_vec
    edge_type = nn.functional.one_hot(graph.edge_type, N_EDGE_TYPES).to(vec.dtype)
    return torch.cat([vec, vec.norm(dim=-1, keepdim=True), edge_type], dim=-1)


class InteractionBlock(nn.Module):
    """One processor step: residual edge update, then residual node update from summed edges.

    Args:
        dim: latent width of nodes and edges.
        mlp_layers: hidden layers of each MLP.
    """

    def __init__(self, dim: int, mlp_layers: int):
        super().__init__()
        self.edge_update = mlp(3 * dim, dim, dim, mlp_layers, layer_norm=True)
        self.node_update = mlp(2 * dim, dim, dim, mlp_layers, layer_norm=True)

    def forward(
        self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor,
        edge_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated ``h (n_nodes, dim)`` and ``e (n_edges, dim)``; edges outside ``edge_mask
        (n_edges,)`` are left out of the sums."""
        src, dst = edge_index
        e = e + self.edge_update(torch.cat([e, h[src], h[dst]], dim=-1))
        summed = e if edge_mask is None else torch.where(edge_mask[:, None], e, 0.0)
        incoming = scatter(summed, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        h = h + self.node_update(torch.cat([h, incoming], dim=-1))
        return h, e


class EncodeProcess(nn.Module):
    """Node and edge encoders to ``dim``, then ``steps`` :class:`InteractionBlock` s.

    Args:
        node_dim: width of the raw node inputs.
        dim: latent width.
        steps: processor steps.
        mlp_layers: hidden layers of each MLP.
    """

    def __init__(self, node_dim: int, dim: int, steps: int, mlp_layers: int):
        super().__init__()
        self.node_encoder = mlp(node_dim, dim, dim, mlp_layers, layer_norm=True)
        self.edge_encoder = mlp(EDGE_INPUT_DIM, dim, dim, mlp_layers, layer_norm=True)
        self.blocks = nn.ModuleList(InteractionBlock(dim, mlp_layers) for _ in range(steps))

    def forward(self, nodes: torch.Tensor, graph: GraphInputs) -> torch.Tensor:
        """``(n_nodes, dim)`` node latents from raw ``nodes (n_nodes, node_dim)``."""
        h = self.node_encoder(nodes)
        e = self.edge_encoder(edge_inputs(graph))
        for block in self.blocks:
            h, e = block(h, e, graph.edge_index, graph.edge_mask)
        return h


class BaselineDynamics(DynamicsNetwork):
    """Gaussian over each bead's acceleration with a diagonal (lab-frame) covariance.

    Args:
        model: architecture config (``embed_dim``, ``latent_dim``, ``message_passing_steps``,
            ``mlp_layers``, ``min_std``).
        history: ``k``; the network reads ``k - 1`` velocities.
    """

    def __init__(self, model: ModelConfig, history: int):
        super().__init__()
        self.invariant_dim = model.latent_dim
        self.min_std = model.min_std
        self.shared_rank = model.shared_noise_rank
        node_dim = 3 * (history - 1) + model.embed_dim
        self.network = EncodeProcess(
            node_dim, model.latent_dim, model.message_passing_steps, model.mlp_layers
        )
        self.decoder = mlp(
            model.latent_dim, model.latent_dim, 6 + 3 * self.shared_rank, model.mlp_layers,
            layer_norm=False,
        )

    def forward(self, graph: GraphInputs, velocities: torch.Tensor) -> DynamicsOutput:
        """``velocities (n, k - 1, 3)`` -> Gaussian (mean, per-axis std, diagonal shared-noise
        factors), latent ``(n, latent)``."""
        nodes = torch.cat([velocities.flatten(1), graph.bead_features], dim=-1)
        h = self.network(nodes, graph)
        out = self.decoder(h)
        std = nn.functional.softplus(out[:, 3:6]) + self.min_std
        shared = None
        if self.shared_rank:
            factor = torch.diag_embed(out[:, 6:].reshape(-1, self.shared_rank, 3))
            shared = molecule_noise(factor, graph.molecule)
        return DynamicsOutput(
            acceleration=GaussianAcceleration(out[:, :3], diagonal_covariance(std), shared),
            latent=h,
            invariant_latent=h,
        )


class BaselineScore(ScoreNetwork):
    """``sigma * score`` per bead ``(n, 3)``, conditioned on the dynamics latent.

    Args:
        model: architecture config (``embed_dim``, ``latent_dim``,
            ``score_message_passing_steps``, ``mlp_layers``).
    """

    def __init__(self, model: ModelConfig):
        super().__init__()
        node_dim = model.latent_dim + 3 + 1 + model.embed_dim
        self.network = EncodeProcess(
            node_dim, model.latent_dim, model.score_message_passing_steps, model.mlp_layers
        )
        self.decoder = mlp(
            model.latent_dim, model.latent_dim, 3, model.mlp_layers, layer_norm=False
        )

    def forward(
        self,
        graph: GraphInputs,
        context: torch.Tensor,
        displacement: torch.Tensor,
        log_sigma: torch.Tensor,
    ) -> torch.Tensor:
        """``(n, 3)`` from ``context (n, latent_dim)``, ``displacement (n, 3)``,
        ``log_sigma (n,)``."""
        nodes = torch.cat(
            [context, displacement, log_sigma.unsqueeze(-1), graph.bead_features], dim=-1
        )
        return self.decoder(self.network(nodes, graph))


def build(
    model: ModelConfig, options: None, history: int
) -> tuple[BaselineDynamics, BaselineScore]:
    """The baseline dynamics and score networks for ``model`` and ``k = history`` (the
    baseline has no options of its own)."""
    return BaselineDynamics(model, history), BaselineScore(model)


register_variant(Variant(
    name="baseline",
    build=build,
    covariances=COVARIANCES,
    description="frame-dependent GNS-style MLP graph networks (diagonal covariance)",
    equivariant=False,
))
