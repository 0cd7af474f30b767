"""Calibration of the predicted acceleration Gaussian on held-out one-step predictions.

For a calibrated 3D Gaussian the squared Mahalanobis distance ``d² = rᵀ Σ⁻¹ r`` of the true
acceleration's residual ``r`` is chi-square distributed with 3 degrees of freedom: its mean is
3, and a fraction ``p`` of true accelerations lies inside the ellipsoid ``d² <= chi2_3(p)``.
A spread that is too wide (``mean d² < 3``, coverage above nominal) heats a sampled rollout;
one that is too narrow makes the NLL blow up on the beads it misses.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.stats
import torch
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.cg.mapping import CGSettings
from eqcg.data.store import TrajectoryDataset
from eqcg.graphs.system import CGSystem, prepare_systems
from eqcg.graphs.windows import WindowDataset
from eqcg.models.checkpoint import load_simulator
from eqcg.models.gaussian import GaussianAcceleration
from eqcg.models.integrator import acceleration_target
from eqcg.models.simulator import Simulator

NOMINAL = (0.68, 0.95)
# coverage curve: nominal levels at which the observed fraction is reported
CURVE_LEVELS = tuple(np.round(np.linspace(0.05, 0.95, 19), 2))


@dataclass
class Calibration:
    """Coverage of predicted Gaussians.

    Attributes:
        n_samples: residuals (beads x windows) the numbers are over.
        mean_mahalanobis_squared: mean ``d²`` (3 when calibrated).
        coverage_68: fraction inside the 68 % ellipsoid.
        coverage_95: fraction inside the 95 % ellipsoid.
        curve_nominal: nominal levels of the coverage curve.
        curve_observed: observed fraction inside each level's ellipsoid.
    """

    n_samples: int
    mean_mahalanobis_squared: float
    coverage_68: float
    coverage_95: float
    curve_nominal: list[float]
    curve_observed: list[float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def mahalanobis_squared(prediction: GaussianAcceleration, target: torch.Tensor) -> torch.Tensor:
    """``(n,)`` squared Mahalanobis distance of ``target (n, 3)`` under each bead's marginal
    Gaussian (its own covariance plus its share of the noise shared per molecule)."""
    chol = torch.linalg.cholesky(prediction.marginal_covariance())
    residual = (target - prediction.mean).unsqueeze(-1)
    white = torch.linalg.solve_triangular(chol, residual, upper=False).squeeze(-1)
    return white.pow(2).sum(-1)


def calibration_from_distances(d2: np.ndarray) -> Calibration:
    """:class:`Calibration` of squared Mahalanobis distances ``d2 (n,)`` of 3D residuals."""
    d2 = np.asarray(d2, dtype=np.float64)
    inside = {p: float(np.mean(d2 <= scipy.stats.chi2.ppf(p, df=3))) for p in
              (*NOMINAL, *CURVE_LEVELS)}
    return Calibration(
        n_samples=int(d2.size), mean_mahalanobis_squared=float(d2.mean()),
        coverage_68=inside[0.68], coverage_95=inside[0.95],
        curve_nominal=[float(p) for p in CURVE_LEVELS],
        curve_observed=[inside[p] for p in CURVE_LEVELS],
    )


@torch.no_grad()
def one_step_calibration(
    simulator: Simulator,
    systems: list[CGSystem],
    dilation: int,
    *,
    max_windows: int = 256,
    batch_size: int = 8,
) -> Calibration:
    """Calibration of ``simulator``'s one-step predictions on every window of ``systems``
    (at most ``max_windows``, evenly spaced), from clean reference histories."""
    param = next(simulator.parameters())
    windows = WindowDataset(systems, simulator.history, dilation, 1, param.dtype)
    chosen = np.unique(np.linspace(0, len(windows) - 1, min(len(windows), max_windows))
                       .astype(int))
    distances = []
    simulator.eval()
    for start in range(0, len(chosen), batch_size):
        batch = Batch.from_data_list([windows[int(i)] for i in chosen[start:start + batch_size]])
        batch = batch.to(param.device)
        history = batch[keys.POS_HISTORY]
        prediction = simulator.predict(batch, history)
        target = acceleration_target(history, batch[keys.TARGET_POS])
        distances.append(mahalanobis_squared(prediction.acceleration, target).cpu().numpy())
    return calibration_from_distances(np.concatenate(distances))


def run_calibration(
    run: str | os.PathLike | None, reference: TrajectoryDataset, names: list[str]
) -> dict[str, object]:
    """Calibration of the model of ``run`` on the reference systems ``names``, as it goes into
    ``metrics.json`` (with the run, its covariance and variant), or ``{"note": ...}`` when the
    run is not found."""
    if run is None or not Path(run).exists():
        return {"note": f"not measured: run {run!r} not found (pass run=...)"}
    simulator, config, _ = load_simulator(run)
    settings = CGSettings.from_config(config.data)
    systems = prepare_systems(reference, settings, simulator.vocabulary, sorted(set(names)))
    result = one_step_calibration(simulator, systems, config.data.dilation)
    return {"run": str(run), "covariance": config.model.covariance,
            "model": config.model.variant, **result.to_dict()}
