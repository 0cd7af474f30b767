"""A third variant defined and registered here, outside eqcg, with its own options section
(``model.toy_distance``): it trains, rolls out, round-trips its config and passes the shipped
variant test-suite, without any edit to eqcg's files."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from eqcg import load_dataset, write_dataset
from eqcg.config import ModelConfig, load_config, require_positive
from eqcg.errors import ConfigError
from eqcg.graphs.neighbors import N_EDGE_TYPES
from eqcg.models.gaussian import GaussianAcceleration, isotropic_covariance
from eqcg.models.interface import DynamicsNetwork, DynamicsOutput, GraphInputs, ScoreNetwork
from eqcg.models.mlp import mlp
from eqcg.models.registry import Variant, register_variant, variants
from eqcg.simulation.runner import run_rollout
from eqcg.testing import random_system
from eqcg.testing.variant_tests import VariantTests
from eqcg.training.trainer import train

pytestmark = pytest.mark.usefixtures("single_thread")


@dataclass
class ToyOptions:
    """Options of the toy variant (``model.toy_distance``)."""

    hidden: int = 8  # width of the invariant features

    def validate(self, prefix: str, where: str) -> None:
        require_positive(self, ("hidden",), prefix, where)


def edge_sum(graph: GraphInputs, node: torch.Tensor, weight: nn.Module) -> torch.Tensor:
    """``(n, 3)``: the mean over a bead's incoming edges of the edge vector scaled by an
    invariant weight of both beads' features, the edge length and type (O(3)-equivariant)."""
    src, dst = graph.edge_index
    length = graph.edge_vec.norm(dim=-1, keepdim=True)
    edge_type = nn.functional.one_hot(graph.edge_type, N_EDGE_TYPES).to(length.dtype)
    w = weight(torch.cat([node[src], node[dst], length, edge_type], dim=-1))
    summed = torch.zeros_like(node[:, :3]).index_add_(0, dst, w * graph.edge_vec)
    degree = torch.zeros_like(node[:, 0]).index_add_(0, dst, torch.ones_like(length[:, 0]))
    return summed / degree.clamp(min=1.0)[:, None]


class ToyDynamics(DynamicsNetwork):
    """Mean = weighted edge vectors minus a friction (0 to 1) times the last velocity (stable
    rollouts even untrained); isotropic spread."""

    def __init__(self, model: ModelConfig, options: ToyOptions, history: int):
        super().__init__()
        self.invariant_dim = options.hidden
        self.min_std = model.min_std
        self.node = mlp(model.embed_dim + history - 1, options.hidden, options.hidden, 1)
        self.edge = mlp(2 * options.hidden + 1 + N_EDGE_TYPES, options.hidden, 1, 1,
                        layer_norm=False)
        self.friction = nn.Linear(options.hidden, 1)
        self.std = nn.Linear(options.hidden, 1)

    def forward(self, graph: GraphInputs, velocities: torch.Tensor) -> DynamicsOutput:
        h = self.node(torch.cat([graph.bead_features, velocities.norm(dim=-1)], dim=-1))
        mean = edge_sum(graph, h, self.edge) - torch.sigmoid(self.friction(h)) * velocities[:, -1]
        std = nn.functional.softplus(self.std(h)[:, 0]) + self.min_std
        return DynamicsOutput(GaussianAcceleration(mean, isotropic_covariance(std)), h, h)


class ToyScore(ScoreNetwork):
    """``sigma * score``: weighted edge vectors minus a shrink factor (0 to 1) times the noisy
    displacement (a pull back towards the predicted step, as the score of pure noise)."""

    def __init__(self, model: ModelConfig, options: ToyOptions):
        super().__init__()
        self.node = mlp(options.hidden + model.embed_dim + 2, options.hidden, options.hidden, 1)
        self.edge = mlp(2 * options.hidden + 1 + N_EDGE_TYPES, options.hidden, 1, 1,
                        layer_norm=False)
        self.shrink = nn.Linear(options.hidden, 1)

    def forward(self, graph: GraphInputs, context: torch.Tensor, displacement: torch.Tensor,
                log_sigma: torch.Tensor) -> torch.Tensor:
        g = self.node(torch.cat([context, graph.bead_features,
                                 displacement.norm(dim=-1, keepdim=True), log_sigma[:, None]],
                                dim=-1))
        return edge_sum(graph, g, self.edge) - torch.sigmoid(self.shrink(g)) * displacement


def build(model: ModelConfig, options: ToyOptions, history: int) -> tuple[ToyDynamics, ToyScore]:
    return ToyDynamics(model, options, history), ToyScore(model, options)


register_variant(Variant(
    name="toy_distance", build=build, covariances=("isotropic",),
    description="toy: invariant weights on edge vectors and velocities", options=ToyOptions,
))

TOY = ModelConfig(variant="toy_distance", covariance="isotropic", radius=5.0, embed_dim=8,
                  latent_dim=16, options={"toy_distance": {"hidden": 6}})


class TestToyVariant(VariantTests):
    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> ModelConfig:
        return TOY


def test_trains_rolls_out_and_saves_its_options(tmp_path):
    assert "toy_distance" in variants()
    write_dataset(tmp_path / "data", [random_system(f"s{i}", n_frames=10, seed=i)
                                      for i in range(3)])
    config_file = tmp_path / "toy.yaml"
    config_file.write_text(
        "data: {history: 3, cg_level: 3, whole_molecule_max_atoms: 1, split: [1.0, 0.0, 0.0]}\n"
        "model: {variant: toy_distance, covariance: isotropic, radius: 5.0, embed_dim: 8,\n"
        "        toy_distance: {hidden: 4}}\n"
        "score: {n_levels: 3}\n"
        "train: {max_steps: 3, val_every: 3, val_windows: 4, batch_size: 2}\n"
    )
    config = load_config(config_file, ["model.toy_distance.hidden=5"])
    run_dir = tmp_path / "run"
    result = train(config, tmp_path / "data", run_dir, device="cpu", show_progress=False)
    assert result.step == 3
    assert result.simulator.dynamics.invariant_dim == 5
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["toy_distance"] == {"hidden": 5}
    assert load_config(run_dir / "config.yaml").model == config.model

    out = run_rollout(run_dir, tmp_path / "data", tmp_path / "rollout", 4, systems=["s0"],
                      changes={"deterministic": True}, device="cpu", show_progress=False)
    with load_dataset(out / "rollout.h5") as rollout:
        positions = rollout["s0"].positions[()]
    assert positions.shape[0] == 5 and np.isfinite(positions).all()

    bad = tmp_path / "bad.yaml"
    bad.write_text(config_file.read_text().replace("hidden: 4", "hiden: 4"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'model\.toy_distance\.hiden'"):
        train(load_config(bad), tmp_path / "data", tmp_path / "bad", show_progress=False)
