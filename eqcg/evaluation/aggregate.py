"""Numbers over all systems of an evaluation: :func:`aggregate`.

Cross-system agreement pairs ``model_matched`` with ``reference_matched`` (same simulated span,
same frame spacing) and, separately, ``model`` with ``reference`` (whole trajectories); the
MD's first half with its second (``md_halves``: the ceiling the MD sets on the dynamic
properties), and the exact values, where known, with the whole MD and the whole rollout; per
diffusivity, whether the whole rollout follows temperature at fixed salt as the whole MD does
(:func:`temperature_trend`).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial

import numpy as np

from eqcg.evaluation.results import (
    COORDINATION,
    EXACT,
    EXACT_COM,
    RDF_PEAK,
    RDF_PEAK_HEIGHT,
    REFERENCE_HALVES,
    STEP_KEYS,
    VACF_LAG1,
    VIEWS,
    Aggregate,
    AgreementEntry,
    SpeedMedians,
    StabilityFractions,
    SystemEvaluation,
    SystemMean,
    TrendEntry,
    diffusing_species,
    diffusivity_key,
)
from eqcg.metrics.agreement import (
    agreement,
    bootstrap_interval,
    identity_r2_rows,
    r_squared_rows,
    relative_error,
    relative_error_rows,
    spearman_rows,
    within_factor,
    within_factor_rows,
)
from eqcg.metrics.dynamics import diffusivity_unit
from eqcg.units import unit_system

AGREEMENT_PAIRS = {"matched": ("reference_matched", "model_matched"),
                   "whole": ("reference", "model")}
# pairs whose values exist for some properties only: agreement of those both sides have
PARTIAL_PAIRS = {"md_halves": REFERENCE_HALVES,
                 "exact_reference": (EXACT, "reference"),
                 "exact_model": (EXACT, "model")}
SALT = "li_eo_ratio"  # the condition two systems share to count as the same salt


def property_unit(key: str, units: str) -> str:
    """The unit of the per-system property ``key`` in unit system ``units``."""
    system = unit_system(units)
    if key.startswith("diffusivity"):
        return diffusivity_unit(units)[1]
    if key.endswith("_step_msd"):
        return f"{system.length}²"
    if key in STEP_KEYS or key.startswith(VACF_LAG1):
        return "1"
    if key.startswith(COORDINATION):
        return "beads"
    if key.startswith(RDF_PEAK_HEIGHT + "["):
        return "g(r)"
    return system.length if key == "rg_mean" or key.startswith(RDF_PEAK) else system.time


def property_column(systems: list[SystemEvaluation], view: str, key: str) -> np.ndarray:
    """``(n_systems,)`` values of property ``key`` in ``view`` (NaN where undefined)."""
    values = [s.values[view].get(key) for s in systems]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


INTERVAL_STATISTICS = {
    "pearson_r_squared": r_squared_rows,
    "spearman_rho": spearman_rows,
    "identity_r2": identity_r2_rows,
    "within_1_5x": partial(within_factor_rows, factor=1.5),
    "within_2x": partial(within_factor_rows, factor=2.0),
    "relative_error": relative_error_rows,
}


def agreement_entry(reference: np.ndarray, model: np.ndarray) -> AgreementEntry:
    """Agreement of ``(n_systems,)`` model values with reference values, with bootstrap 95 %
    intervals over systems (``None`` statistics and a ``reason`` when there are too few finite
    pairs)."""
    try:
        statistics = agreement(reference, model)
    except ValueError as exc:
        n = int((np.isfinite(reference) & np.isfinite(model)).sum())
        return AgreementEntry(n, None, None, None, None, None, None, reason=str(exc))
    return AgreementEntry(
        **asdict(statistics),
        within_1_5x=within_factor(reference, model, 1.5),
        within_2x=within_factor(reference, model, 2.0),
        relative_error=relative_error(reference, model),
        intervals={name: list(bootstrap_interval(statistic, reference, model))
                   for name, statistic in INTERVAL_STATISTICS.items()},
    )


def _mean_rows(reference: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The mean of ``model`` along its last axis (a statistic for one-sample bootstraps)."""
    return model.mean(axis=-1)


def system_mean(values: list[float | None]) -> SystemMean:
    """Mean over systems of per-system ``values`` (``None`` left out) with its bootstrap 95 %
    interval over systems."""
    present = np.array([v for v in values if v is not None], dtype=float)
    if not present.size:
        return SystemMean(None, [None, None], 0)
    return SystemMean(float(present.mean()),
                      list(bootstrap_interval(_mean_rows, present, present)), present.size)


def _learned_steps(system: SystemEvaluation) -> float | None:
    """Learned steps the finite part of a system's rollout spans (``None``: one frame)."""
    frames = system.frames
    if frames.reference_frames_per_rollout_frame is None:
        return None
    return (frames.finite - 1) * frames.reference_frames_per_rollout_frame / frames.dilation


def _collisions_per_1000_steps(system: SystemEvaluation) -> float | None:
    steps = _learned_steps(system)
    return (1000.0 * system.stability["model"]["total_collisions"] / steps
            if steps else None)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(present)) if present else None


def _shared_keys(systems: list[SystemEvaluation], reference: str, model: str) -> list[str]:
    """The property names that both views have in at least one of ``systems``, sorted."""
    return sorted({key for s in systems
                   for key in s.values.get(reference, {}).keys() & s.values.get(model, {}).keys()})


def _dynamics_medians(systems: list[SystemEvaluation]) -> dict[str, dict[str, float | None]]:
    """Medians over systems of the one-step statistics, of the model's over the MD's one-step
    MSDs and of the chain centre-of-mass diffusivity over its exact value (see
    :attr:`Aggregate.medians`)."""
    def column(view: str, key: str) -> list[float | None]:
        return [s.values.get(view, {}).get(key) for s in systems]

    out: dict[str, dict[str, float | None]] = {
        key: {view: _median(column(view, key)) for view in ("model", "reference")}
        for key in ("collective_ratio", "step_correlation")}
    for key in ("com_step_ratio", "bead_step_ratio"):
        out[key] = {"model/reference": _median([s.dynamics.get(key) for s in systems])}
    exact = property_column(systems, EXACT, EXACT_COM)
    if np.isfinite(exact).any():
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{EXACT_COM}/{EXACT}"] = {
                view: _median(list(property_column(systems, view, EXACT_COM) / exact))
                for view in ("model", "reference")}
    return out


def temperature_trend(systems: list[SystemEvaluation], key: str) -> TrendEntry:
    """How the diffusivity ``key`` of the whole rollout and the whole MD follows temperature
    over the same-salt pairs of ``systems`` (:class:`TrendEntry`)."""
    temperature, salt = (np.array([s.conditions.get(name, np.nan) for s in systems], dtype=float)
                         for name in ("temperature", SALT))
    model, md = (property_column(systems, view, key) for view in ("model", "reference"))
    usable = np.isfinite(temperature) & np.isfinite(model) & np.isfinite(md)
    i, j = np.triu_indices(len(systems), k=1)
    same_salt = (salt[i] == salt[j]) | (np.isnan(salt[i]) & np.isnan(salt[j]))
    keep = usable[i] & usable[j] & same_salt & (temperature[i] != temperature[j])
    i, j = i[keep], j[keep]
    if not i.size:
        return TrendEntry(0, None, None, None)
    warmer = np.sign(temperature[j] - temperature[i])
    model_step, md_step = np.sign(model[j] - model[i]), np.sign(md[j] - md[i])
    return TrendEntry(pairs=int(i.size),
                      rising_model=float(np.mean(model_step * warmer > 0)),
                      rising_md=float(np.mean(md_step * warmer > 0)),
                      same_order=float(np.mean(model_step == md_step)))


def _agreement_pairs(
    systems: list[SystemEvaluation], keys: list[str]
) -> list[tuple[str, tuple[str, str], list[str]]]:
    """``(pair, (reference view, model view), property names)`` of every agreement pair:
    :data:`AGREEMENT_PAIRS` over ``keys``, :data:`PARTIAL_PAIRS` over the names both of their
    views have (left out when there is none)."""
    out = [(pair, views, keys) for pair, views in AGREEMENT_PAIRS.items()]
    for pair, views in PARTIAL_PAIRS.items():
        shared = _shared_keys(systems, *views)
        if shared:
            out.append((pair, views, shared))
    return out


def aggregate(systems: dict[str, SystemEvaluation], units: str) -> Aggregate:
    """Stability fractions, cross-system agreement, means, median speeds and the temperature
    trend of the diffusivities of ``systems`` (name -> evaluation; at least one), in unit
    system ``units``; no figures."""
    evaluations = list(systems.values())
    keys = sorted({key for s in evaluations for view in VIEWS for key in s.values[view]})
    model_stability = [s.stability["model"] for s in evaluations]
    n = len(evaluations)

    def mean(view: str, key: str) -> float | None:
        values = property_column(evaluations, view, key)
        return float(np.nanmean(values)) if np.isfinite(values).any() else None

    return Aggregate(
        n_systems=n,
        stability=StabilityFractions(
            finite_fraction=sum(s["finite"] for s in model_stability) / n,
            collision_free_fraction=sum(s["collision_free"] for s in model_stability) / n,
            stable_fraction=sum(s["stable"] for s in model_stability) / n,
            reference_collision_free_fraction=sum(
                s.stability["reference_matched"]["collision_free"] for s in evaluations) / n,
            first_collision_frame={name: s.stability["model"]["first_collision_frame"]
                                   for name, s in systems.items()},
            blown_up={name: s.stability["model"]["blew_up_at_step"] for name, s in systems.items()
                      if s.stability["model"].get("blew_up_at_step") is not None},
        ),
        agreement={pair: {key: agreement_entry(property_column(evaluations, ref, key),
                                               property_column(evaluations, mod, key))
                          for key in pair_keys}
                   for pair, (ref, mod), pair_keys in _agreement_pairs(evaluations, keys)},
        mean_over_systems={key: {view: mean(view, key) for view in VIEWS} for key in keys},
        units={key: property_unit(key, units) for key in keys},
        speed=SpeedMedians(
            unit=evaluations[0].speed.unit,
            model_median=_median([s.speed.model for s in evaluations]),
            reference_median=_median([s.speed.reference_md for s in evaluations]),
            speedup_median=_median([s.speed.speedup for s in evaluations]),
        ),
        medians=_dynamics_medians(evaluations),
        temperature_trend={key: temperature_trend(evaluations, key)
                           for key in map(diffusivity_key, diffusing_species(keys))},
        system_means={
            "collision_free": system_mean(
                [float(s["collision_free"]) for s in model_stability]),
            "collisions_per_1000_steps": system_mean(
                [_collisions_per_1000_steps(s) for s in evaluations]),
            "bond_length_w1": system_mean(
                [s.distribution_distance.get("bond_length_wasserstein") for s in evaluations]),
        },
    )
