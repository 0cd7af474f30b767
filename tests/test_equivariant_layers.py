"""The fused layers of eqcg.models.equivariant_layers equal e3nn's own modules (float64), and
checkpoints written while the networks used e3nn's modules still load."""

from __future__ import annotations

import pytest
import torch
from e3nn import nn as e3nn_nn
from e3nn import o3

from eqcg.config import Config, DataConfig, ModelConfig, ScoreConfig
from eqcg.errors import CheckpointError
from eqcg.graphs.system import TypeVocabulary
from eqcg.models.checkpoint import (
    RunMetadata,
    build_simulator,
    load_checkpoint,
    model_state,
    save_checkpoint,
)
from eqcg.models.equivariant_layers import Gate, IrrepsLinear
from eqcg.models.registry import check_variant
from eqcg.models.simulator import Simulator

IRREPS_PAIRS = [
    ("64x0e + 16x1o", "80x0e + 16x1o"),
    ("8x0e + 4x1o + 2x2e", "3x0e + 5x1o + 1x2e"),
    ("4x1o + 3x0e + 1x1o", "2x1o + 6x0e"),  # not simplified: two inputs feed one output
    ("5x0e + 3x1o", "1x1o"),
    ("5x0e", "2x0e + 3x1o"),  # an output block no input reaches
]


@pytest.mark.parametrize(("irreps_in", "irreps_out"), IRREPS_PAIRS)
def test_irreps_linear_equals_e3nn_linear_with_the_same_weights(irreps_in, irreps_out):
    reference = o3.Linear(irreps_in, irreps_out).double()
    linear = IrrepsLinear(irreps_in, irreps_out).double()
    assert linear.weight.shape == reference.weight.shape
    with torch.no_grad():
        linear.weight.copy_(reference.weight)
    x = torch.randn(17, o3.Irreps(irreps_in).dim, dtype=torch.float64)
    torch.testing.assert_close(linear(x), reference(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n_scalars", "irreps_gated"), [(6, "4x1o"), (3, "2x1o + 3x2e")])
def test_gate_equals_e3nn_gate(n_scalars, irreps_gated):
    gated = o3.Irreps(irreps_gated)
    reference = e3nn_nn.Gate(
        f"{n_scalars}x0e", [torch.nn.functional.silu],
        f"{gated.num_irreps}x0e", [torch.sigmoid], gated,
    )
    gate = Gate(n_scalars, gated)
    assert gate.irreps_in.simplify() == reference.irreps_in
    assert gate.irreps_out.simplify() == reference.irreps_out.simplify()
    x = torch.randn(11, gate.irreps_in.dim, dtype=torch.float64)
    torch.testing.assert_close(gate(x), reference(x), rtol=1e-12, atol=1e-12)


def _equivariant_checkpoint() -> tuple[Simulator, dict]:
    model = check_variant(ModelConfig(
        variant="equivariant", covariance="full", embed_dim=8, latent_dim=16,
        message_passing_steps=1, score_message_passing_steps=1,
        options={"equivariant": {"vector_channels": 4, "radial_basis": 4}},
    ), "test")
    vocabulary = TypeVocabulary(("A", "B"), ("A-A", "A-B", "B-B"))
    simulator = Simulator(model, ScoreConfig(n_levels=3), vocabulary, history=3)
    config = Config(data=DataConfig(history=3), model=model, score=ScoreConfig(n_levels=3))
    return simulator, model_state(simulator, config, RunMetadata())


def test_checkpoints_with_e3nn_constant_buffers_still_load(tmp_path):
    """Checkpoints written while the networks used e3nn's Linear and Gate hold their constant
    buffers (output_mask, empty weight/bias): they load; a learned weight that does not fit
    is still refused."""
    simulator, state = _equivariant_checkpoint()
    weights = dict(state["model"])
    weights["dynamics.decoder.linear.output_mask"] = torch.ones(4)
    weights["dynamics.decoder.linear.bias"] = torch.zeros(0)
    weights["dynamics.decoder.gate.mul.weight"] = torch.zeros(0)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {**state, "model": weights})
    reloaded, _ = build_simulator(load_checkpoint(path), str(path))
    for key, value in simulator.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)
    weights["dynamics.decoder.extra.weight"] = torch.ones(3)
    save_checkpoint(path, {**state, "model": weights})
    with pytest.raises(CheckpointError, match="weights do not fit"):
        build_simulator(load_checkpoint(path), str(path))
