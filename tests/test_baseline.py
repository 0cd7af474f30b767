"""The frame-dependent baseline: shapes, a valid diagonal covariance, gradients, batching, and
that it is translation invariant but *not* rotation equivariant (so the equivariance check can
fail). Bead permutations are covered by the shared variant test mixin."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.config import ModelConfig, ScoreConfig
from eqcg.errors import ConfigError
from eqcg.models.baseline import BaselineDynamics, BaselineScore
from eqcg.models.integrator import acceleration_target
from eqcg.models.registry import check_variant, get_variant
from eqcg.models.simulator import Simulator
from eqcg.testing import random_batch

HISTORY = 4
MODEL = ModelConfig(
    variant="baseline", radius=5.0, embed_dim=8, latent_dim=16, message_passing_steps=2,
    score_message_passing_steps=2, mlp_layers=1, min_std=0.05,
)


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    torch.manual_seed(0)
    _, vocabulary = random_batch(history=HISTORY)
    sim = Simulator(MODEL, ScoreConfig(), vocabulary, history=HISTORY, velocity_scale=0.7,
                    acceleration_scale=0.4)
    return sim.double().eval()


@dataclass
class Outputs:
    mean: torch.Tensor
    covariance: torch.Tensor
    normalized_covariance: torch.Tensor
    nll: torch.Tensor
    latent: torch.Tensor
    score: torch.Tensor


def evaluate(sim: Simulator, batch: Batch, noise: torch.Tensor, sigma: torch.Tensor) -> Outputs:
    """All outputs on ``batch``; the score at ``target_pos + sigma * noise``."""
    pos_history = batch[keys.POS_HISTORY]
    pred = sim.predict(batch, pos_history)
    target = acceleration_target(pos_history, batch[keys.TARGET_POS])
    noisy = batch[keys.TARGET_POS] + sigma[:, None] * noise
    score = sim.score_times_sigma(batch, noisy, pos_history[:, -1], sigma, sim.embed(batch),
                                  pred.latent)
    return Outputs(pred.acceleration.mean, pred.acceleration.covariance,
                   pred.normalized.covariance, pred.acceleration.nll(target), pred.latent, score)


def score_inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard normal ``noise (n, 3)`` and ``sigma (n,)`` in ``[0.1, 1.1)``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    sigma = 0.1 + torch.rand(n, generator=generator, dtype=torch.float64)
    return noise, sigma


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def test_shapes_covariance_and_nll(simulator: Simulator) -> None:
    batch, _ = random_batch(history=HISTORY, pbc=True, triclinic=True, dtype=torch.float64)
    n = batch[keys.POS_HISTORY].shape[0]
    with torch.no_grad():
        out = evaluate(simulator, batch, *score_inputs(n))
    assert out.mean.shape == (n, 3) and out.score.shape == (n, 3)
    assert out.covariance.shape == (n, 3, 3) and out.nll.shape == (n,)
    assert out.latent.shape == (n, MODEL.latent_dim)
    assert simulator.dynamics.invariant_dim == MODEL.latent_dim
    cov = out.normalized_covariance
    assert torch.equal(cov, cov.transpose(-1, -2))
    assert torch.equal(cov, torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1)))
    assert (torch.diagonal(cov, dim1=-2, dim2=-1) >= MODEL.min_std**2).all()
    assert (torch.linalg.eigvalsh(out.covariance) > 0).all()
    for name in ("mean", "covariance", "nll", "latent", "score"):
        assert torch.isfinite(getattr(out, name)).all(), name
        assert getattr(out, name).dtype == torch.float64, name


def test_gradients_reach_every_parameter() -> None:
    batch, vocabulary = random_batch(history=HISTORY, pbc=True, dtype=torch.float64)
    torch.manual_seed(0)
    sim = Simulator(MODEL, ScoreConfig(), vocabulary, history=HISTORY).double()
    n = batch[keys.POS_HISTORY].shape[0]
    out = evaluate(sim, batch, *score_inputs(n))
    (out.nll.mean() + out.score.pow(2).mean()).backward()
    for name, parameter in sim.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 0, name


@pytest.mark.parametrize("pbc", [False, True])
def test_batch_of_two_equals_each_alone(simulator: Simulator, pbc: bool) -> None:
    batch, _ = random_batch(n_systems=2, history=HISTORY, pbc=pbc, triclinic=pbc,
                            dtype=torch.float64)
    n = batch[keys.POS_HISTORY].shape[0]
    noise, sigma = score_inputs(n)
    with torch.no_grad():
        together = evaluate(simulator, batch, noise, sigma)
        ptr = batch.ptr.tolist()
        for g in range(2):
            beads = slice(ptr[g], ptr[g + 1])
            alone = evaluate(simulator, Batch.from_data_list([batch.get_example(g)]),
                             noise[beads], sigma[beads])
            for name in ("mean", "covariance", "nll", "latent", "score"):
                torch.testing.assert_close(getattr(alone, name), getattr(together, name)[beads],
                                           rtol=0, atol=1e-10, msg=name)


def moved(batch: Batch, rotation: torch.Tensor, shift: torch.Tensor) -> Batch:
    """``batch`` with positions mapped ``x -> x Rᵀ + shift`` and box rows ``b -> b Rᵀ``."""
    out = batch.clone()
    out[keys.POS_HISTORY] = batch[keys.POS_HISTORY] @ rotation.T + shift
    out[keys.TARGET_POS] = batch[keys.TARGET_POS] @ rotation.T + shift
    out[keys.BOX] = batch[keys.BOX] @ rotation.T
    return out


def test_translation_invariant_but_not_rotation_equivariant(simulator: Simulator) -> None:
    batch, _ = random_batch(history=HISTORY, pbc=True, triclinic=True, dtype=torch.float64)
    n = batch[keys.POS_HISTORY].shape[0]
    noise, sigma = score_inputs(n)
    torch.manual_seed(7)
    rotation = o3.rand_matrix(dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    shift = torch.tensor([3.1, -7.4, 12.2], dtype=torch.float64)
    with torch.no_grad():
        reference = evaluate(simulator, batch, noise, sigma)
        translated = evaluate(simulator, moved(batch, eye, shift), noise, sigma)
        rotated = evaluate(simulator, moved(batch, rotation, shift), noise @ rotation.T, sigma)
    assert relative_error(translated.mean, reference.mean) < 1e-9
    assert relative_error(translated.score, reference.score) < 1e-9
    assert relative_error(rotated.mean, reference.mean @ rotation.T) > 1e-3
    assert relative_error(rotated.score, reference.score @ rotation.T) > 1e-3
    assert relative_error(rotated.covariance, rotation @ reference.covariance @ rotation.T) > 1e-3


def test_registered_and_rejects_other_covariances() -> None:
    variant = get_variant("baseline")
    assert variant.covariances == ("diagonal",)
    dynamics, score = variant.build(MODEL, HISTORY)
    assert isinstance(dynamics, BaselineDynamics) and isinstance(score, BaselineScore)
    with pytest.raises(ConfigError, match="covariance 'isotropic' is not supported by variant"):
        check_variant(ModelConfig(variant="baseline", covariance="isotropic"), "test")
