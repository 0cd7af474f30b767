"""Noise shared by the beads of a molecule (``model.shared_noise_rank``): the Woodbury NLL against
a dense multivariate normal, samples against the stated covariance, the ``1/sqrt(N)`` scaling,
and the symmetry ``R Σ Rᵀ`` / ``R U Rᵀ`` under rotations and reflections in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import block_diag
from scipy.stats import multivariate_normal

from eqcg.models.gaussian import (
    GaussianAcceleration,
    SharedNoise,
    full_covariance,
    gaussian_noise,
    molecule_noise,
)
from eqcg.simulation.equivariance import random_orthogonal

D = torch.float64
MOLECULES = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # a single-bead molecule among them


def random_gaussian(rank: int, seed: int = 0) -> GaussianAcceleration:
    """A Gaussian over the beads of :data:`MOLECULES` with full per-bead covariances and
    ``rank`` random shared factors."""
    g = torch.Generator().manual_seed(seed)
    n = MOLECULES.numel()
    s = 0.4 * torch.randn(n, 3, 3, generator=g, dtype=D)
    covariance = full_covariance(0.5 * (s + s.transpose(1, 2)), 0.1)
    factor = 0.7 * torch.randn(n, rank, 3, 3, generator=g, dtype=D)
    mean = torch.randn(n, 3, generator=g, dtype=D)
    return GaussianAcceleration(mean, covariance, SharedNoise(factor, MOLECULES))


def dense_covariance(dist: GaussianAcceleration, beads: np.ndarray) -> np.ndarray:
    """``(3N, 3N)`` joint covariance of ``beads`` (one molecule), built densely with numpy."""
    own = block_diag(*dist.covariance[beads].numpy())
    u = dist.shared.factor[beads].numpy()  # (N, r, 3, 3)
    stacked = u.transpose(0, 2, 1, 3).reshape(3 * len(beads), -1)  # rows: bead coordinates
    return own + stacked @ stacked.T


@pytest.mark.parametrize("rank", [1, 2])
def test_nll_equals_the_dense_multivariate_normal(rank: int) -> None:
    dist = random_gaussian(rank)
    target = torch.randn(MOLECULES.numel(), 3, generator=torch.Generator().manual_seed(9),
                         dtype=D)
    nll = dist.nll(target).numpy()
    own = GaussianAcceleration(dist.mean, dist.covariance).nll(target).numpy()
    for m in MOLECULES.unique().tolist():
        beads = np.flatnonzero(MOLECULES.numpy() == m)
        expected = -multivariate_normal(dist.mean[beads].numpy().ravel(),
                                        dense_covariance(dist, beads)).logpdf(
            target[beads].numpy().ravel())
        np.testing.assert_allclose(nll[beads].sum(), expected, rtol=1e-11)
        shared_part = nll[beads] - own[beads]  # the molecule's share, spread evenly
        np.testing.assert_allclose(shared_part, shared_part.mean(), rtol=1e-10)


def test_without_shared_factors_the_nll_is_that_of_independent_beads() -> None:
    dist = random_gaussian(1)
    zero = GaussianAcceleration(dist.mean, dist.covariance,
                                SharedNoise(torch.zeros_like(dist.shared.factor), MOLECULES))
    target = torch.zeros_like(dist.mean)
    independent = GaussianAcceleration(dist.mean, dist.covariance).nll(target)
    torch.testing.assert_close(zero.nll(target), independent, rtol=1e-13, atol=1e-13)


def test_samples_have_the_joint_covariance() -> None:
    """20,000 copies of one 3-bead molecule sampled at once: the empirical covariance of its
    9 coordinates matches the dense ``D + U Uᵀ`` within sampling error."""
    template = random_gaussian(2)
    beads = np.array([0, 1, 2])
    copies = 20_000
    molecule = torch.arange(copies).repeat_interleave(3)
    tile = lambda t: t[beads].repeat(copies, *([1] * (t.dim() - 1)))  # noqa: E731
    dist = GaussianAcceleration(tile(template.mean), tile(template.covariance),
                                SharedNoise(tile(template.shared.factor), molecule))
    samples = dist.draw(gaussian_noise(torch.Generator().manual_seed(3)))
    flat = samples.reshape(copies, 9).numpy()
    expected = dense_covariance(template, beads)
    np.testing.assert_allclose(flat.mean(axis=0), template.mean[beads].numpy().ravel(),
                               atol=5 * np.sqrt(expected.diagonal().max() / copies))
    scale = np.sqrt(np.outer(expected.diagonal(), expected.diagonal()))
    assert np.abs(np.cov(flat.T) - expected).max() < 0.05 * scale.max()
    marginal = dist.marginal_covariance()[:3].numpy()
    for i in range(3):
        np.testing.assert_allclose(marginal[i], expected[3 * i:3 * i + 3, 3 * i:3 * i + 3],
                                   rtol=1e-12)


def test_molecule_noise_divides_by_the_square_root_of_the_molecule_size() -> None:
    factor = torch.eye(3, dtype=D).expand(MOLECULES.numel(), 1, 3, 3)
    shared = molecule_noise(factor, MOLECULES)
    sizes = torch.bincount(MOLECULES)[MOLECULES].to(D)
    torch.testing.assert_close(shared.factor[:, 0, 0, 0], 1.0 / sizes.sqrt())
    # the centre of mass of a molecule of N beads with factors b I / sqrt(N) and no own noise
    # moves with variance b² / N per axis, as N independent unit kicks of size b would give
    beads = np.flatnonzero(MOLECULES.numpy() == 3)
    dist = GaussianAcceleration(torch.zeros(MOLECULES.numel(), 3, dtype=D),
                                1e-12 * torch.eye(3, dtype=D).expand(MOLECULES.numel(), 3, 3),
                                shared)
    average = np.kron(np.full(len(beads), 1.0 / len(beads)), np.eye(3))
    com = average @ dense_covariance(dist, beads) @ average.T
    np.testing.assert_allclose(com, np.eye(3) / len(beads), atol=1e-10)


@pytest.mark.parametrize("improper", [False, True], ids=["rotation", "reflection"])
def test_nll_invariant_and_sample_rotates(improper: bool) -> None:
    dist = random_gaussian(2)
    n, rank = MOLECULES.numel(), 2
    generator = torch.Generator().manual_seed(4)
    target = torch.randn(n, 3, generator=generator, dtype=D)
    z = torch.randn(n, 3, generator=generator, dtype=D)
    u = torch.randn(n, rank, 3, generator=generator, dtype=D)
    for _ in range(3):
        r = random_orthogonal(generator, improper).to(D)
        moved = GaussianAcceleration(dist.mean @ r.T, r @ dist.covariance @ r.T,
                                     SharedNoise(r @ dist.shared.factor @ r.T, MOLECULES))
        torch.testing.assert_close(moved.nll(target @ r.T), dist.nll(target), rtol=1e-10,
                                   atol=0)
        torch.testing.assert_close(moved.marginal_covariance(),
                                   r @ dist.marginal_covariance() @ r.T, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(moved.sample(z @ r.T, u @ r.T), dist.sample(z, u) @ r.T,
                                   rtol=1e-10, atol=1e-12)


def test_sampling_without_the_shared_draw_is_refused() -> None:
    dist = random_gaussian(1)
    with pytest.raises(ValueError, match="shared_noise"):
        dist.sample(torch.zeros_like(dist.mean))
