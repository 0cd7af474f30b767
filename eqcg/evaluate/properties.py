"""The physical properties of one bead trajectory that a rollout is judged by.

For a trajectory (model rollout or coarse-grained reference MD) :func:`trajectory_properties`
computes the curves the plots draw and :meth:`TrajectoryProperties.summary` the numbers
``metrics.json`` holds:

* Rg of every molecule with more than one bead ("chains"; for a one-chain system this is the
  system's Rg), its distribution and the relaxation time of its autocorrelation;
* the end-to-end vector autocorrelation of linear chains and its relaxation time;
* MSD per bead species and of the chains' centres of mass (species :data:`CHAIN_COM`; periodic
  systems: the system's centre-of-mass drift removed) and the diffusivity of its linear regime;
* RDFs between bead species (periodic systems) and CG bond lengths, over evenly spaced frames.

Lengths are Å or sigma, times ps or tau (the dataset's units).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from eqcg.evaluate.beads import BeadTrajectory
from eqcg.metrics.dynamics import (
    DiffusivityFit,
    ExponentialRelaxation,
    IntegratedRelaxation,
    autocorrelation,
    diffusivity_unit,
    exponential_relaxation_time,
    fit_diffusivity,
    integrated_relaxation_time,
    mean_squared_displacement,
    remove_drift,
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


@dataclass(frozen=True)
class PropertyOptions:
    """How properties are computed (one place for every choice of the analysis).

    Attributes:
        structure_frames: at most this many evenly spaced frames feed RDFs and bond lengths.
        rdf_bins: distance bins of the RDFs.
        rdf_r_max: largest RDF distance (length unit); ``None``: half the narrowest cell width.
        fit_window_fraction: MSD lag window of the diffusivity fit, as fractions of the longest
            lag.
        acf_floor: the exponential fit of an autocorrelation stops where it drops below this.
        remove_drift: subtract the system's centre-of-mass displacement before MSDs of
            periodic systems (a spurious drift of the whole box). Open systems keep it: there
            the centre of mass of a lone chain diffuses for real.
    """

    structure_frames: int = 100
    rdf_bins: int = 100
    rdf_r_max: float | None = None
    fit_window_fraction: tuple[float, float] = (0.1, 0.5)
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
        diffusivity: species name -> fit of its MSD (D in length^2/time).
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
    diffusivity: dict[str, DiffusivityFit | None] = field(default_factory=dict)
    rdf: RDF | None = None
    bond_lengths: np.ndarray | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def rg_mean(self) -> float:
        return float(self.rg.mean()) if self.rg is not None else float("nan")

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
) -> TrajectoryProperties:
    """Every property of ``traj`` (see module docstring); its frames must be finite.

    ``rdf_r_max`` (length unit) defaults to :func:`default_rdf_r_max` of ``traj``'s cells; pass
    one value for trajectories whose RDFs are compared. ``fit_windows`` (species -> lag times,
    inclusive) fits those species' diffusivities over fixed lag windows instead of
    ``options.fit_window_fraction`` of this trajectory's span: pass another trajectory's
    windows to measure both at the same time scale.
    """
    props = TrajectoryProperties(units=traj.units, time=traj.time - traj.time[0],
                                 species_names=traj.species_names)
    dynamic = traj.n_frames >= 3
    if not dynamic:
        props.missing["dynamics"] = f"{traj.n_frames} frames are too few for dynamics"
    _chain_properties(traj, props, options, dynamic)
    if dynamic:
        _diffusion_properties(traj, props, options, fit_windows or {})
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


def _diffusion_properties(
    traj: BeadTrajectory,
    props: TrajectoryProperties,
    options: PropertyOptions,
    fit_windows: dict[str, tuple[float, float]],
) -> None:
    """MSD and diffusivity of every bead species and of the chains' centres of mass, into
    ``props`` (fitted over ``fit_windows[species]`` where given)."""
    positions = traj.positions
    if options.remove_drift and traj.pbc:
        positions = remove_drift(positions, traj.masses)
    props.lag_time = props.time.copy()
    groups = {species: positions[:, traj.species == index]
              for index, species in enumerate(traj.species_names)}
    chains = np.flatnonzero(np.bincount(traj.molecules) > 1)
    if chains.size:
        groups[CHAIN_COM] = centres_of_mass(positions, traj.masses, traj.molecules)[:, chains]
    for species, members in groups.items():
        if not members.shape[1]:
            continue
        each = mean_squared_displacement(members, per_particle=True)
        props.msd[species] = each.mean(axis=1)
        try:
            props.diffusivity[species] = fit_diffusivity(
                props.lag_time, each, window=fit_windows.get(species),
                window_fraction=options.fit_window_fraction)
        except ValueError as exc:
            props.diffusivity[species] = None
            props.missing[f"diffusivity[{species}]"] = str(exc)

