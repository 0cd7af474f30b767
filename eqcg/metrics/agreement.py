"""Cross-system agreement of a per-system property between a model and the reference MD.

Two different "r^2" are reported and named apart:

* ``pearson_r_squared`` — the squared Pearson correlation (the r^2 of Fu et al.: Rg 0.90,
  relaxation time 0.48). It is blind to offsets and scale: ``model = 2 * reference`` gives 1.
* ``identity_r2`` — the coefficient of determination of the identity line ``model = reference``,
  ``1 - sum (model - ref)^2 / sum (ref - mean ref)^2``; 1 only when the values agree, negative
  when the line fits worse than the reference mean.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

MIN_SYSTEMS = 3
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.95


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
    return float(identity_r2_rows(reference, model))


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



def within_factor(reference: np.ndarray, model: np.ndarray, factor: float) -> float:
    """Fraction of systems whose model value lies within ``factor`` of the reference
    (``reference / factor <= model <= reference * factor``), for positive quantities such as
    diffusivities and relaxation times: systems whose reference is not positive (a failed fit)
    or has a NaN on either side are left out; NaN when none is left."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    reference, model = _finite_pairs(reference, model)
    return float(within_factor_rows(reference, model, factor))


def within_factor_rows(reference: np.ndarray, model: np.ndarray, factor: float) -> np.ndarray:
    """:func:`within_factor` along the last axis of ``(..., n)`` finite arrays."""
    counted = reference > 0
    inside = counted & (model >= reference / factor) & (model <= reference * factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside.sum(axis=-1) / counted.sum(axis=-1)


def relative_error(reference: np.ndarray, model: np.ndarray) -> float:
    """Mean over systems of ``|model - reference| / |reference|``: systems with a zero
    reference or a NaN on either side are left out; NaN when none is left."""
    reference, model = _finite_pairs(reference, model)
    return float(relative_error_rows(reference, model))


def relative_error_rows(reference: np.ndarray, model: np.ndarray) -> np.ndarray:
    """:func:`relative_error` along the last axis of ``(..., n)`` finite arrays."""
    counted = reference != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.where(counted, np.abs(model - reference) / np.abs(reference), 0.0)
        return error.sum(axis=-1) / counted.sum(axis=-1)


def r_squared_rows(reference: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation along the last axis of ``(..., n)`` arrays (NaN where
    either side is constant)."""
    x = reference - reference.mean(axis=-1, keepdims=True)
    y = model - model.mean(axis=-1, keepdims=True)
    norm = np.sum(x * x, axis=-1) * np.sum(y * y, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, np.sum(x * y, axis=-1) ** 2 / norm, np.nan)


def spearman_rows(reference: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Spearman rank correlation along the last axis of ``(..., n)`` arrays (ties get mean
    ranks; NaN where either side is constant)."""
    x = scipy.stats.rankdata(reference, axis=-1)
    y = scipy.stats.rankdata(model, axis=-1)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.sum(x * x, axis=-1) * np.sum(y * y, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, np.sum(x * y, axis=-1) / norm, np.nan)


def identity_r2_rows(reference: np.ndarray, model: np.ndarray) -> np.ndarray:
    """:func:`identity_r2` along the last axis of ``(..., n)`` arrays."""
    spread = np.sum((reference - reference.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    residual = np.sum((model - reference) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, 1.0 - residual / spread, np.nan)


def bootstrap_interval(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    reference: np.ndarray,
    model: np.ndarray,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a cross-system statistic.

    Systems (finite ``(reference, model)`` pairs) are drawn with replacement ``n_resamples``
    times; the interval holds the central ``level`` of the statistic over the resamples
    (quantiles of the inverted empirical CDF; resamples where the statistic is undefined, e.g.
    a correlation of one system drawn n times, are left out). ``statistic`` maps
    ``(n_resamples, n)`` reference and model draws to ``(n_resamples,)`` values (the ``*_rows``
    functions of this module). ``(nan, nan)`` with fewer than :data:`MIN_SYSTEMS` pairs.
    """
    reference, model = _finite_pairs(reference, model)
    n = reference.shape[0]
    if n < MIN_SYSTEMS:
        return math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    values = np.asarray(statistic(reference[draws], model[draws]), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = 0.5 * (1.0 - level)
    low, high = np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)
