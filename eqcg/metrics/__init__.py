"""Physical metrics of trajectories, independent of any model.

* :mod:`~eqcg.metrics.structure` — radius of gyration, end-to-end vectors, RDFs, bond lengths.
* :mod:`~eqcg.metrics.dynamics` — autocorrelation, relaxation times, MSD, diffusivity.
* :mod:`~eqcg.metrics.stability` — bead collisions and non-finite frames.
* :mod:`~eqcg.metrics.agreement` — Pearson/Spearman/r^2 of per-system properties, fractions
  within a factor, bootstrap intervals over systems.
"""

from eqcg.metrics.agreement import (
    Agreement,
    agreement,
    bootstrap_interval,
    identity_r2,
    identity_r2_rows,
    pearson,
    r_squared_rows,
    relative_error,
    relative_error_rows,
    spearman,
    spearman_rows,
    within_factor,
    within_factor_rows,
)
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
from eqcg.metrics.stability import (
    DEFAULT_COLLISION_THRESHOLD,
    CollisionReport,
    close_pairs,
    collision_report,
    first_nonfinite_frame,
)
from eqcg.metrics.structure import (
    RDF,
    bond_lengths,
    centres_of_mass,
    end_to_end_vectors,
    half_min_width,
    linear_chains,
    minimum_image,
    radial_distribution,
    radius_of_gyration,
    wrap_into_cell,
)

__all__ = [
    "DEFAULT_COLLISION_THRESHOLD",
    "RDF",
    "Agreement",
    "CollisionReport",
    "DiffusivityFit",
    "ExponentialRelaxation",
    "IntegratedRelaxation",
    "agreement",
    "autocorrelation",
    "bootstrap_interval",
    "centres_of_mass",
    "bond_lengths",
    "close_pairs",
    "collision_report",
    "diffusivity_unit",
    "end_to_end_vectors",
    "exponential_relaxation_time",
    "first_nonfinite_frame",
    "fit_diffusivity",
    "half_min_width",
    "identity_r2",
    "identity_r2_rows",
    "integrated_relaxation_time",
    "linear_chains",
    "mean_squared_displacement",
    "minimum_image",
    "pearson",
    "r_squared_rows",
    "radial_distribution",
    "relative_error",
    "relative_error_rows",
    "radius_of_gyration",
    "remove_drift",
    "spearman",
    "spearman_rows",
    "within_factor",
    "within_factor_rows",
    "wrap_into_cell",
]
