"""The physical properties of one bead trajectory that a rollout is judged by.

For a trajectory (model rollout or coarse-grained reference MD) :func:`trajectory_properties`
computes the curves the plots draw and :meth:`TrajectoryProperties.summary` the numbers
``metrics.json`` holds:

* Rg of every molecule with more than one bead ("chains"; for a one-chain system this is the
  system's Rg), its distribution and the relaxation time of its autocorrelation;
* the end-to-end vector autocorrelation of linear chains and its relaxation time;
* MSD per bead species, of all beads and of the chains' centres of mass (species
  :data:`CHAIN_COM`; periodic systems: the system's centre-of-mass drift removed) and the
  diffusivity of its linear regime;
* one-step statistics (a step: ``stride`` frames, one rollout frame interval): how much the
  beads and the centres of mass of multi-bead molecules move per step, how their beads move
  together (:class:`~eqcg.metrics.dynamics.MoleculeSteps`; the correlation against separation
  along the CG bonds), and the velocity autocorrelation of beads and centres of mass;
* RDFs between bead species (periodic systems) and CG bond lengths, over evenly spaced frames.

Lengths are Å or sigma, times ps or tau (the dataset's units).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from eqcg.evaluation.beads import BeadTrajectory
from eqcg.metrics.dynamics import (
    DiffusivityFit,
    ExponentialRelaxation,
    IntegratedRelaxation,
    MoleculeSteps,
    autocorrelation,
    bond_separation,
    correlation_profile,
    diffusivity_unit,
    exponential_relaxation_time,
    fit_diffusivity,
    integrated_relaxation_time,
    mean_squared_displacement,
    molecule_steps,
    multi_particle_molecules,
    remove_drift,
    step_correlations,
    step_displacements,
    velocity_autocorrelation,
)
from eqcg.metrics.structure import (
    RDF,
    bond_lengths,
    centres_of_mass,
    end_to_end_vectors,
    half_min_width,
    linear_chains,
    radial_distribution,
    radius_of_gyration,
)
from eqcg.units import unit_system

CHAIN_COM = "chain COM"  # MSD/diffusivity key of the centres of mass of multi-bead molecules
ALL_BEADS = "beads"  # velocity autocorrelation key of every bead


@dataclass(frozen=True)
class PropertyOptions:
    """How properties are computed (one place for every choice of the analysis).

    Attributes:
        structure_frames: at most this many evenly spaced frames feed RDFs and bond lengths.
        rdf_bins: distance bins of the RDFs.
        rdf_r_max: largest RDF distance (length unit); ``None``: half the narrowest cell width.
        fit_window_fraction: MSD lag window of the diffusivity fit, as fractions of the longest
            lag.
        com_fit_window_steps: MSD lag window of the chains' centre-of-mass diffusivity, in
            steps (``stride`` frames: one rollout frame interval, a learned step when the
            rollout saved every step); each end is capped at its ``fit_window_fraction`` of
            the longest lag, so spans too short for it get the fraction window. ``None``: the
            fraction window. Chosen on the exact D of the 144 MD chains of the polymer
            ``medium`` data (``results/com_fit_window``, 5 tau steps): 5-50 steps spreads
            D / D_exact by 0.12 (std; all within 1.5x) where the fraction window spreads it
            by 0.77 (34 % within 1.5x) and 10-200 steps by 0.24. Shorter windows are tighter
            still on the MD, whose centre of mass is exactly Markovian, but would read a
            model's memory over its first steps as transport.
        vacf_lags: last lag (steps) of the velocity autocorrelations.
        acf_floor: the exponential fit of an autocorrelation stops where it drops below this.
        remove_drift: subtract the system's centre-of-mass displacement before MSDs of
            periodic systems (a spurious drift of the whole box). Open systems keep it: there
            the centre of mass of a lone chain diffuses for real.
    """

    structure_frames: int = 100
    rdf_bins: int = 100
    rdf_r_max: float | None = None
    fit_window_fraction: tuple[float, float] = (0.1, 0.5)
    com_fit_window_steps: tuple[float, float] | None = (5.0, 50.0)
    vacf_lags: int = 50
    acf_floor: float = 0.1
    remove_drift: bool = True


DEFAULT_OPTIONS = PropertyOptions()


@dataclass
class Relaxation:
    """An autocorrelation function and the two relaxation times estimated from it."""

    acf: np.ndarray  # (n_lags,)
    integrated: IntegratedRelaxation
    exponential: ExponentialRelaxation

    def summary(self) -> dict[str, object]:
        return {
            "integrated": {"tau": self.integrated.tau, "window": self.integrated.window,
                           "converged": self.integrated.converged},
            "exponential": {"tau": self.exponential.tau,
                            "amplitude": self.exponential.amplitude,
                            "fit_window": list(self.exponential.fit_window),
                            "converged": self.exponential.converged},
        }


@dataclass
class TrajectoryProperties:
    """Properties of one bead trajectory; ``None`` where one does not apply (see ``missing``).

    Attributes:
        units: unit system name.
        time: ``(n_frames,)`` time since the first frame.
        rg: ``(n_frames, n_chains)`` Rg of each multi-bead molecule.
        rg_relaxation: Rg autocorrelation (fluctuations, pooled over chains) and its times.
        end_to_end_relaxation: end-to-end vector autocorrelation of linear chains and its times.
        lag_time: ``(n_frames,)`` MSD lag times.
        msd: species name -> ``(n_frames,)`` MSD of that species' beads.
        msd_beads: ``(n_frames,)`` MSD of every bead.
        diffusivity: species name -> fit of its MSD (D in length^2/time).
        step_stride: frames per step of the one-step statistics.
        steps: one-step statistics of every multi-bead molecule.
        correlation_profile: ``(separations (k,), mean step correlation (k,))`` of bead pairs
            ``1 .. k`` CG bonds apart in one molecule.
        vacf: :data:`ALL_BEADS` / :data:`CHAIN_COM` -> ``(n_lags,)`` normalised step-velocity
            autocorrelation at lags ``0, 1, ...`` steps.
        rdf: RDFs between species (periodic systems only).
        bond_lengths: ``(n_structure_frames, n_bonds)`` CG bond lengths.
        species_names: names indexing ``rdf``.
        missing: property name -> why it is ``None``.
    """

    units: str
    time: np.ndarray
    species_names: list[str]
    rg: np.ndarray | None = None
    rg_relaxation: Relaxation | None = None
    end_to_end_relaxation: Relaxation | None = None
    lag_time: np.ndarray | None = None
    msd: dict[str, np.ndarray] = field(default_factory=dict)
    msd_beads: np.ndarray | None = None
    diffusivity: dict[str, DiffusivityFit | None] = field(default_factory=dict)
    step_stride: int = 1
    steps: MoleculeSteps | None = None
    correlation_profile: tuple[np.ndarray, np.ndarray] | None = None
    vacf: dict[str, np.ndarray] = field(default_factory=dict)
    rdf: RDF | None = None
    bond_lengths: np.ndarray | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def rg_mean(self) -> float:
        return float(self.rg.mean()) if self.rg is not None else float("nan")

    @property
    def step_time(self) -> float:
        """Time of one step (``step_stride`` frames; 0 for a one-frame trajectory)."""
        return self.step_stride * float(self.time[1]) if self.time.shape[0] > 1 else 0.0

    def steps_summary(self) -> dict[str, object] | None:
        """The one-step statistics for ``metrics.json`` (means over multi-bead molecules;
        ``None`` where there are none)."""
        if self.steps is None:
            return None
        steps = self.steps
        separations, profile = self.correlation_profile
        return {
            "stride": self.step_stride, "step_time": self.step_time,
            "n_molecules": int(steps.molecules.shape[0]),
            "bead_step_msd": float(steps.bead_msd.mean()),
            "com_step_msd": float(steps.com_msd.mean()),
            "collective_ratio": float(steps.collective_ratio.mean()),
            "step_correlation": float(steps.correlation.mean()),
            "correlation_by_separation": dict(zip(separations.tolist(), profile.tolist(),
                                                  strict=True)),
        }

    def summary(self) -> dict[str, object]:
        """Numbers for ``metrics.json`` (NaN where undefined, ``None`` where not applicable),
        in the dataset's units (diffusivities also in cm^2/s for ``real`` data)."""
        units = unit_system(self.units)
        factor, d_unit = diffusivity_unit(self.units)
        out: dict[str, object] = {
            "n_frames": int(self.time.shape[0]),
            "span": float(self.time[-1] - self.time[0]),
            "units": {"length": units.length, "time": units.time, "diffusivity": d_unit},
        }
        out["rg"] = None
        if self.rg is not None:
            values = self.rg.ravel()
            out["rg"] = {"mean": float(values.mean()), "std": float(values.std()),
                         "p05": float(np.percentile(values, 5)),
                         "p50": float(np.percentile(values, 50)),
                         "p95": float(np.percentile(values, 95)),
                         "n_chains": int(self.rg.shape[1])}
        for name in ("rg_relaxation", "end_to_end_relaxation"):
            relaxation = getattr(self, name)
            out[name] = relaxation.summary() if relaxation is not None else None
        out["diffusivity"] = {
            species: None if fit is None else {
                "value": fit.diffusivity * factor, "unit": d_unit,
                "value_native": fit.diffusivity,
                "native_unit": f"{units.length}^2/{units.time}",
                "stderr": None if fit.stderr is None else fit.stderr * factor,
                "fit_window": list(fit.fit_window), "fit_points": fit.n_points,
                "fit_r2": fit.r2,
            }
            for species, fit in self.diffusivity.items()
        }
        out["steps"] = self.steps_summary()
        out["vacf"] = {key: acf.tolist() for key, acf in self.vacf.items()}
        out["rdf"] = None
        if self.rdf is not None:
            out["rdf"] = {"r_max": float(self.rdf.edges[-1]), "peaks": {
                f"{self.species_names[a]}|{self.species_names[b]}": dict(
                    zip(("r", "g"), self.rdf.peak(a, b), strict=True))
                for a, b in species_pairs(len(self.species_names))
            }}
        out["bond_length"] = None
        if self.bond_lengths is not None:
            out["bond_length"] = {"mean": float(self.bond_lengths.mean()),
                                  "std": float(self.bond_lengths.std()),
                                  "n_bonds": int(self.bond_lengths.shape[1])}
        out["missing"] = dict(self.missing)
        return out


def species_pairs(n_species: int) -> list[tuple[int, int]]:
    """Unordered species index pairs ``(a, b)``, ``a <= b``."""
    return [(a, b) for a in range(n_species) for b in range(a, n_species)]


def evenly_spaced(n_frames: int, at_most: int) -> np.ndarray:
    """At most ``at_most`` frame indices spread evenly over ``0..n_frames-1``."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, at_most)).round().astype(int))


def _relaxation(
    series: np.ndarray, dt: float, subtract_mean: bool, options: PropertyOptions
) -> Relaxation:
    acf = autocorrelation(series, subtract_mean=subtract_mean)
    return Relaxation(
        acf=acf,
        integrated=integrated_relaxation_time(acf, dt),
        exponential=exponential_relaxation_time(acf, dt, floor=options.acf_floor),
    )


def default_rdf_r_max(boxes: list[np.ndarray], options: PropertyOptions) -> float:
    """The RDF range for trajectories with cells ``boxes``: half the narrowest cell width of
    any of them, capped by ``options.rdf_r_max``."""
    widths = [half_min_width(box) for box in boxes]
    return min(widths + ([options.rdf_r_max] if options.rdf_r_max is not None else []))


def trajectory_properties(
    traj: BeadTrajectory,
    options: PropertyOptions = DEFAULT_OPTIONS,
    rdf_r_max: float | None = None,
    fit_windows: dict[str, tuple[float, float]] | None = None,
    stride: int = 1,
) -> TrajectoryProperties:
    """Every property of ``traj`` (see module docstring); its frames must be finite.

    ``rdf_r_max`` (length unit) defaults to :func:`default_rdf_r_max` of ``traj``'s cells; pass
    one value for trajectories whose RDFs are compared. ``fit_windows`` (species -> lag times,
    inclusive) fits those species' diffusivities over fixed lag windows instead of
    ``options.fit_window_fraction`` of this trajectory's span (and
    ``options.com_fit_window_steps``): pass another trajectory's windows to measure both at the
    same time scale. ``stride``: frames per step of the one-step statistics (pass the frames
    of one rollout frame interval for a reference trajectory, to compare the same time step).
    """
    props = TrajectoryProperties(units=traj.units, time=traj.time - traj.time[0],
                                 species_names=traj.species_names, step_stride=stride)
    dynamic = traj.n_frames >= 3
    if not dynamic:
        props.missing["dynamics"] = f"{traj.n_frames} frames are too few for dynamics"
    _chain_properties(traj, props, options, dynamic)
    if dynamic:
        _diffusion_properties(traj, props, options, fit_windows or {})
        _step_properties(traj, props, options)
    structure = traj.frames(evenly_spaced(traj.n_frames, options.structure_frames))
    if traj.pbc:
        r_max = rdf_r_max if rdf_r_max is not None else default_rdf_r_max([traj.box], options)
        props.rdf = radial_distribution(structure.positions, structure.box, traj.species,
                                        r_max=r_max, n_bins=options.rdf_bins)
    else:
        props.missing["rdf"] = "system is not periodic"
    if traj.bonds.size:
        props.bond_lengths = bond_lengths(structure.positions, traj.bonds)
    else:
        props.missing["bond_length"] = "no CG bonds"
    return props


def dynamic_properties(
    traj: BeadTrajectory, options: PropertyOptions = DEFAULT_OPTIONS, stride: int = 1
) -> TrajectoryProperties:
    """Only the MSDs, diffusivities and one-step statistics of ``traj`` (as
    :func:`trajectory_properties` computes them, fit windows from ``options``)."""
    props = TrajectoryProperties(units=traj.units, time=traj.time - traj.time[0],
                                 species_names=traj.species_names, step_stride=stride)
    if traj.n_frames < 3:
        props.missing["dynamics"] = f"{traj.n_frames} frames are too few for dynamics"
        return props
    _diffusion_properties(traj, props, options, {})
    _step_properties(traj, props, options)
    return props


def with_fit_windows(
    traj: BeadTrajectory,
    props: TrajectoryProperties,
    options: PropertyOptions,
    fit_windows: dict[str, tuple[float, float]],
) -> TrajectoryProperties:
    """``props`` of ``traj`` with its MSDs and diffusivities redone over ``fit_windows`` (see
    :func:`trajectory_properties`); everything else is shared, not recomputed."""
    if props.lag_time is None:  # too few frames for dynamics
        return props
    out = replace(props, msd={}, diffusivity={}, missing={
        key: why for key, why in props.missing.items() if not key.startswith("diffusivity[")})
    _diffusion_properties(traj, out, options, fit_windows)
    return out


def _chain_properties(
    traj: BeadTrajectory, props: TrajectoryProperties, options: PropertyOptions, dynamic: bool
) -> None:
    """Rg of multi-bead molecules, and Rg / end-to-end relaxation, into ``props``."""
    chains = np.flatnonzero(np.bincount(traj.molecules) > 1)
    if not chains.size:
        props.missing["rg"] = "no molecule has more than one bead"
        return
    props.rg = radius_of_gyration(traj.positions, traj.masses, traj.molecules)[:, chains]
    if dynamic and np.ptp(props.rg, axis=0).max() > 0:
        props.rg_relaxation = _relaxation(props.rg, traj.dt, True, options)
    elif dynamic:
        props.missing["rg_relaxation"] = "Rg does not fluctuate"
    _, ends = linear_chains(traj.bonds, traj.molecules)
    if not ends.size:
        props.missing["end_to_end_relaxation"] = "no linear chain of beads"
    elif dynamic:
        vectors = end_to_end_vectors(traj.positions, ends)
        props.end_to_end_relaxation = _relaxation(vectors, traj.dt, False, options)


def _dynamic_positions(traj: BeadTrajectory, options: PropertyOptions) -> np.ndarray:
    """``traj``'s positions, without the system's centre-of-mass drift where
    ``options.remove_drift`` asks for it (periodic systems)."""
    if options.remove_drift and traj.pbc:
        return remove_drift(traj.positions, traj.masses)
    return traj.positions


def com_fit_window(
    longest_lag: float, step_time: float, options: PropertyOptions
) -> tuple[float, float] | None:
    """The lag window (time unit) of the chains' centre-of-mass diffusivity fit:
    ``options.com_fit_window_steps`` steps of ``step_time``, each end capped at its
    ``options.fit_window_fraction`` of ``longest_lag`` (``None`` without a step window)."""
    if options.com_fit_window_steps is None:
        return None
    (first, last), (low, high) = options.com_fit_window_steps, options.fit_window_fraction
    return min(first * step_time, low * longest_lag), min(last * step_time, high * longest_lag)


def _diffusion_properties(
    traj: BeadTrajectory,
    props: TrajectoryProperties,
    options: PropertyOptions,
    fit_windows: dict[str, tuple[float, float]],
) -> None:
    """MSD and diffusivity of every bead species and of the chains' centres of mass, and the
    MSD of all beads, into ``props`` (fitted over ``fit_windows[species]`` where given, else
    :func:`com_fit_window` for :data:`CHAIN_COM`, else the fraction window)."""
    positions = _dynamic_positions(traj, options)
    props.lag_time = props.time.copy()
    groups = {species: positions[:, traj.species == index]
              for index, species in enumerate(traj.species_names)}
    chains = multi_particle_molecules(traj.molecules)
    if chains.size:
        groups[CHAIN_COM] = centres_of_mass(positions, traj.masses, traj.molecules)[:, chains]
    windows = dict(fit_windows)
    com_window = com_fit_window(props.lag_time[-1], props.step_time, options)
    if com_window is not None:
        windows.setdefault(CHAIN_COM, com_window)
    total = np.zeros(props.lag_time.shape[0])
    for species, members in groups.items():
        if not members.shape[1]:
            continue
        each = mean_squared_displacement(members, per_particle=True)
        props.msd[species] = each.mean(axis=1)
        if species != CHAIN_COM:
            total += each.sum(axis=1)
        try:
            props.diffusivity[species] = fit_diffusivity(
                props.lag_time, each, window=windows.get(species),
                window_fraction=options.fit_window_fraction)
        except ValueError as exc:
            props.diffusivity[species] = None
            props.missing[f"diffusivity[{species}]"] = str(exc)
    props.msd_beads = total / traj.n_beads


def _step_properties(
    traj: BeadTrajectory, props: TrajectoryProperties, options: PropertyOptions
) -> None:
    """One-step statistics of multi-bead molecules, their correlation profile along the CG
    bonds and the velocity autocorrelations of beads and centres of mass, into ``props``."""
    stride = props.step_stride
    if traj.n_frames < stride + 2:
        props.missing["steps"] = (f"{traj.n_frames} frames are too few for steps of "
                                  f"{stride} frames")
        return
    positions = _dynamic_positions(traj, options)
    chains = multi_particle_molecules(traj.molecules)
    series = {ALL_BEADS: positions}
    if chains.size:
        series[CHAIN_COM] = centres_of_mass(positions, traj.masses, traj.molecules)[:, chains]
    for key, members in series.items():
        try:
            props.vacf[key] = velocity_autocorrelation(members, stride, options.vacf_lags)
        except ValueError as exc:  # nothing moves
            props.missing[f"vacf[{key}]"] = str(exc)
    if not chains.size:
        props.missing["steps"] = "no molecule has more than one bead"
        return
    steps = step_displacements(positions, stride)
    correlations = step_correlations(steps)
    props.steps = molecule_steps(steps, traj.masses, traj.molecules, correlations)
    props.correlation_profile = correlation_profile(
        correlations, bond_separation(traj.bonds, traj.n_beads))



def lag_ratio(
    lag_a: np.ndarray, a: np.ndarray, lag_b: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``a / b`` at the lags both curves have (lag 0 left out).

    Args:
        lag_a, a: ``(n_a,)`` lag times (evenly spaced from 0) and values of the first curve.
        lag_b, b: the same for the second, whose lag interval divides the first's (a
            reference at its own frame interval against a rollout's).

    Returns ``lags (k,)`` (time unit) and ``ratio (k,)`` (NaN where ``b`` is 0).
    """
    if lag_b.shape[0] < 2:
        return np.zeros(0), np.zeros(0)
    index = np.round(lag_a / lag_b[1]).astype(np.int64)
    common = (index > 0) & (index < lag_b.shape[0]) & np.isclose(
        lag_b[np.minimum(index, lag_b.shape[0] - 1)], lag_a, rtol=1e-6, atol=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return lag_a[common], a[common] / b[index[common]]
