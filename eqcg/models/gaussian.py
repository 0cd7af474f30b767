"""A Gaussian over each bead's acceleration: mean ``(n, 3)`` and covariance ``(n, 3, 3)``.

Every variant returns this one type, so losses and rollouts never depend on the variant. The
covariance is a full symmetric positive-definite matrix; the frame-dependent baseline fills
it as a diagonal, the equivariant variant as ``s² I`` (isotropic) or ``expm(S) + s_min² I``
(full), which transforms as ``R Σ Rᵀ`` under a rotation ``R``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_geometric.utils import scatter

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class GaussianAcceleration:
    """Per-bead Gaussian: ``mean (n, 3)``, ``covariance (n, 3, 3)`` symmetric positive definite."""

    mean: torch.Tensor
    covariance: torch.Tensor

    def nll(self, target: torch.Tensor) -> torch.Tensor:
        """``(n,)`` negative log-likelihood of ``target (n, 3)`` (in the same units)."""
        chol = torch.linalg.cholesky(self.covariance)
        residual = (target - self.mean).unsqueeze(-1)
        white = torch.linalg.solve_triangular(chol, residual, upper=False).squeeze(-1)
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        return 0.5 * (white.pow(2).sum(-1) + log_det + 3.0 * _LOG_2PI)

    def sqrt_covariance(self) -> torch.Tensor:
        """``(n, 3, 3)`` symmetric square root ``Σ^{1/2}`` (rotates as ``R Σ^{1/2} Rᵀ``)."""
        eigvals, eigvecs = torch.linalg.eigh(self.covariance)
        return eigvecs @ torch.diag_embed(eigvals.clamp_min(0.0).sqrt()) @ eigvecs.transpose(-1, -2)

    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        """``mean + Σ^{1/2} noise`` for standard normal ``noise (n, 3)``; rotating the noise
        rotates the sample."""
        return self.mean + (self.sqrt_covariance() @ noise.unsqueeze(-1)).squeeze(-1)

    def scaled(self, scale: float | torch.Tensor) -> GaussianAcceleration:
        """The same distribution with every length multiplied by ``scale``."""
        return GaussianAcceleration(self.mean * scale, self.covariance * scale**2)


def diagonal_covariance(std: torch.Tensor) -> torch.Tensor:
    """``(n, 3, 3)`` diagonal covariance from per-axis std ``(n, 3)`` (frame-dependent)."""
    return torch.diag_embed(std.pow(2))


def isotropic_covariance(std: torch.Tensor) -> torch.Tensor:
    """``(n, 3, 3)`` covariance ``std² I`` from ``std (n,)``."""
    eye = torch.eye(3, dtype=std.dtype, device=std.device)
    return std.pow(2)[:, None, None] * eye


def full_covariance(log_cov: torch.Tensor, min_std: float) -> torch.Tensor:
    """``(n, 3, 3)`` covariance ``expm(S) + min_std² I`` from symmetric ``S (n, 3, 3)``."""
    eye = torch.eye(3, dtype=log_cov.dtype, device=log_cov.device)
    return torch.linalg.matrix_exp(log_cov) + (min_std**2) * eye


def predicted_spread(
    covariance: torch.Tensor, graph_of_bead: torch.Tensor, n_graphs: int
) -> torch.Tensor:
    """``(n_graphs,)`` RMS over each system's beads of the std ``sqrt(tr Σ / 3)`` (length).

    Args:
        covariance: ``(n_beads, 3, 3)`` covariance of the predicted acceleration (length²).
        graph_of_bead: ``(n_beads,)`` system of each bead.
    """
    variance = torch.diagonal(covariance, dim1=-2, dim2=-1).sum(-1) / 3.0
    return scatter(variance, graph_of_bead, dim=0, dim_size=n_graphs, reduce="mean").sqrt()
