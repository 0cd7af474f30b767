"""Cross-system agreement of a per-system property between a model and the reference MD.

Two different "r^2" are reported and named apart:

* ``pearson_r_squared`` — the squared Pearson correlation (the r^2 of Fu et al.: Rg 0.90,
  relaxation time 0.48). It is blind to offsets and scale: ``model = 2 * reference`` gives 1.
* ``identity_r2`` — the coefficient of determination of the identity line ``model = reference``,
  ``1 - sum (model - ref)^2 / sum (ref - mean ref)^2``; 1 only when the values agree, negative
  when the line fits worse than the reference mean.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

MIN_SYSTEMS = 3


def _finite_pairs(reference: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.asarray(reference, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    if reference.shape != model.shape or reference.ndim != 1:
        raise ValueError(f"expected two (n,) arrays, got {reference.shape} and {model.shape}")
    keep = np.isfinite(reference) & np.isfinite(model)
    return reference[keep], model[keep]


def pearson(reference: np.ndarray, model: np.ndarray) -> tuple[float, float]:
    """Pearson correlation coefficient and two-sided p-value of ``(n,)`` paired values.

    NaN for a constant input.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.ConstantInputWarning)
        result = scipy.stats.pearsonr(reference, model)
    return float(result.statistic), float(result.pvalue)


def spearman(reference: np.ndarray, model: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation and two-sided p-value of ``(n,)`` paired values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.ConstantInputWarning)
        result = scipy.stats.spearmanr(reference, model)
    return float(result.statistic), float(result.pvalue)


def identity_r2(reference: np.ndarray, model: np.ndarray) -> float:
    """Coefficient of determination of ``model = reference`` (see module docstring)."""
    reference = np.asarray(reference, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    spread = np.sum((reference - reference.mean()) ** 2)
    if spread == 0:
        return float("nan")
    return float(1.0 - np.sum((model - reference) ** 2) / spread)


@dataclass
class Agreement:
    """Agreement statistics over ``n`` systems (values with a NaN on either side are dropped)."""

    n: int
    pearson_r: float
    pearson_p: float
    pearson_r_squared: float
    spearman_rho: float
    spearman_p: float
    identity_r2: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def agreement(reference: np.ndarray, model: np.ndarray) -> Agreement:
    """All agreement statistics of a property, ``reference (n,)`` vs ``model (n,)``.

    Raises ``ValueError`` with fewer than :data:`MIN_SYSTEMS` finite pairs.
    """
    reference, model = _finite_pairs(reference, model)
    if reference.shape[0] < MIN_SYSTEMS:
        raise ValueError(
            f"agreement needs at least {MIN_SYSTEMS} systems with finite values on both sides, "
            f"got {reference.shape[0]}"
        )
    r, r_p = pearson(reference, model)
    rho, rho_p = spearman(reference, model)
    return Agreement(
        n=int(reference.shape[0]),
        pearson_r=r,
        pearson_p=r_p,
        pearson_r_squared=r * r,
        spearman_rho=rho,
        spearman_p=rho_p,
        identity_r2=identity_r2(reference, model),
    )
