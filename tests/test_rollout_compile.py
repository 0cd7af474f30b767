"""A rollout with torch.compile'd networks equals the eager one (float64, deterministic), and
compiling changes no global setting of torch."""

from __future__ import annotations

import pytest
import torch

from eqcg.config import ModelConfig, RolloutConfig, ScoreConfig
from eqcg.models.simulator import Simulator, eager_fallback
from eqcg.simulation.rollout import rollout
from eqcg.testing import random_batch


def test_compiled_rollout_equals_eager(single_thread):
    model = ModelConfig(variant="equivariant", covariance="full", radius=5.0, embed_dim=8,
                        latent_dim=8, message_passing_steps=1, score_message_passing_steps=1,
                        options={"equivariant": {"vector_channels": 4, "radial_basis": 4}})
    batch, vocabulary = random_batch(history=3, pbc=True, dtype=torch.float64)
    torch.manual_seed(0)
    simulator = Simulator(model, ScoreConfig(n_levels=3), vocabulary, history=3).double().eval()
    settings = RolloutConfig(deterministic=True, refine_levels=3,
                             schedule="ddim")  # deterministic sampler

    def run() -> torch.Tensor:
        return rollout(simulator, batch.clone(), 3, settings, show_progress=False).positions

    eager = run()
    previous = torch._dynamo.config.suppress_errors
    simulator.compile_networks()
    assert torch._dynamo.config.suppress_errors is previous
    torch._dynamo.utils.counters.clear()
    compiled = run()
    assert torch._dynamo.config.suppress_errors is previous
    # the networks were really captured (not silently run eagerly) ...
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2
    # ... and compute the same rollout
    torch.testing.assert_close(compiled, eager, rtol=1e-9, atol=1e-9)


def test_a_graph_that_fails_to_compile_runs_eagerly_inside_the_fallback_only():
    def failing(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    x = torch.arange(3.0)
    torch._dynamo.reset()
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="no compiler here"):
        torch.compile(lambda t: 2 * t, backend=failing)(x)
    previous = torch._dynamo.config.suppress_errors
    with eager_fallback():
        torch.testing.assert_close(torch.compile(lambda t: 3 * t, backend=failing)(x), 3 * x)
    assert torch._dynamo.config.suppress_errors is previous
