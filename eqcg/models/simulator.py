"""The learned simulator: embedding GNN + a variant's dynamics and score networks.

Everything that is not the variant lives here and is shared: normalisation, velocities from the
position history, typed CG edges under periodic boundaries, the Rg property head.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from eqcg import keys
from eqcg.config import ModelConfig, ScoreConfig
from eqcg.graphs.neighbors import DeviceNeighbors, VerletList, cg_edges
from eqcg.graphs.system import TypeVocabulary
from eqcg.models.embedding import EmbeddingGNN
from eqcg.models.gaussian import GaussianAcceleration
from eqcg.models.integrator import finite_difference_velocities
from eqcg.models.interface import DynamicsOutput, GraphInputs
from eqcg.models.mlp import mlp
from eqcg.models.registry import check_variant, get_variant
from eqcg.runtime.profiling import DYNAMICS, EMBEDDING, SCORE


@dataclass
class Prediction:
    """A dynamics prediction in physical units.

    Attributes:
        acceleration: Gaussian over the acceleration per learned step (Å or sigma).
        normalized: the same in normalised units (what the NLL is computed on).
        latent: context for the score network.
        rg_residual: ``(n_graphs,)`` predicted Rg change over the step, or ``None``.
    """

    acceleration: GaussianAcceleration
    normalized: GaussianAcceleration
    latent: torch.Tensor
    rg_residual: torch.Tensor | None


@contextmanager
def eager_fallback() -> Iterator[None]:
    """Within the block a graph dynamo fails to compile runs eagerly instead of raising
    (dynamo's ``suppress_errors``, set for the block only: never fail a rollout or a training
    step for the compiler's sake, and leave other users of ``torch.compile`` alone)."""
    config = torch._dynamo.config
    previous, config.suppress_errors = config.suppress_errors, True
    try:
        yield
    finally:
        config.suppress_errors = previous


class Simulator(nn.Module):
    """Embedding GNN + dynamics GNN + score GNN of one variant.

    Args:
        model: architecture config (``model.variant`` picks the networks).
        score: noise levels of the score network.
        vocabulary: atom and bond types the model knows.
        history: ``k``, history frames per prediction.
        velocity_scale: RMS velocity per learned step in the training data (length units).
        acceleration_scale: RMS acceleration per learned step in the training data.
        temperature_scale: mean thermostat temperature of the training systems (K or
            epsilon/k_B), with ``model.temperature_input``: the networks read ``T / scale``.
    """

    def __init__(
        self,
        model: ModelConfig,
        score: ScoreConfig,
        vocabulary: TypeVocabulary,
        history: int,
        velocity_scale: float = 1.0,
        acceleration_scale: float = 1.0,
        temperature_scale: float = 1.0,
    ):
        super().__init__()
        self.vocabulary = vocabulary
        self.history = history
        self.radius = model.radius
        self.embedding = EmbeddingGNN(
            len(vocabulary.atom_types), len(vocabulary.bond_types), model.embed_dim,
            model.embed_layers, model.mlp_layers,
        )
        model = check_variant(model, "model")
        self.dynamics, self.score_network = get_variant(model.variant).networks(model, history)
        self.property_head = (
            mlp(self.dynamics.invariant_dim, model.latent_dim, 1, model.mlp_layers,
                layer_norm=False)
            if model.property_head
            else None
        )
        # the temperature enters every bead's features, which both networks read
        self.temperature_embedding = (
            mlp(1, model.embed_dim, model.embed_dim, model.mlp_layers, layer_norm=False)
            if model.temperature_input
            else None
        )
        if model.temperature_input:
            self.register_buffer("temperature_scale", torch.tensor(float(temperature_scale)))
        self.register_buffer("velocity_scale", torch.tensor(float(velocity_scale)))
        self.register_buffer("acceleration_scale", torch.tensor(float(acceleration_scale)))
        sigmas = torch.logspace(
            math.log10(score.sigma_begin), math.log10(score.sigma_end), score.n_levels
        )
        self.register_buffer("sigmas", sigmas)
        self.training_levels = score.training_levels
        self.compiled = False

    def compile_networks(self) -> None:
        """Compile the dynamics and score networks with ``torch.compile``, for rollouts and
        training (gradients flow through the compiled networks).

        Shapes are dynamic (the edge count changes with every neighbour list), so one
        compilation serves a whole run; it costs tens of seconds up front (on a network's first
        call, and for training on its first backward) and pays on long runs
        (``benchmarks/step_cost.py --compile``). Graphs dynamo cannot compile run eagerly. The
        networks are compiled in place (:meth:`torch.nn.Module.compile`): parameter names,
        and so checkpoints, are those of the eager model. Nothing global changes: dynamo's
        eager fallback is switched on only while the compiled networks run.
        """
        self.dynamics.compile(dynamic=True)
        self.score_network.compile(dynamic=True)
        self.compiled = True

    def _network_call(self) -> AbstractContextManager:
        """The context a network runs in: :func:`eager_fallback` once compiled."""
        return eager_fallback() if self.compiled else nullcontext()

    @property
    def requires_temperature(self) -> bool:
        """Whether the model reads each system's thermostat temperature (``keys.TEMPERATURE``)."""
        return self.temperature_embedding is not None

    def embed(self, batch: Batch) -> torch.Tensor:
        """``(n_beads, embed_dim)`` bead features: the embedding GNN's (topology only), plus an
        embedding of the system's temperature where the model reads it. Constant over a
        rollout: compute once."""
        with record_function(EMBEDDING):
            features = self.embedding(batch)
            if self.temperature_embedding is not None:
                scaled = batch[keys.TEMPERATURE] / self.temperature_scale
                features = features + self.temperature_embedding(scaled[batch.batch, None])
            return features

    def graph_inputs(
        self, batch: Batch, pos: torch.Tensor, bead_features: torch.Tensor,
        neighbors: VerletList | DeviceNeighbors | None = None,
    ) -> GraphInputs:
        """Typed CG edges at positions ``pos (n_beads, 3)``, normalised by the radius.

        ``neighbors`` (a :class:`~eqcg.graphs.neighbors.VerletList` or
        :class:`~eqcg.graphs.neighbors.DeviceNeighbors` of the model's radius) is reused instead
        of a fresh neighbour search; the edges are the same (the latter's padded with masked
        ones).
        """
        edge_index, edge_vec, edge_type, edge_mask = cg_edges(
            pos, batch[keys.BOX], batch[keys.PBC], batch.batch, batch.ptr,
            batch[keys.CG_BOND_INDEX], self.radius, neighbors,
        )
        return GraphInputs(
            bead_features, edge_index, edge_vec / self.radius, edge_type, batch.batch,
            batch[keys.BEAD_MOLECULE], edge_mask,
        )

    def predict(
        self, batch: Batch, pos_history: torch.Tensor, bead_features: torch.Tensor | None = None,
        neighbors: VerletList | DeviceNeighbors | None = None,
    ) -> Prediction:
        """Distribution of the next acceleration given ``pos_history (n_beads, k, 3)``."""
        if bead_features is None:
            bead_features = self.embed(batch)
        with record_function(DYNAMICS):
            return self._predict(batch, pos_history, bead_features, neighbors)

    def _predict(
        self, batch: Batch, pos_history: torch.Tensor, bead_features: torch.Tensor,
        neighbors: VerletList | DeviceNeighbors | None,
    ) -> Prediction:
        graph = self.graph_inputs(batch, pos_history[:, -1], bead_features, neighbors)
        velocities = finite_difference_velocities(pos_history) / self.velocity_scale
        with self._network_call():
            out: DynamicsOutput = self.dynamics(graph, velocities)
        rg_residual = None
        if self.property_head is not None:
            pooled = scatter(out.invariant_latent, batch.batch, dim=0, reduce="mean",
                             dim_size=batch.num_graphs)
            rg_residual = self.property_head(pooled).squeeze(-1) * self.velocity_scale
        return Prediction(
            acceleration=out.acceleration.scaled(self.acceleration_scale),
            normalized=out.acceleration,
            latent=out.latent,
            rg_residual=rg_residual,
        )

    def score_times_sigma(
        self,
        batch: Batch,
        noisy_pos: torch.Tensor,
        last_pos: torch.Tensor,
        sigma: torch.Tensor,
        bead_features: torch.Tensor,
        context: torch.Tensor,
        neighbors: VerletList | DeviceNeighbors | None = None,
    ) -> torch.Tensor:
        """``(n_beads, 3)`` network output ``f = sigma * score`` at ``noisy_pos``.

        Args:
            noisy_pos: ``(n_beads, 3)`` candidate next positions.
            last_pos: ``(n_beads, 3)`` last known positions.
            sigma: ``(n_beads,)`` noise level of each bead (length units).
            neighbors: neighbour list to reuse (see :meth:`graph_inputs`).
        """
        with record_function(SCORE):
            graph = self.graph_inputs(batch, noisy_pos, bead_features, neighbors)
            displacement = (noisy_pos - last_pos) / self.velocity_scale
            with self._network_call():
                return self.score_network(graph, context, displacement, torch.log(sigma))

    def score(
        self,
        batch: Batch,
        noisy_pos: torch.Tensor,
        last_pos: torch.Tensor,
        sigma: torch.Tensor,
        bead_features: torch.Tensor,
        context: torch.Tensor,
        neighbors: VerletList | DeviceNeighbors | None = None,
    ) -> torch.Tensor:
        """``(n_beads, 3)`` score ``∇ log p`` (1/length); arguments as :meth:`score_times_sigma`."""
        f = self.score_times_sigma(batch, noisy_pos, last_pos, sigma, bead_features, context,
                                   neighbors)
        return f / sigma.unsqueeze(-1)
