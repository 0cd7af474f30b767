"""Dynamical metrics: autocorrelation and relaxation times, mean squared displacement, diffusivity,
and the statistics of one-step displacements (how the beads of a molecule move together).

Times are in the trajectory's time unit (ps for ``real`` data, tau for ``lj``), lengths in its
length unit (Å or sigma). Frames are taken to be evenly spaced ``dt`` apart; a "step" is
``stride`` frames (one learned step of a rollout saved every step, or the same time in the
reference MD).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph

from eqcg.metrics.structure import centres_of_mass
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


def step_displacements(positions: np.ndarray, stride: int = 1) -> np.ndarray:
    """``(n_frames - stride, n, 3)`` displacements ``x(t + stride) - x(t)`` from every frame.

    Args:
        positions: ``(n_frames, n, 3)`` unwrapped positions (length unit).
        stride: frames per step (>= 1); origins overlap when ``stride > 1``.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    pos = np.asarray(positions, dtype=np.float64)
    return pos[stride:] - pos[:-stride]


def step_correlations(steps: np.ndarray) -> np.ndarray:
    """``(n, n)`` correlation of the steps of every two particles,
    ``C_ij = <dx_i . dx_j>_t / sqrt(<|dx_i|^2>_t <|dx_j|^2>_t)`` (``C_ii = 1``; NaN for a
    particle that never moves).

    Args:
        steps: ``(n_steps, n, 3)`` displacements (:func:`step_displacements`).
    """
    flat = np.moveaxis(np.asarray(steps, dtype=np.float64), 1, 0).reshape(steps.shape[1], -1)
    gram = flat @ flat.T / steps.shape[0]  # (n, n) <dx_i . dx_j>_t
    scale = np.sqrt(np.diag(gram))
    with np.errstate(invalid="ignore", divide="ignore"):
        return gram / np.outer(scale, scale)


@dataclass
class MoleculeSteps:
    """One-step displacement statistics of every molecule with more than one particle.

    Attributes:
        molecules: ``(n_chains,)`` molecule index of each.
        n_particles: ``(n_chains,)`` particles (beads) in each.
        bead_msd: ``(n_chains,)`` mean over its particles of ``<|dx_i|^2>_t`` (length^2).
        com_msd: ``(n_chains,)`` ``<|dX|^2>_t`` of its mass-weighted centre (length^2).
        collective_ratio: ``(n_chains,)`` ``n_particles * com_msd / bead_msd``: 1 for
            independent equal-mass particles, ``1 + (n - 1) rho`` for equal correlations
            ``rho``, ``n`` for a rigid translation.
        correlation: ``(n_chains,)`` mean of :func:`step_correlations` over its ordered pairs
            ``i != j`` (rho-bar).
    """

    molecules: np.ndarray
    n_particles: np.ndarray
    bead_msd: np.ndarray
    com_msd: np.ndarray
    collective_ratio: np.ndarray
    correlation: np.ndarray


def multi_particle_molecules(molecules: np.ndarray) -> np.ndarray:
    """``(n_chains,)`` indices of the molecules with more than one particle."""
    return np.flatnonzero(np.bincount(np.asarray(molecules, dtype=np.int64)) > 1)


def molecule_steps(
    steps: np.ndarray,
    masses: np.ndarray,
    molecules: np.ndarray,
    correlations: np.ndarray | None = None,
) -> MoleculeSteps:
    """:class:`MoleculeSteps` of ``steps (n_steps, n, 3)`` for particles of ``masses (n,)`` in
    ``molecules (n,)`` (index ``0..n_molecules-1``); ``correlations``: their
    :func:`step_correlations` if already computed."""
    steps = np.asarray(steps, dtype=np.float64)
    molecules = np.asarray(molecules, dtype=np.int64)
    chains = multi_particle_molecules(molecules)
    count = np.bincount(molecules).astype(np.float64)
    particle_msd = np.mean(np.sum(steps**2, axis=-1), axis=0)  # (n,)
    bead_msd = np.bincount(molecules, weights=particle_msd) / count
    com_steps = centres_of_mass(steps, masses, molecules)  # (n_steps, n_molecules, 3)
    com_msd = np.mean(np.sum(com_steps**2, axis=-1), axis=0)
    corr = step_correlations(steps) if correlations is None else correlations
    same = (molecules[:, None] == molecules[None, :]) & ~np.eye(molecules.shape[0], dtype=bool)
    pair_sum = np.bincount(molecules, weights=np.where(same, corr, 0.0).sum(axis=1))
    pairs = count * (count - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = pair_sum / pairs
        collective = count * com_msd / bead_msd
    return MoleculeSteps(
        molecules=chains, n_particles=count[chains].astype(np.int64), bead_msd=bead_msd[chains],
        com_msd=com_msd[chains], collective_ratio=collective[chains],
        correlation=correlation[chains],
    )


def bond_separation(bonds: np.ndarray, n: int) -> np.ndarray:
    """``(n, n)`` number of bonds on the shortest path between two particles (``inf`` for
    particles of different molecules, 0 on the diagonal).

    Args:
        bonds: ``(n_bonds, 2)`` particle indices.
        n: number of particles.
    """
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    graph = scipy.sparse.coo_matrix(
        (np.ones(bonds.shape[0]), (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
    return scipy.sparse.csgraph.shortest_path(graph, method="D", directed=False, unweighted=True)


def correlation_profile(
    correlations: np.ndarray, separation: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean pair correlation against separation along the bonds.

    Args:
        correlations: ``(n, n)`` pair statistics (:func:`step_correlations`).
        separation: ``(n, n)`` bonds between the pairs (:func:`bond_separation`).

    Returns ``separations (k,)`` (1 .. the largest finite one) and the mean of
    ``correlations`` over the pairs ``i != j`` at each (NaN where there is no pair or every
    value is NaN); empty arrays without bonded pairs.
    """
    finite = np.isfinite(separation) & (separation > 0) & np.isfinite(correlations)
    if not finite.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    which = separation[finite].astype(np.int64)
    total = np.bincount(which, weights=correlations[finite])[1:]
    count = np.bincount(which)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arange(1, total.shape[0] + 1), total / count


def velocity_autocorrelation(
    positions: np.ndarray, stride: int = 1, max_lag: int = 50
) -> np.ndarray:
    """Normalised autocorrelation of step velocities, pooled over particles.

    The velocity is the displacement over one step of ``stride`` frames (divided by its time,
    which the normalisation cancels), taken from every frame; ``C(m) = <v(t) . v(t + m
    stride)> / <v . v>`` over all origins and particles, for ``m = 0 .. max_lag`` steps (fewer
    when the trajectory is shorter). A random walk gives ``C(m >= 1) = 0``.

    Args:
        positions: ``(n_frames, n, 3)`` unwrapped positions (at least ``stride + 2`` frames).
        stride: frames per step.
        max_lag: last lag (steps).
    """
    velocities = step_displacements(positions, stride)
    acf = autocorrelation(velocities, subtract_mean=False, max_lag=max_lag * stride)
    return acf[::stride]


def langevin_com_diffusivity(temperature: float, damp: float, mass: float) -> float:
    """``D = k T / (M gamma)`` of the centre of mass of a molecule of mass ``M`` in a Langevin
    bath with friction rate ``gamma = 1 / damp`` and no hydrodynamics (LJ units, ``k = 1``).

    LAMMPS' ``fix langevin`` pulls every particle with ``-m v / damp`` plus noise; summed over a
    molecule the internal forces cancel, so its centre of mass is an Ornstein-Uhlenbeck particle
    of mass ``M`` and friction ``M / damp`` whatever the molecule's shape.
    """
    return float(temperature * damp / mass)


def exact_com_diffusivity(
    attrs: Mapping[str, object], units: str, masses: np.ndarray, molecules: np.ndarray
) -> float | None:
    """The exact centre-of-mass diffusivity of a system (sigma^2/tau), when it is known:
    :func:`langevin_com_diffusivity` of a single molecule in ``lj`` units whose ``attrs``
    record the Langevin ``temperature`` and ``damp`` (the built-in polymer chains); ``None``
    otherwise.

    Args:
        attrs: the reference system's attributes.
        units: its unit system name.
        masses: ``(n,)`` masses of its particles (atoms or beads: only their sum is used).
        molecules: ``(n,)`` molecule index of each particle.
    """
    if units != "lj" or not {"temperature", "damp"} <= set(attrs):
        return None
    if np.unique(np.asarray(molecules)).shape[0] != 1:
        return None
    return langevin_com_diffusivity(float(attrs["temperature"]), float(attrs["damp"]),
                                    float(np.sum(masses)))
