"""The Gaussian head's matrix functions without host synchronisation: the exponential of the
full covariance and the symmetric square root that samples, against torch.linalg (which syncs),
and their equivariance."""

from __future__ import annotations

import pytest
import torch

from eqcg.models.gaussian import full_covariance, matrix_exp, symmetric_sqrt
from eqcg.simulation.equivariance import random_orthogonal
from eqcg.testing.host_syncs import HostSyncCounter

D = torch.float64


def symmetric(n: int, scale: float, seed: int) -> torch.Tensor:
    a = torch.randn(n, 3, 3, dtype=D, generator=torch.Generator().manual_seed(seed)) * scale
    return (a + a.transpose(-1, -2)) / 2


def eigh_sqrt(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a.double())
    return v @ torch.diag_embed(w.clamp_min(0).sqrt()) @ v.transpose(-1, -2)


def relative(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.detach().double(), y.detach().double()
    return float(((x - y).norm(dim=(-2, -1)) / y.norm(dim=(-2, -1))).max())


@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0, 20.0])
def test_matrix_exp_equals_torch_and_so_do_its_gradients(scale):
    a = symmetric(500, scale, 0).requires_grad_()
    ours, theirs = matrix_exp(a), torch.linalg.matrix_exp(a)
    assert relative(ours, theirs) < 1e-12
    weights = torch.randn(500, 3, 3, dtype=D, generator=torch.Generator().manual_seed(1))
    grad_ours, = torch.autograd.grad((ours * weights).sum(), a)
    grad_theirs, = torch.autograd.grad((theirs * weights).sum(), a)
    assert relative(grad_ours, grad_theirs) < 1e-10


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_symmetric_sqrt_equals_the_eigendecomposition_on_the_covariances_of_the_head(scale):
    """Covariances as the full head makes them (``expm(S) + 0.05² I``; condition numbers up to
    5e5 at the widest scale), in float64 and float32."""
    covariance = full_covariance(symmetric(2000, scale, 2), 0.05)
    root = eigh_sqrt(covariance)
    assert relative(symmetric_sqrt(covariance), root) < 1e-9
    rounded = covariance.float()  # float32 input, computed in float64 inside
    assert relative(symmetric_sqrt(rounded), eigh_sqrt(rounded)) < 1e-6
    torch.testing.assert_close(symmetric_sqrt(covariance) @ symmetric_sqrt(covariance),
                               covariance, rtol=1e-9, atol=0)


def test_symmetric_sqrt_of_equal_and_close_eigenvalues():
    eigenvalues = torch.tensor([[1, 1, 1], [1, 1, 2], [1, 1 + 1e-9, 2], [2, 1, 1],
                                [1e-6, 1, 1], [3, 2, 1]], dtype=D)
    frame = torch.linalg.qr(torch.randn(6, 3, 3, dtype=D,
                                        generator=torch.Generator().manual_seed(3)))[0]
    a = frame @ torch.diag_embed(eigenvalues) @ frame.transpose(-1, -2)
    a = (a + a.transpose(-1, -2)) / 2
    torch.testing.assert_close(symmetric_sqrt(a), eigh_sqrt(a), rtol=0, atol=1e-13)
    assert bool(torch.isfinite(symmetric_sqrt(torch.zeros(1, 3, 3, dtype=D))).all())


@pytest.mark.parametrize("improper", [False, True])
def test_both_rotate_with_the_frame(improper):
    rotation = random_orthogonal(torch.Generator().manual_seed(4), improper=improper).to(D)
    log_cov = symmetric(200, 1.5, 5)
    turned = rotation @ log_cov @ rotation.T
    torch.testing.assert_close(matrix_exp(turned), rotation @ matrix_exp(log_cov) @ rotation.T,
                               rtol=1e-12, atol=1e-12)
    covariance = full_covariance(log_cov, 0.05)
    torch.testing.assert_close(symmetric_sqrt(rotation @ covariance @ rotation.T),
                               rotation @ symmetric_sqrt(covariance) @ rotation.T,
                               rtol=1e-10, atol=1e-12)


def test_neither_reads_the_device():
    log_cov = symmetric(50, 1.0, 6)
    with HostSyncCounter() as counter:
        symmetric_sqrt(full_covariance(log_cov, 0.05))
    assert counter.syncs == []
    with HostSyncCounter() as counter:  # what they replace
        torch.linalg.eigh(torch.linalg.matrix_exp(log_cov))
    assert len(counter.syncs) == 2
