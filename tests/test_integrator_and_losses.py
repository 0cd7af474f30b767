"""Euler step and its inverse; NLL and DSM losses against closed forms; Langevin refinement."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from eqcg.models.gaussian import (
    GaussianAcceleration,
    diagonal_covariance,
    full_covariance,
    gaussian_noise,
)
from eqcg.models.integrator import acceleration_target, append_frame, euler_step
from eqcg.simulation.langevin import annealed_langevin
from eqcg.training.losses import score_matching_loss

D = torch.float64


def test_euler_step_and_acceleration_target_are_exact_inverses():
    g = torch.Generator().manual_seed(0)
    history = torch.randn(7, 5, 3, generator=g, dtype=D)
    accel = torch.randn(7, 3, generator=g, dtype=D)
    next_pos = euler_step(history, accel)
    torch.testing.assert_close(acceleration_target(history, next_pos), accel, rtol=0, atol=1e-12)
    target = torch.randn(7, 3, generator=g, dtype=D)
    torch.testing.assert_close(euler_step(history, acceleration_target(history, target)), target,
                               rtol=0, atol=1e-12)


def test_acceleration_target_is_the_second_finite_difference():
    x = np.random.default_rng(0).normal(size=(6, 4, 3))
    history, target = torch.tensor(x[:, :3]), torch.tensor(x[:, 3])
    expected = x[:, 3] - 2 * x[:, 2] + x[:, 1]
    np.testing.assert_allclose(acceleration_target(history, target).numpy(), expected, atol=1e-14)
    appended = append_frame(history, target)
    np.testing.assert_allclose(appended.numpy(), x[:, 1:], atol=0)


def test_gaussian_nll_matches_scipy_for_diagonal_and_full_covariance():
    rng = np.random.default_rng(1)
    mean, target = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    std = rng.uniform(0.2, 2.0, size=(4, 3))
    s = rng.normal(size=(4, 3, 3))
    log_cov = 0.5 * (s + s.transpose(0, 2, 1))
    diagonal = diagonal_covariance(torch.tensor(std))
    for cov in (diagonal, full_covariance(torch.tensor(log_cov), 0.1)):
        nll = GaussianAcceleration(torch.tensor(mean), cov).nll(torch.tensor(target)).numpy()
        expected = [-multivariate_normal(mean[i], cov[i].numpy()).logpdf(target[i])
                    for i in range(4)]
        np.testing.assert_allclose(nll, expected, rtol=1e-10)


def test_full_covariance_is_matrix_exponential_plus_floor():
    log_cov = torch.tensor([[[0.3, 0.1, 0.0], [0.1, -0.2, 0.05], [0.0, 0.05, 0.4]]], dtype=D)
    eigvals, eigvecs = np.linalg.eigh(log_cov[0].numpy())
    expected = eigvecs @ np.diag(np.exp(eigvals) + 0.01) @ eigvecs.T
    np.testing.assert_allclose(full_covariance(log_cov, 0.1)[0].numpy(), expected, atol=1e-12)


def test_sampling_uses_the_symmetric_square_root():
    log_cov = torch.tensor([[0.5, 0.2, 0.0], [0.2, -0.3, 0.1], [0.0, 0.1, 0.2]], dtype=D)
    cov = full_covariance(log_cov.expand(2000, 3, 3), 0.05)
    dist = GaussianAcceleration(torch.zeros(2000, 3, dtype=D), cov)
    samples = dist.sample(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0),
                                      dtype=D))
    empirical = np.cov(samples.numpy().T)
    np.testing.assert_allclose(empirical, cov[0].numpy(), atol=0.15)
    root = dist.sqrt_covariance()[0]
    torch.testing.assert_close(root @ root, cov[0])
    torch.testing.assert_close(root, root.T)


def test_score_matching_loss_matches_sigma_weighted_closed_form():
    rng = np.random.default_rng(2)
    x, z = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    sigma = rng.uniform(0.1, 2.0, size=(5, 1))
    score = rng.normal(size=(5, 3))
    noisy = x + sigma * z
    target = -(noisy - x) / sigma**2
    expected = np.mean(0.5 * sigma[:, 0] ** 2 * ((score - target) ** 2).sum(1))
    loss = score_matching_loss(torch.tensor(sigma * score), torch.tensor(z))
    assert math.isclose(float(loss), expected, rel_tol=1e-12)


@pytest.mark.parametrize(
    "schedule,sigmas,steps,step_size",
    [("constant", [1.0, 0.3, 0.1, 0.03, 0.01], 150, 0.02),
     ("ncsn", [1.0, 0.5, 0.2, 0.1], 300, 1e-3)],
)
def test_langevin_with_exact_gaussian_score_samples_that_gaussian(
    schedule, sigmas, steps, step_size
):
    mu, s = torch.tensor([1.0, -2.0, 0.5], dtype=D), 0.7
    sigmas = torch.tensor(sigmas, dtype=D)

    def score(x, sigma):  # exact score of N(mu, s^2) convolved with N(0, sigma^2), sigma (n,)
        return -(x - mu) / (s**2 + sigma[:, None] ** 2)

    start = torch.full((4000, 3), 6.0, dtype=D)
    out = annealed_langevin(score, start, sigmas, steps, step_size,
                            gaussian_noise(torch.Generator().manual_seed(0)), schedule)
    torch.testing.assert_close(out.mean(0), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(out.std(0), torch.full((3,), s, dtype=D), atol=0.05, rtol=0)
    # without the score the same noise would only diffuse away from the start
    drift_free = annealed_langevin(lambda x, _: torch.zeros_like(x), start, sigmas, steps,
                                   step_size, gaussian_noise(torch.Generator().manual_seed(0)),
                                   schedule)
    assert float((drift_free.mean(0) - mu).abs().min()) > 3.0


def test_ncsn_schedule_scales_steps_with_sigma_squared():
    sigmas = torch.tensor([1.0, 0.1], dtype=D)
    moves = []
    annealed_langevin(lambda x, sigma: moves.append(float(sigma)) or torch.ones_like(x),
                      torch.zeros(1, 3, dtype=D), sigmas, 1, 1e-3, lambda x: torch.zeros_like(x))
    x = annealed_langevin(lambda x, _: torch.ones_like(x), torch.zeros(1, 3, dtype=D), sigmas, 1,
                          1e-3, lambda x: torch.zeros_like(x), "ncsn")
    assert moves == [1.0, 0.1]
    torch.testing.assert_close(x, torch.full((1, 3), 1e-3 * 100 + 1e-3, dtype=D))
    x = annealed_langevin(lambda x, _: torch.ones_like(x), torch.zeros(1, 3, dtype=D), sigmas, 1,
                          1e-3, lambda x: torch.zeros_like(x), "constant")
    torch.testing.assert_close(x, torch.full((1, 3), 2e-3, dtype=D))


def test_pushforward_term_is_the_nll_after_the_models_own_sampled_step():
    from eqcg import keys
    from eqcg.config import ModelConfig, ScoreConfig
    from eqcg.models.simulator import Simulator
    from eqcg.testing import random_batch
    from eqcg.training.losses import compute_losses

    batch, vocabulary = random_batch(history=5)  # k + 1 = 5 frames for a model of k = 4
    torch.manual_seed(0)
    sim = Simulator(ModelConfig(latent_dim=16, embed_dim=8), ScoreConfig(), vocabulary,
                    history=4, acceleration_scale=0.5).double()
    terms = compute_losses(sim, batch, noise_begin=0.0, noise_end=0.0, score_weight=1.0,
                           property_weight=1.0, generator=torch.Generator().manual_seed(4),
                           pushforward=True)
    frames = batch[keys.POS_HISTORY]
    # the draws of compute_losses in order: score level, score noise, then the pushforward sample
    generator = torch.Generator().manual_seed(4)
    torch.randint(len(sim.sigmas), (batch.num_graphs,), generator=generator)
    torch.randn(frames[:, 0].shape, generator=generator, dtype=D)
    first = sim.predict(batch, frames[:, :-1]).acceleration
    sample = first.sample(torch.randn(frames[:, 0].shape, generator=generator, dtype=D))
    pushed = append_frame(frames[:, :-1], euler_step(frames[:, :-1], sample))
    target = acceleration_target(pushed, batch[keys.TARGET_POS]) / sim.acceleration_scale
    expected = sim.predict(batch, pushed).normalized.nll(target).mean()
    torch.testing.assert_close(terms.pushforward, expected, rtol=1e-12, atol=0)
    # the one-step terms see the last k frames, as without pushforward
    plain = compute_losses(sim, batch.clone().update({keys.POS_HISTORY: frames[:, 1:]}),
                           noise_begin=0.0, noise_end=0.0, score_weight=1.0, property_weight=1.0,
                           generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(terms.nll, plain.nll, rtol=1e-12, atol=0)
    torch.testing.assert_close(terms.total, plain.total + terms.pushforward, rtol=1e-12, atol=0)
