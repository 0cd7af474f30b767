"""A Gaussian over the beads' accelerations: mean ``(n, 3)``, each bead's own covariance
``(n, 3, 3)`` and, optionally, noise shared by the beads of one molecule.

Every variant returns this one type, so losses and rollouts never depend on the variant. The
per-bead covariance is a full symmetric positive-definite matrix; the frame-dependent baseline
fills it as a diagonal, the equivariant variant as ``s² I`` (isotropic) or
``expm(S) + s_min² I`` (full), which transforms as ``R Σ Rᵀ`` under a rotation ``R``. The matrix
functions a prediction and a sample need (:func:`matrix_exp`, :func:`symmetric_sqrt`) make no
host synchronisation, so a rollout on a GPU never waits for them.

**Shared noise** (``model.shared_noise_rank = r > 0``). Over one learned step the beads of a
molecule move together (a chain's centre of mass diffuses with ``D = kT / (M gamma)``, which
independent per-bead noise underestimates by ``1 + (N - 1) ρ̄``). With shared noise a bead's
acceleration is ::

    a_i = μ_i + Σ_i^{1/2} z_i + Σ_j U_ij u_{m(i) j},     z_i, u_mj ~ N(0, I_3)

with ``u_mj`` (``j < r``) drawn once per molecule ``m``. The joint covariance of a molecule's
``3N`` coordinates is ``D + U Uᵀ`` (``D`` block diagonal): a rank-``3r`` update, whose
likelihood costs ``O(N r²)`` by the Woodbury identity and the matrix determinant lemma. The
factors ``U_ij`` are ``3x3`` matrices transforming as ``R U Rᵀ`` (equivariant variant) or
diagonal (baseline); :func:`molecule_noise` divides them by ``sqrt(N_m)``, so that a factor of
order one per bead gives the centre of mass a variance ``~ 1/N_m``, as independent random
forces on ``N_m`` beads would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch_geometric.utils import scatter

_LOG_2PI = math.log(2.0 * math.pi)

# ``like -> z``: standard normal noise shaped like ``like`` (rollouts and refinement draw all their
# noise through one; rotating what it returns rotates the whole rollout)
NoiseFunction = Callable[[torch.Tensor], torch.Tensor]


def gaussian_noise(generator: torch.Generator | None = None) -> NoiseFunction:
    """``like -> z``: standard normal noise shaped like ``like``, drawn from ``generator``."""
    return lambda like: torch.randn(like.shape, generator=generator, dtype=like.dtype,
                                    device=like.device)


@dataclass
class SharedNoise:
    """Noise shared by the beads of one molecule.

    Attributes:
        factor: ``(n, r, 3, 3)`` ``U_ij``: how bead ``i`` responds to its molecule's ``j``-th
            shared noise vector.
        molecule: ``(n,)`` long, molecule of each bead, numbered below ``n`` (so that
            per-molecule sums have a static size and need no host synchronisation).
    """

    factor: torch.Tensor
    molecule: torch.Tensor

    @property
    def rank(self) -> int:
        return self.factor.shape[1]

    def stacked(self) -> torch.Tensor:
        """``(n, 3, 3r)`` ``[U_i1 ... U_ir]``."""
        return self.factor.permute(0, 2, 1, 3).reshape(self.factor.shape[0], 3, -1)


@dataclass
class GaussianAcceleration:
    """Gaussian over the accelerations of ``n`` beads.

    Attributes:
        mean: ``(n, 3)``.
        covariance: ``(n, 3, 3)`` each bead's own (independent) covariance, symmetric positive
            definite.
        shared: noise shared per molecule, or ``None`` (beads independent).
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    shared: SharedNoise | None = None

    def marginal_covariance(self) -> torch.Tensor:
        """``(n, 3, 3)`` covariance of each bead on its own: ``Σ_i + Σ_j U_ij U_ijᵀ``."""
        if self.shared is None:
            return self.covariance
        u = self.shared.stacked()
        return self.covariance + u @ u.transpose(-1, -2)

    def nll(self, target: torch.Tensor) -> torch.Tensor:
        """``(n,)`` negative log-likelihood of ``target (n, 3)`` (in the same units), per bead.

        Without shared noise each bead's own NLL; with it, the joint NLL of every molecule
        spread evenly over its beads, so the sum over beads is the joint NLL of all of them.
        """
        chol = torch.linalg.cholesky(self.covariance)
        residual = (target - self.mean).unsqueeze(-1)
        white = torch.linalg.solve_triangular(chol, residual, upper=False)  # (n, 3, 1)
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        own = 0.5 * (white.squeeze(-1).pow(2).sum(-1) + log_det + 3.0 * _LOG_2PI)
        if self.shared is None:
            return own
        return own + self._shared_correction(chol, white)

    def _shared_correction(self, chol: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
        """``(n,)`` what shared noise adds to the NLL (Woodbury, determinant lemma), per bead.

        With ``V_i = L_i⁻¹ U_i``, ``y_i = L_i⁻¹ r_i``, per molecule ``K = I + Σ_i V_iᵀ V_i`` and
        ``w = Σ_i V_iᵀ y_i``: ``rᵀ Σ⁻¹ r = Σ_i |y_i|² - wᵀ K⁻¹ w`` and
        ``log det Σ = Σ_i log det Σ_i + log det K``.
        """
        shared = self.shared
        n = chol.shape[0]
        v = torch.linalg.solve_triangular(chol, shared.stacked(), upper=False)  # (n, 3, 3r)
        vt = v.transpose(-1, -2)
        size = vt.shape[1]
        eye = torch.eye(size, dtype=v.dtype, device=v.device)
        k = eye + scatter(vt @ v, shared.molecule, dim=0, dim_size=n, reduce="sum")
        w = scatter((vt @ white).squeeze(-1), shared.molecule, dim=0, dim_size=n, reduce="sum")
        k_chol = torch.linalg.cholesky(k)
        solved = torch.linalg.solve_triangular(k_chol, w.unsqueeze(-1), upper=False).squeeze(-1)
        log_det_k = 2.0 * torch.log(torch.diagonal(k_chol, dim1=-2, dim2=-1)).sum(-1)
        per_molecule = 0.5 * (log_det_k - solved.pow(2).sum(-1))  # (n,), 0 for empty ones
        count = scatter(torch.ones_like(log_det_k), shared.molecule, dim=0, dim_size=n,
                        reduce="sum")
        return (per_molecule / count.clamp_min(1.0))[shared.molecule]

    def sqrt_covariance(self) -> torch.Tensor:
        """``(n, 3, 3)`` symmetric square root ``Σ_i^{1/2}`` of each bead's own covariance
        (rotates as ``R Σ^{1/2} Rᵀ``; :func:`symmetric_sqrt`)."""
        return symmetric_sqrt(self.covariance)

    def sample(self, noise: torch.Tensor, shared_noise: torch.Tensor | None = None
               ) -> torch.Tensor:
        """``mean + Σ_i^{1/2} z_i + Σ_j U_ij u_m(i)j`` for standard normal ``noise (n, 3)``
        (``z``) and, with shared noise, ``shared_noise (n, r, 3)`` (``u``, row ``m`` for
        molecule ``m``); rotating the noise rotates the sample."""
        sample = self.mean + (self.sqrt_covariance() @ noise.unsqueeze(-1)).squeeze(-1)
        if self.shared is None:
            return sample
        if shared_noise is None:
            raise ValueError("this Gaussian has shared noise: pass shared_noise (n, r, 3)")
        u = shared_noise[self.shared.molecule]  # (n, r, 3)
        return sample + torch.einsum("nrij,nrj->ni", self.shared.factor, u)

    def draw(self, noise: NoiseFunction) -> torch.Tensor:
        """A sample with the standard normal draws of ``noise`` (:func:`gaussian_noise`): first
        the per-bead
        ``(n, 3)``, then, with shared noise, the ``(n r, 3)`` shared vectors."""
        z = noise(self.mean)
        if self.shared is None:
            return self.sample(z)
        n, rank = self.mean.shape[0], self.shared.rank
        like = self.mean.new_empty(n * rank, 3)
        return self.sample(z, noise(like).reshape(n, rank, 3))

    def scaled(self, scale: float | torch.Tensor) -> GaussianAcceleration:
        """The same distribution with every length multiplied by ``scale``."""
        shared = None if self.shared is None else SharedNoise(
            self.shared.factor * scale, self.shared.molecule)
        return GaussianAcceleration(self.mean * scale, self.covariance * scale**2, shared)


def molecule_noise(factor: torch.Tensor, molecule: torch.Tensor) -> SharedNoise:
    """:class:`SharedNoise` with ``factor (n, r, 3, 3)`` divided by the square root of the
    number of beads of each bead's molecule (``molecule (n,)``, numbered below ``n``)."""
    count = scatter(torch.ones_like(molecule, dtype=factor.dtype), molecule, dim=0,
                    dim_size=molecule.shape[0], reduce="sum")
    return SharedNoise(factor / count[molecule].sqrt()[:, None, None, None], molecule)


def diagonal_covariance(std: torch.Tensor) -> torch.Tensor:
    """``(n, 3, 3)`` diagonal covariance from per-axis std ``(n, 3)`` (frame-dependent)."""
    return torch.diag_embed(std.pow(2))


def isotropic_covariance(std: torch.Tensor) -> torch.Tensor:
    """``(n, 3, 3)`` covariance ``std² I`` from ``std (n,)``."""
    eye = torch.eye(3, dtype=std.dtype, device=std.device)
    return std.pow(2)[:, None, None] * eye


def full_covariance(log_cov: torch.Tensor, min_std: float) -> torch.Tensor:
    """``(n, 3, 3)`` covariance ``expm(S) + min_std² I`` from symmetric ``S (n, 3, 3)``
    (:func:`matrix_exp`)."""
    eye = torch.eye(3, dtype=log_cov.dtype, device=log_cov.device)
    return matrix_exp(log_cov) + (min_std**2) * eye


# scaling and squaring of matrix_exp: Taylor terms after scaling to a Frobenius norm <= 1/2 (the
# first term left out is below 2e-14 of the sum: float64 rounding after the squarings), and the
# most halvings it undoes (norms up to 2^15; exp(2^15) overflows float64 long before)
_EXP_TAYLOR_TERMS = 12
_EXP_MAX_SQUARINGS = 16


def matrix_exp(a: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` matrix exponential of ``a (..., 3, 3)`` by scaling and squaring, with
    the number of squarings chosen per matrix on the device: no host synchronisation (where
    ``torch.linalg.matrix_exp`` reads norms on the host), differentiable, and a polynomial in
    ``a`` whose degree and coefficients depend on its Frobenius norm only (so ``expm(R a Rᵀ) =
    R expm(a) Rᵀ``). Matches ``torch.linalg.matrix_exp`` to ~1e-13 (float64) for the norms a
    covariance can have."""
    norm = a.pow(2).sum((-2, -1)).sqrt()  # Frobenius: the same for R a Rᵀ, (...,)
    squarings = torch.ceil(torch.log2(norm.clamp_min(1e-30)) + 1.0).clamp(
        0, _EXP_MAX_SQUARINGS)
    x = a / torch.exp2(squarings)[..., None, None]
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(a)
    result = eye
    for k in range(_EXP_TAYLOR_TERMS, 0, -1):  # Horner: I + x/1 (I + x/2 (I + ...))
        result = eye + (x @ result) / k
    for j in range(_EXP_MAX_SQUARINGS):
        result = torch.where((squarings > j)[..., None, None], result @ result, result)
    return result


def symmetric_eigenvalues(a: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` eigenvalues of symmetric ``a (..., 3, 3)`` in closed form (the
    trigonometric solution of the characteristic cubic, from rotation invariants: no host
    synchronisation, unlike ``torch.linalg.eigh``), largest first; forward only."""
    q = torch.diagonal(a, dim1=-2, dim2=-1).sum(-1) / 3.0
    eye = torch.eye(3, dtype=a.dtype, device=a.device)
    shifted = a - q[..., None, None] * eye
    p = (shifted.pow(2).sum((-2, -1)) / 6.0).sqrt()
    degenerate = p <= 1e-12 * (q.abs() + p)
    b = shifted / torch.where(degenerate, 1.0, p)[..., None, None]
    r = (_det3(b) / 2.0).clamp(-1.0, 1.0)
    phi = torch.acos(r) / 3.0
    largest = q + 2.0 * p * torch.cos(phi)
    smallest = q + 2.0 * p * torch.cos(phi + 2.0 * math.pi / 3.0)
    middle = 3.0 * q - largest - smallest
    eigenvalues = torch.stack([largest, middle, smallest], -1)
    return torch.where(degenerate[..., None], q[..., None].expand_as(eigenvalues), eigenvalues)


def _det3(a: torch.Tensor) -> torch.Tensor:
    """``(...,)`` determinants of ``a (..., 3, 3)`` by cofactors (elementwise: no LU)."""
    return (a[..., 0, 0] * (a[..., 1, 1] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 1])
            - a[..., 0, 1] * (a[..., 1, 0] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 0])
            + a[..., 0, 2] * (a[..., 1, 0] * a[..., 2, 1] - a[..., 1, 1] * a[..., 2, 0]))


def symmetric_sqrt(a: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` symmetric square root of positive-definite ``a (..., 3, 3)`` without a
    host synchronisation (``torch.linalg.eigh`` checks its convergence on the host).

    With the eigenvalues ``λ_1..3`` of ``a`` (:func:`symmetric_eigenvalues`, computed in
    float64, where their closed form stays accurate to ~1e-10 of the largest up to condition
    numbers of 1e5) and ``s_i = sqrt(λ_i)``, the square root is the Newton form of the
    polynomial interpolating ``sqrt`` at the eigenvalues, whose divided differences have no
    cancellation (``1 / (s_1 + s_2)`` and ``-1 / ((s_1 + s_2)(s_2 + s_3)(s_1 + s_3))``), so equal
    or close eigenvalues need no special case:

        a^{1/2} = s_1 I + (a - λ_1 I) / (s_1 + s_2)
                  - (a - λ_1 I)(a - λ_2 I) / ((s_1 + s_2)(s_2 + s_3)(s_1 + s_3))

    A polynomial in ``a`` with invariant coefficients: rotates as ``R a^{1/2} Rᵀ``. Eigenvalues
    below ``1e-15`` of the largest are raised to it (the covariances here are floored far
    above). Forward only."""
    x = a.double()
    lam = symmetric_eigenvalues(x)
    lam = lam.maximum(1e-15 * lam[..., :1].clamp_min(torch.finfo(x.dtype).tiny))
    s = lam.sqrt()
    s12, s23, s13 = s[..., 0] + s[..., 1], s[..., 1] + s[..., 2], s[..., 0] + s[..., 2]
    tiny = torch.finfo(x.dtype).tiny
    first_divided = 1.0 / s12.clamp_min(tiny)
    second_divided = -1.0 / (s12 * s23 * s13).clamp_min(tiny)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    first = x - lam[..., 0, None, None] * eye
    second = first @ (x - lam[..., 1, None, None] * eye)
    root = (s[..., 0, None, None] * eye + first_divided[..., None, None] * first
            + second_divided[..., None, None] * second)
    return root.to(a.dtype)


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
