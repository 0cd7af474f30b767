"""Training losses shared by every variant.

* Gaussian NLL of the true acceleration under the predicted per-bead Gaussian.
* Denoising score matching (NCSN): next positions are perturbed with ``sigma z`` for a noise
  level drawn per system; with the loss weighted by ``sigma²`` it reads ``||f + z||²`` where
  ``f = sigma * score`` is the score network's output.
* Optional radius-of-gyration residual (MSE), as in the paper's polymer model.
* Optional pushforward term (Brandstetter et al. 2022): the NLL of the true next acceleration
  after one step of the model's own sampled prediction (no gradient through that step), so the
  model learns to recover from the states its rollouts visit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from eqcg import keys
from eqcg.models.gaussian import GaussianAcceleration, gaussian_noise, predicted_spread
from eqcg.models.integrator import acceleration_target, append_frame, euler_step
from eqcg.models.simulator import Prediction, Simulator


def gaussian_nll(prediction: GaussianAcceleration, target: torch.Tensor) -> torch.Tensor:
    """Mean over beads of the negative log-likelihood of ``target (n, 3)``."""
    return prediction.nll(target).mean()


def score_matching_loss(f: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``sigma²``-weighted DSM loss ``0.5 mean_beads ||f + z||²`` for ``f = sigma * score``.

    Args:
        f: ``(n, 3)`` score network output at ``x + sigma z``.
        noise: ``(n, 3)`` the standard normal ``z`` that made the noisy sample.
    """
    return 0.5 * (f + noise).pow(2).sum(-1).mean()


def augment_history(
    pos_history: torch.Tensor,
    graph_of_bead: torch.Tensor,
    n_graphs: int,
    noise_begin: float,
    noise_end: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Add Gaussian noise to ``pos_history (n, k, 3)``, one sigma per system.

    Sigmas are log-uniform between ``noise_begin`` and ``noise_end`` (uniform when
    ``noise_begin`` is 0). Returns the noisy history; the target acceleration is then taken
    from the noisy history, so the model learns to correct the noise.
    """
    if noise_end <= 0:
        return pos_history
    u = torch.rand(n_graphs, generator=generator, dtype=pos_history.dtype,
                   device=pos_history.device)
    if noise_begin > 0:
        low, high = math.log(noise_begin), math.log(noise_end)
        sigma = torch.exp(low + u * (high - low))
    else:
        sigma = u * noise_end
    noise = torch.randn(pos_history.shape, generator=generator, dtype=pos_history.dtype,
                        device=pos_history.device)
    return pos_history + sigma[graph_of_bead, None, None] * noise


@dataclass
class LossTerms:
    """The loss terms of one batch (scalars); ``total`` is what is optimised."""

    total: torch.Tensor
    nll: torch.Tensor
    score: torch.Tensor
    rg: torch.Tensor
    mse: torch.Tensor
    mse_zero: torch.Tensor
    pushforward: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in vars(self).items()}


def radius_of_gyration(pos: torch.Tensor, masses: torch.Tensor, batch: torch.Tensor,
                       n_graphs: int) -> torch.Tensor:
    """``(n_graphs,)`` mass-weighted radius of gyration of ``pos (n, 3)`` per system.

    The whole-system Rg of :func:`eqcg.metrics.structure.radius_of_gyration` with
    ``groups=None`` (what the property head predicts and its target holds), in torch for the
    loss's gradient; evaluation reports the per-molecule Rg, the same number for the polymer
    data's one chain per system.
    """
    total = scatter(masses, batch, dim=0, dim_size=n_graphs, reduce="sum")
    com = scatter(masses[:, None] * pos, batch, dim=0, dim_size=n_graphs, reduce="sum")
    com = com / total[:, None]
    sq = masses * (pos - com[batch]).pow(2).sum(-1)
    return torch.sqrt(scatter(sq, batch, dim=0, dim_size=n_graphs, reduce="sum") / total)


def score_noise_levels(
    simulator: Simulator, prediction: Prediction, batch: Batch, generator: torch.Generator
) -> torch.Tensor:
    """``(n_graphs,)`` denoising noise level of each system (length units).

    ``ladder``: one of the model's levels, uniformly (the paper). ``spread``: log-uniform between
    the smallest level and the system's predicted spread (detached, clamped to the levels'
    range), the levels a refinement that starts at the spread visits.
    """
    sigmas = simulator.sigmas
    n_graphs = batch.num_graphs
    if simulator.training_levels == "ladder":
        level = torch.randint(len(sigmas), (n_graphs,), generator=generator, device=sigmas.device)
        return sigmas[level]
    spread = predicted_spread(prediction.acceleration.marginal_covariance().detach(),
                              batch.batch, n_graphs)
    top = torch.log(spread.clamp(min=sigmas[-1]).minimum(sigmas[0]))
    u = torch.rand(n_graphs, generator=generator, dtype=sigmas.dtype, device=sigmas.device)
    return torch.exp(torch.log(sigmas[-1]) + u * (top - torch.log(sigmas[-1])))


def compute_losses(
    simulator: Simulator,
    batch: Batch,
    *,
    noise_begin: float,
    noise_end: float,
    score_weight: float,
    property_weight: float,
    generator: torch.Generator,
    pushforward: bool = False,
) -> LossTerms:
    """All loss terms of one batch; randomness comes from ``generator`` only (exact resume).

    ``generator`` must live on the batch's device.

    ``mse`` is the mean squared error of the predicted mean acceleration, ``mse_zero`` that of
    predicting zero acceleration (constant velocity), both in normalised units.

    With ``pushforward`` the batch's ``pos_history`` holds ``k + 1`` frames: the last ``k`` are
    the history of the one-step terms, the first ``k`` that of the model's own step to the last
    history frame, after which ``pushforward`` is the NLL of the target.
    """
    n_graphs = batch.num_graphs
    frames = augment_history(
        batch[keys.POS_HISTORY], batch.batch, n_graphs, noise_begin, noise_end, generator
    )
    history = frames[:, 1:] if pushforward else frames
    target_pos = batch[keys.TARGET_POS]
    features = simulator.embed(batch)
    prediction = simulator.predict(batch, history, features)
    target = acceleration_target(history, target_pos) / simulator.acceleration_scale
    nll = gaussian_nll(prediction.normalized, target)
    mse = (prediction.normalized.mean - target).pow(2).sum(-1).mean()
    mse_zero = target.pow(2).sum(-1).mean()

    sigma = score_noise_levels(simulator, prediction, batch, generator)[batch.batch]
    noise = torch.randn(target_pos.shape, generator=generator, dtype=target_pos.dtype,
                        device=target_pos.device)
    f = simulator.score_times_sigma(
        batch, target_pos + sigma[:, None] * noise, history[:, -1], sigma, features,
        prediction.latent,
    )
    score = score_matching_loss(f, noise)

    rg = torch.zeros((), dtype=target_pos.dtype, device=target_pos.device)
    if prediction.rg_residual is not None:
        masses = batch[keys.BEAD_MASSES]
        rg_now = radius_of_gyration(history[:, -1], masses, batch.batch, n_graphs)
        rg_change = batch[keys.TARGET_RG] - rg_now
        rg = (prediction.rg_residual - rg_change).pow(2).mean() / simulator.velocity_scale**2
    pushed = torch.zeros_like(rg)
    if pushforward:
        pushed = pushforward_nll(simulator, batch, frames[:, :-1], target_pos, features, generator)
    total = nll + score_weight * score + property_weight * rg + pushed
    return LossTerms(total=total, nll=nll, score=score, rg=rg, mse=mse, mse_zero=mse_zero,
                     pushforward=pushed)


def pushforward_nll(
    simulator: Simulator, batch: Batch, earlier: torch.Tensor, target_pos: torch.Tensor,
    features: torch.Tensor, generator: torch.Generator,
) -> torch.Tensor:
    """Mean NLL of ``target_pos`` one step after the model's own sampled step from ``earlier
    (n, k, 3)`` (the history one frame before), without a gradient through that first step."""
    with torch.no_grad():
        first = simulator.predict(batch, earlier, features).acceleration
        pushed = append_frame(earlier, euler_step(earlier, first.draw(gaussian_noise(generator))))
    prediction = simulator.predict(batch, pushed, features)
    target = acceleration_target(pushed, target_pos) / simulator.acceleration_scale
    return gaussian_nll(prediction.normalized, target)
