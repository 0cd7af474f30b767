"""Multi-layer perceptrons shared by the frame-dependent networks."""

from __future__ import annotations

from torch import nn


def mlp(
    in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int, layer_norm: bool = True
) -> nn.Sequential:
    """``in -> [Linear, SiLU] x hidden_layers -> Linear -> out``, optionally LayerNorm last."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    if layer_norm:
        layers.append(nn.LayerNorm(out_dim))
    return nn.Sequential(*layers)
