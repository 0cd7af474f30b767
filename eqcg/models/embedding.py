"""Embedding GNN on the fine (atom) graph: atom and bond types in, bead features out.

It sees no coordinates, so its output is invariant under any rigid motion and is shared by
every variant. Atom features = type embedding + a linear map of log(mass); a few residual
message-passing layers run over the bonds (bond-type embeddings on the edges); a bead's
feature is the mean of its atoms' features.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from eqcg import keys
from eqcg.models.mlp import mlp


class EmbeddingGNN(nn.Module):
    """Fine-level message passing pooled to beads.

    Args:
        n_atom_types: size of the atom-type vocabulary.
        n_bond_types: size of the bond-type vocabulary.
        dim: feature width.
        layers: message-passing layers over bonds.
        mlp_layers: hidden layers of each MLP.
    """

    def __init__(
        self, n_atom_types: int, n_bond_types: int, dim: int, layers: int, mlp_layers: int
    ):
        super().__init__()
        self.atom_embedding = nn.Embedding(n_atom_types, dim)
        self.bond_embedding = nn.Embedding(max(n_bond_types, 1), dim)
        self.mass_embedding = nn.Linear(1, dim)
        self.messages = nn.ModuleList(mlp(3 * dim, dim, dim, mlp_layers) for _ in range(layers))
        self.updates = nn.ModuleList(mlp(2 * dim, dim, dim, mlp_layers) for _ in range(layers))
        self.dim = dim

    def forward(self, batch: Batch) -> torch.Tensor:
        """``(n_beads, dim)`` invariant bead features."""
        masses = batch[keys.ATOM_MASSES].unsqueeze(-1)
        h = self.atom_embedding(batch[keys.ATOM_TYPES]) + self.mass_embedding(torch.log(masses))
        src, dst = batch[keys.FINE_EDGE_INDEX]
        bond = self.bond_embedding(batch[keys.FINE_EDGE_TYPES])
        for message, update in zip(self.messages, self.updates):
            m = message(torch.cat([h[src], h[dst], bond], dim=-1))
            aggregated = scatter(m, dst, dim=0, dim_size=h.shape[0], reduce="sum")
            h = h + update(torch.cat([h, aggregated], dim=-1))
        n_beads = batch[keys.POS_HISTORY].shape[0]
        return scatter(h, batch[keys.ATOM_TO_BEAD], dim=0, dim_size=n_beads, reduce="mean")
