"""Dynamical metrics: autocorrelation and relaxation times, mean squared displacement, diffusivity.

Times are in the trajectory's time unit (ps for ``real`` data, tau for ``lj``), lengths in its
length unit (Å or sigma). Frames are taken to be evenly spaced ``dt`` apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.optimize

from eqcg.units import unit_system

# complex numbers held at once by one FFT of mean_squared_displacement (bounds its memory)
_FFT_BUDGET = 4_000_000


def autocorrelation(
    series: np.ndarray, *, subtract_mean: bool = True, max_lag: int | None = None
) -> np.ndarray:
    """Normalised autocorrelation function over all time origins, computed by FFT.

    ``C(k) = sum_s <x_s(t) . x_s(t+k)>_t / sum_s <x_s(t) . x_s(t)>_t`` with ``<.>_t`` the mean
    over the ``n_frames - k`` available origins (unbiased estimator). Every axis after the first
    is pooled: for ``(n_frames, n_series)`` input the independent series are averaged, for
    ``(n_frames, n_series, 3)`` vectors the dot product is taken as well (the end-to-end vector
    ACF ``<R(t).R(0)> / <R^2>``).

    Args:
        series: ``(n_frames, ...)`` values at evenly spaced frames.
        subtract_mean: remove each series' (and component's) time average first (for scalar
            fluctuations such as Rg); ``False`` for vectors whose mean is zero by symmetry.
        max_lag: last lag returned (frames); default ``n_frames - 1``.

    Returns ``(max_lag + 1,)`` with ``C(0) = 1``. Raises ``ValueError`` for fewer than two
    frames or a series without fluctuations.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] < 2:
        raise ValueError(f"autocorrelation needs at least 2 frames, got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    if subtract_mean:
        x = x - x.mean(axis=0)
    n = x.shape[0]
    size = scipy.fft.next_fast_len(2 * n - 1)
    spectrum = scipy.fft.rfft(x, n=size, axis=0)
    covariance = scipy.fft.irfft((spectrum * spectrum.conj()).real.sum(axis=1), n=size)[:n]
    covariance /= np.arange(n, 0, -1)
    if not covariance[0] > 0:
        raise ValueError("autocorrelation of a series without fluctuations is undefined")
    last = n - 1 if max_lag is None else min(max_lag, n - 1)
    return covariance[: last + 1] / covariance[0]


@dataclass
class IntegratedRelaxation:
    """Integrated autocorrelation time ``tau = dt (1/2 + sum_{k=1}^{M} C(k))``.

    The window ``M`` is Sokal's: the smallest ``M >= c tau(M) / dt`` (``c = 5`` by default),
    which keeps the truncation bias small without summing the noisy tail. An AR(1) process
    ``x_t = phi x_{t-1} + noise`` has ``tau = dt (1 + phi) / (2 (1 - phi))``; an exponential ACF
    ``exp(-t / T)`` sampled with ``dt << T`` has ``tau ~ T``.

    Attributes:
        tau: relaxation time (time unit).
        window: ``M dt``, the last lag summed (time unit).
        converged: whether a window satisfied Sokal's condition inside the data; if not, all
            lags were summed and ``tau`` is a lower bound at best.
    """

    tau: float
    window: float
    converged: bool


def integrated_relaxation_time(
    acf: np.ndarray, dt: float, *, window_factor: float = 5.0
) -> IntegratedRelaxation:
    """Integrated autocorrelation time of ``acf (n_lags,)`` (``C(0) = 1``) sampled every ``dt``.

    See :class:`IntegratedRelaxation` for the estimator and its window.
    """
    acf = np.asarray(acf, dtype=np.float64)
    if acf.shape[0] < 2:
        raise ValueError("an integrated relaxation time needs at least 2 lags")
    tau_frames = 0.5 + np.cumsum(acf[1:])  # tau(M) for M = 1 .. n_lags - 1
    windows = np.arange(1, acf.shape[0])
    inside = np.flatnonzero(windows >= window_factor * tau_frames)
    m = int(windows[inside[0]] if inside.size else windows[-1])
    return IntegratedRelaxation(
        tau=float(dt * tau_frames[m - 1]), window=float(dt * m), converged=bool(inside.size)
    )


@dataclass
class ExponentialRelaxation:
    """Decay time from a fit of ``C(t) ~ A exp(-t / tau)``.

    The fit (least squares on C itself, amplitude ``A`` free so a fast initial drop such as
    vibrational noise does not bias ``tau``) covers lags from 0 up to and including the first lag
    where ``C`` falls below ``floor``. With only two points in that range ``A`` is fixed to 1
    (``tau = -dt / ln C(dt)``). An AR(1) process gives ``tau = -dt / ln(phi)``.

    Attributes:
        tau: decay time (time unit); NaN when C is not positive at the first lag.
        amplitude: fitted ``A``.
        fit_window: ``(first, last)`` lag times fitted (time unit).
        converged: whether C fell below ``floor`` inside the data (else the whole ACF is fitted
            and ``tau`` is uncertain).
    """

    tau: float
    amplitude: float
    fit_window: tuple[float, float]
    converged: bool


def exponential_relaxation_time(
    acf: np.ndarray, dt: float, *, floor: float = 0.1
) -> ExponentialRelaxation:
    """Fit ``A exp(-t / tau)`` to ``acf (n_lags,)`` sampled every ``dt``; see
    :class:`ExponentialRelaxation` for the fit range."""
    acf = np.asarray(acf, dtype=np.float64)
    if acf.shape[0] < 2:
        raise ValueError("an exponential relaxation fit needs at least 2 lags")
    below = np.flatnonzero(acf < floor)
    last = int(below[0]) if below.size else acf.shape[0] - 1
    last = max(last, 1)
    t = dt * np.arange(last + 1)
    c = acf[: last + 1]
    if last == 1:  # decays within one frame: two points, amplitude fixed to 1
        tau = -dt / np.log(c[1]) if 0 < c[1] < 1 else np.nan
        return ExponentialRelaxation(float(tau), 1.0, (0.0, float(t[-1])), bool(below.size))
    guess = -t[-1] / np.log(c[-1]) if 0 < c[-1] < 1 else t[-1]
    try:
        (amplitude, tau), _ = scipy.optimize.curve_fit(
            lambda time, a, decay: a * np.exp(-time / decay), t, c, p0=(1.0, guess),
            bounds=([0.0, 1e-9 * dt], [np.inf, np.inf]),
        )
    except RuntimeError:  # the least-squares fit did not converge
        amplitude, tau = np.nan, np.nan
    return ExponentialRelaxation(
        float(tau), float(amplitude), (0.0, float(t[-1])), bool(below.size)
    )


def remove_drift(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """``(n_frames, n, 3)`` positions with the centre-of-mass displacement since frame 0 removed.

    Args:
        positions: ``(n_frames, n, 3)`` unwrapped positions.
        masses: ``(n,)`` masses of all particles of the system.
    """
    pos = np.asarray(positions, dtype=np.float64)
    weights = np.asarray(masses, dtype=np.float64) / np.sum(masses)
    com = np.einsum("n,fnd->fd", weights, pos)
    return pos - (com - com[0])[:, None, :]


def mean_squared_displacement(
    positions: np.ndarray, max_lag: int | None = None, per_particle: bool = False
) -> np.ndarray:
    """Mean squared displacement over particles and all time origins.

    ``MSD(k) = < |x_i(t + k) - x_i(t)|^2 >_{i, t}``, computed for every lag at once by the FFT
    algorithm (``MSD = S1 - 2 S2``, S2 the positional autocorrelation; Calandrini et al. 2011),
    in chunks of particles to bound memory.

    Args:
        positions: ``(n_frames, n, 3)`` **unwrapped** positions (length unit).
        max_lag: last lag returned (frames); default ``n_frames - 1``.
        per_particle: return each particle's MSD (averaged over time origins only).

    Returns ``(max_lag + 1,)`` MSD in length unit squared (``(max_lag + 1, n)`` per particle);
    ``MSD(0) = 0``.
    """
    pos = np.asarray(positions, dtype=np.float64)
    n_frames, n = pos.shape[:2]
    size = scipy.fft.next_fast_len(2 * n_frames - 1)
    chunk = max(1, _FFT_BUDGET // (size * pos.shape[2]))
    origins = np.arange(n_frames, 0, -1)[:, None].astype(np.float64)
    lags = np.arange(n_frames)
    each = np.zeros((n_frames, n))
    for start in range(0, n, chunk):
        x = pos[:, start : start + chunk] - pos[:1, start : start + chunk]
        squared = (x**2).sum(-1)  # (n_frames, c)
        cumulative = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(squared, axis=0)])
        s1 = (cumulative[n_frames - lags] + cumulative[n_frames] - cumulative[lags]) / origins
        spectrum = scipy.fft.rfft(x, n=size, axis=0)
        s2 = scipy.fft.irfft((spectrum * spectrum.conj()).real.sum(-1), n=size, axis=0)
        each[:, start : start + chunk] = s1 - 2.0 * s2[:n_frames] / origins
    last = n_frames - 1 if max_lag is None else min(max_lag, n_frames - 1)
    each = np.maximum(each[: last + 1], 0.0)
    return each if per_particle else each.mean(axis=1)


@dataclass
class DiffusivityFit:
    """Diffusion coefficient from the linear regime of an MSD: ``MSD = 2 d D t + b``.

    Attributes:
        diffusivity: D in length unit squared per time unit (Å^2/ps or sigma^2/tau).
        slope: fitted ``2 d D``.
        intercept: fitted ``b`` (length unit squared).
        fit_window: ``(first, last)`` lag times fitted (time unit).
        n_points: lags inside the window.
        r2: coefficient of determination of the straight line in the window.
        stderr: standard error of D over particles (the spread of each particle's own D in
            the same window over sqrt(n)); ``None`` unless fitted per particle, n >= 2. It
            treats particles as independent, so it is a lower bound for beads of one chain.
    """

    diffusivity: float
    slope: float
    intercept: float
    fit_window: tuple[float, float]
    n_points: int
    r2: float
    stderr: float | None = None


def fit_diffusivity(
    lag_time: np.ndarray,
    msd: np.ndarray,
    *,
    window: tuple[float, float] | None = None,
    window_fraction: tuple[float, float] = (0.1, 0.5),
    dimensions: int = 3,
) -> DiffusivityFit:
    """Least-squares line through ``msd`` over a window of lag times; ``D = slope / (2 d)``.

    Args:
        lag_time: ``(n_lags,)`` lag times (time unit), increasing from 0.
        msd: ``(n_lags,)`` MSD (length unit squared), or ``(n_lags, n)`` per particle: D is
            then that of the particles' mean MSD, with its standard error over particles.
        window: ``(start, stop)`` lag times fitted, inclusive; overrides ``window_fraction``.
        window_fraction: the window as fractions of the longest lag: the default skips the
            short-time (ballistic, caged) regime and the long lags averaged over few origins.
        dimensions: ``d``, the number of dimensions the particles move in.

    Raises ``ValueError`` when fewer than two lags fall inside the window.
    """
    lag_time = np.asarray(lag_time, dtype=np.float64)
    msd = np.asarray(msd, dtype=np.float64)
    start, stop = window or (window_fraction[0] * lag_time[-1], window_fraction[1] * lag_time[-1])
    inside = (lag_time >= start * (1 - 1e-12)) & (lag_time <= stop * (1 + 1e-12))
    if inside.sum() < 2:
        raise ValueError(f"fewer than 2 lags between {start} and {stop}")
    t, particles = lag_time[inside], msd[inside]
    y = particles.mean(axis=1) if particles.ndim == 2 else particles
    slope, intercept = np.polyfit(t, y, 1)
    residual = np.sum((y - (slope * t + intercept)) ** 2)
    spread = np.sum((y - y.mean()) ** 2)
    stderr = None
    if particles.ndim == 2 and particles.shape[1] >= 2:
        each = np.polyfit(t, particles, 1)[0] / (2 * dimensions)
        stderr = float(each.std(ddof=1) / np.sqrt(each.size))
    return DiffusivityFit(
        diffusivity=float(slope / (2 * dimensions)),
        slope=float(slope),
        intercept=float(intercept),
        fit_window=(float(t[0]), float(t[-1])),
        n_points=int(inside.sum()),
        r2=float(1 - residual / spread) if spread > 0 else float("nan"),
        stderr=stderr,
    )


def diffusivity_unit(units: str) -> tuple[float, str]:
    """Factor and name of the unit diffusivities are reported in for a unit system.

    ``real``: Å^2/ps -> cm^2/s (1 Å^2/ps = 1e-16 cm^2 / 1e-12 s = 1e-4 cm^2/s);
    ``lj``: sigma^2/tau, unchanged.
    """
    system = unit_system(units)
    if system.name == "real":
        return 1e-4, "cm^2/s"
    return 1.0, f"{system.length}^2/{system.time}"
