"""The E(3)-equivariant variant: e3nn dynamics and score networks (``model.variant: equivariant``).

Rotating, reflecting or translating the input history (and the box with it) rotates the
predicted acceleration mean and score, and the covariance transforms as ``R Σ Rᵀ``; permuting
beads permutes the outputs. Node features are irreps ``{latent_dim}x0e + irreps_gated``
(``vector_channels x 1o``, plus ``2e`` channels when ``lmax >= 2``, options of the section
``model.equivariant``: :class:`EquivariantOptions`; see
:func:`~eqcg.models.equivariant_layers.gated_irreps`), updated by NequIP-style channel-wise
tensor-product convolutions with gates (:class:`~eqcg.models.equivariant_layers.Interaction`).

Dynamics inputs: scalars = bead features and the speed of each history velocity; vectors =
the ``k - 1`` velocities as ``(k-1)x1o``. Outputs: mean ``1x1o``; spread either ``1x0e``
(isotropic std ``softplus + min_std``) or a symmetric ``S`` from ``0e``, ``2e`` and products
of ``1o`` outputs with covariance ``expm(S) + min_std² I`` (full); factors of noise shared per
molecule (``model.shared_noise_rank``) are symmetric matrices of the same form (``R U Rᵀ``).
Score inputs: the dynamics
latent (irreps), the noisy displacement ``1x1o``, its length, ``log sigma`` and the bead
features; output ``1x1o``.

Cost: ``lmax`` (degree of the edge harmonics) sets the per-edge work. On CPU, at
``latent_dim=64, vector_channels=16`` and an electrolyte-sized box, ``lmax=1`` runs a step
about as fast as the baseline at the same ``latent_dim`` and ``lmax=2`` about 1.4x slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from e3nn import o3
from torch import nn

from eqcg.config import ModelConfig, require_positive
from eqcg.errors import ConfigError
from eqcg.models.equivariant_layers import (
    ChannelwiseTensorProduct,
    EdgeEncoding,
    GatedBlock,
    Interaction,
    IrrepsLinear,
    NodeEncoder,
    SymmetricMatrixHead,
    gated_irreps,
    hidden_irreps,
    radial_mlp,
    sender_irreps,
)
from eqcg.models.gaussian import (
    GaussianAcceleration,
    full_covariance,
    isotropic_covariance,
    molecule_noise,
)
from eqcg.models.interface import DynamicsNetwork, DynamicsOutput, GraphInputs, ScoreNetwork
from eqcg.models.registry import Variant, register_variant

COVARIANCES = ("full", "isotropic")
# bound on the Frobenius norm of a shared-noise factor (normalised units; no expm to guard)
SHARED_FACTOR_MAX_NORM = 20.0


@dataclass
class EquivariantOptions:
    """The variant's own options (config section ``model.equivariant``)."""

    vector_channels: int = 16  # number of 1o (vector) channels per bead
    lmax: int = 1  # max degree of edge harmonics (1 meets the speed target; 2 adds 2e features)
    radial_basis: int = 8  # Bessel radial basis functions per edge
    avg_neighbors: float = 10.0  # neighbour sums are divided by this (NequIP)

    def validate(self, prefix: str, where: str) -> None:
        """:class:`~eqcg.errors.ConfigError` naming ``prefix.key`` for an out-of-range value."""
        require_positive(self, ("vector_channels", "radial_basis", "avg_neighbors"), prefix,
                         where)
        if self.lmax < 1:
            raise ConfigError(
                f"{where}: {prefix}.lmax must be >= 1 (degree of the edge harmonics; 1 and 2 "
                f"are used, 0 gives edges no direction), got {self.lmax}"
            )

class EquivariantProcessor(nn.Module):
    """``steps`` :class:`Interaction` layers sharing the edge encoding, the tensor product's
    coupling of the harmonics and one radial MLP (one head per layer).

    All per-edge work that does not depend on the node features is done once per call: the
    harmonics, their contraction with the Clebsch-Gordan coefficients, and the radial weights
    of every layer (a single MLP of the Bessel basis and edge type with ``steps`` output heads).

    Args:
        model: architecture config (``latent_dim``, ``mlp_layers``).
        options: the variant's options (``vector_channels``, ``lmax``, ``radial_basis``,
            ``avg_neighbors``).
        steps: message-passing layers.
    """

    def __init__(self, model: ModelConfig, options: EquivariantOptions, steps: int):
        super().__init__()
        self.edges = EdgeEncoding(options.lmax, options.radial_basis)
        irreps_gated = gated_irreps(options.vector_channels, options.lmax)
        self.tensor_product = ChannelwiseTensorProduct(
            sender_irreps(irreps_gated), self.edges.irreps_sh,
            hidden_irreps(model.latent_dim, irreps_gated),
        )
        self.radial = radial_mlp(self.edges.scalar_dim, model.latent_dim,
                                 steps * self.tensor_product.weight_numel, model.mlp_layers)
        self.layers = nn.ModuleList(
            Interaction(model.latent_dim, irreps_gated, self.tensor_product,
                        options.avg_neighbors)
            for _ in range(steps)
        )

    def forward(self, h: torch.Tensor, graph: GraphInputs) -> torch.Tensor:
        """Updated node features ``(n, irreps_hidden.dim)``."""
        sh, edge_scalars, envelope = self.edges(graph.edge_vec, graph.edge_type)
        if graph.edge_mask is not None:  # masked edges carry no message
            envelope = torch.where(graph.edge_mask, envelope, 0.0)
        coupled = self.tensor_product.couple(sh * envelope[:, None])
        weights = self.radial(edge_scalars).chunk(len(self.layers), dim=-1)
        for layer, layer_weights in zip(self.layers, weights, strict=True):
            h = layer(h, graph.edge_index, coupled, layer_weights)
        return h


class EquivariantDynamics(DynamicsNetwork):
    """Gaussian over each bead's acceleration from the velocity history, E(3)-equivariant.

    Args:
        model: architecture config; ``covariance`` is ``isotropic`` or ``full``.
        options: the variant's options.
        history: ``k``; the network reads ``k - 1`` velocities.
    """

    def __init__(self, model: ModelConfig, options: EquivariantOptions, history: int):
        super().__init__()
        n_velocities = history - 1
        irreps_gated = gated_irreps(options.vector_channels, options.lmax)
        self.irreps_latent = hidden_irreps(model.latent_dim, irreps_gated)
        self.invariant_dim = model.latent_dim
        self.min_std = model.min_std
        self.encoder = NodeEncoder(
            model.embed_dim + n_velocities, o3.Irreps(f"{n_velocities}x1o"), model.latent_dim,
            irreps_gated, model.mlp_layers,
        )
        self.processor = EquivariantProcessor(model, options, model.message_passing_steps)
        self.decoder = GatedBlock(model.latent_dim, irreps_gated)
        self.mean = IrrepsLinear(self.decoder.irreps_out, "1x1o")
        full = model.covariance == "full"
        self.std = None if full else IrrepsLinear(self.decoder.irreps_out, "1x0e")
        self.log_covariance = SymmetricMatrixHead(self.decoder.irreps_out) if full else None
        self.shared_factors = nn.ModuleList(
            SymmetricMatrixHead(self.decoder.irreps_out, max_norm=SHARED_FACTOR_MAX_NORM)
            for _ in range(model.shared_noise_rank)
        )

    def forward(self, graph: GraphInputs, velocities: torch.Tensor) -> DynamicsOutput:
        """``velocities (n, k - 1, 3)`` -> Gaussian, latent ``(n, irreps_latent.dim)``."""
        speeds = velocities.norm(dim=-1)
        scalars = torch.cat([graph.bead_features, speeds], dim=-1)
        h = self.encoder(scalars, velocities.flatten(1))
        h = self.processor(h, graph)
        decoded = self.decoder(h)
        if self.log_covariance is None:
            std = nn.functional.softplus(self.std(decoded)[:, 0]) + self.min_std
            covariance = isotropic_covariance(std)
        else:
            covariance = full_covariance(self.log_covariance(decoded), self.min_std)
        shared = None
        if len(self.shared_factors):
            factor = torch.stack([head(decoded) for head in self.shared_factors], dim=1)
            shared = molecule_noise(factor, graph.molecule)
        return DynamicsOutput(
            acceleration=GaussianAcceleration(self.mean(decoded), covariance, shared),
            latent=h,
            invariant_latent=h[:, : self.invariant_dim],
        )


class EquivariantScore(ScoreNetwork):
    """``sigma * score`` per bead (``1x1o``), conditioned on the dynamics latent irreps.

    Args:
        model: architecture config.
        options: the variant's options.
    """

    def __init__(self, model: ModelConfig, options: EquivariantOptions):
        super().__init__()
        irreps_gated = gated_irreps(options.vector_channels, options.lmax)
        self.n_context_scalars = model.latent_dim
        # context non-scalars + the displacement
        irreps_vectors = (irreps_gated + o3.Irreps("1x1o")).simplify()
        self.encoder = NodeEncoder(
            model.latent_dim + model.embed_dim + 2, irreps_vectors, model.latent_dim,
            irreps_gated, model.mlp_layers,
        )
        self.processor = EquivariantProcessor(model, options, model.score_message_passing_steps)
        self.decoder = GatedBlock(model.latent_dim, irreps_gated)
        self.score = IrrepsLinear(self.decoder.irreps_out, "1x1o")

    def forward(
        self,
        graph: GraphInputs,
        context: torch.Tensor,
        displacement: torch.Tensor,
        log_sigma: torch.Tensor,
    ) -> torch.Tensor:
        """``(n, 3)`` from ``context (n, irreps_latent.dim)``, ``displacement (n, 3)``,
        ``log_sigma (n,)``."""
        context_scalars = context[:, : self.n_context_scalars]
        scalars = torch.cat([
            context_scalars, graph.bead_features, log_sigma[:, None],
            displacement.norm(dim=-1, keepdim=True),
        ], dim=-1)
        vectors = torch.cat([context[:, self.n_context_scalars:], displacement], dim=-1)
        h = self.encoder(scalars, vectors)
        return self.score(self.decoder(self.processor(h, graph)))


def build(
    model: ModelConfig, options: EquivariantOptions, history: int
) -> tuple[EquivariantDynamics, EquivariantScore]:
    """The equivariant dynamics and score networks for ``model`` and ``k = history``."""
    return EquivariantDynamics(model, options, history), EquivariantScore(model, options)


register_variant(Variant(
    name="equivariant",
    build=build,
    covariances=COVARIANCES,
    description="E(3)-equivariant e3nn networks (channel-wise tensor products, gates)",
    options=EquivariantOptions,
))
