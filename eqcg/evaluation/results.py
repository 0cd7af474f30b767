"""Typed results of an evaluation (``metrics.json``) and of a comparison (``comparison.json``).

Every class is a :class:`Record`: :meth:`Record.to_dict` gives the JSON layout of the files
(NaN and inf as null) and :meth:`Record.from_dict` reads it back, so ``load -> object -> dict``
reproduces a file. Per-system property values are keyed by name (``rg_mean``,
``rg_relaxation_integrated``, ``diffusivity[<species>]``, ...; see :func:`diffusivity_key`).
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from eqcg.errors import DataError
from eqcg.evaluation.markdown import json_ready

METRICS_FILE = "metrics.json"
VIEWS = {"model": "whole rollout up to its first non-finite frame",
         "model_matched": "rollout over the span the reference covers",
         "reference_matched": "reference beads at the rollout's frames",
         "reference": "whole reference trajectory"}
# views of the per-system values beyond VIEWS: the reference's halves (dynamic values only,
# each half treated as a trajectory of its own) and exact values where physics gives them
REFERENCE_HALVES = ("reference_half1", "reference_half2")
EXACT = "exact"
DEFINITIONS = {
    "pearson_r_squared": "squared Pearson correlation over systems (the r² of Fu et al.)",
    "identity_r2": "coefficient of determination of model = reference: "
                   "1 - sum (model - ref)² / sum (ref - mean ref)²",
    "rg": "mass-weighted radius of gyration of each molecule with more than one bead",
    "relaxation integrated": "dt (1/2 + sum_k C(k)) over Sokal's window (c = 5)",
    "relaxation exponential": "least-squares fit of A exp(-t / tau) to C(t) from lag 0 to the "
                              "first lag where C < acf_floor",
    "diffusivity": "slope / 6 of a straight line through the MSD over fit_window (periodic "
                   "systems: centre-of-mass drift removed first)",
    "collision": "two beads closer than collision_threshold (minimum image)",
    "step": "one rollout frame interval (a learned step when the rollout saved every step); "
            "the reference's steps span the same time (every origin frame used)",
    "bead_step_msd": "<|dx_i|²> over one step, mean over the beads of multi-bead molecules",
    "com_step_msd": "<|dX|²> of a multi-bead molecule's centre of mass over one step, mean "
                    "over molecules",
    "collective_ratio": "n_beads <|dX|²> / mean_i <|dx_i|²> per multi-bead molecule (1: "
                        "beads move independently; 1 + (n - 1) rho for equal correlations)",
    "step_correlation": "rho-bar: mean over bead pairs i != j of one molecule of "
                        "<dx_i.dx_j> / sqrt(<|dx_i|²> <|dx_j|²>) over one step",
    "vacf_lag1": "normalised autocorrelation of step velocities at a lag of one step",
    "temperature_trend": "over the pairs of systems with the same li_eo_ratio and different "
                         "temperatures: the fractions where the whole rollout's / the whole "
                         "MD's D is higher at the higher temperature, and where the two order "
                         "the pair alike",
    "reference_half1/2": "the reference trajectory's first / second half (dynamic values, "
                         "fitted as trajectories of their own): their agreement is the MD "
                         "ceiling of the model's",
    "exact": "the exact chain centre-of-mass D = kT damp / M of a lone Langevin chain (lj "
             "units, attrs temperature and damp)",
}
# the diffusivity a comparison shows: the first of these a report has, else its first species
PREFERRED_SPECIES = ("Li", "chain COM")
_OMIT_NONE = {"omit_none": True}  # field metadata: left out of the JSON form when None
_DIFFUSIVITY = "diffusivity"
RDF_PEAK = "rdf_peak"
RDF_PEAK_HEIGHT = "rdf_peak_height"
COORDINATION = "coordination"
STEP_KEYS = ("bead_step_msd", "com_step_msd", "collective_ratio", "step_correlation")
VACF_LAG1 = "vacf_lag1"


def diffusivity_key(species: str) -> str:
    """The property name of ``species``' diffusivity, ``diffusivity[<species>]``."""
    return f"{_DIFFUSIVITY}[{species}]"


EXACT_COM = diffusivity_key("chain COM")  # the property that has an exact value (view EXACT)


def vacf_key(group: str) -> str:
    """The property name ``vacf_lag1[<group>]`` of the step-velocity autocorrelation at one
    step of ``group`` (``beads`` or ``chain COM``)."""
    return f"{VACF_LAG1}[{group}]"


def pair_key(prefix: str, centre: str, partner: str) -> str:
    """The property name ``<prefix>[<centre>|<partner>]`` of a pair of bead species:
    :data:`RDF_PEAK` / :data:`RDF_PEAK_HEIGHT` (first-peak position / height of their g(r)) or
    :data:`COORDINATION` (mean number of ``partner`` beads in the first shell of a ``centre``
    bead)."""
    return f"{prefix}[{centre}|{partner}]"


def key_pairs(prefix: str, keys: Iterable[str]) -> list[tuple[str, str]]:
    """The ``(centre, partner)`` species pairs of the property names ``keys`` that start with
    ``prefix`` (see :func:`pair_key`), sorted."""
    start = prefix + "["
    return sorted(tuple(k[len(start):-1].split("|", 1)) for k in keys
                  if k.startswith(start) and k.endswith("]") and "|" in k)


def diffusing_species(keys: Iterable[str]) -> list[str]:
    """The species whose diffusivity is among the property names ``keys``, sorted."""
    prefix = _DIFFUSIVITY + "["
    return sorted(k[len(prefix):-1] for k in keys if k.startswith(prefix) and k.endswith("]"))


def _plain(value: object) -> object:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _typed(hint: Any, value: object) -> object:
    """``value`` (JSON) as the annotated type ``hint``: records and containers of records."""
    if value is None:
        return None
    if get_origin(hint) in (Union, types.UnionType):
        arms = [arm for arm in get_args(hint) if arm is not type(None)]
        if len(arms) != 1:
            return value
        hint = arms[0]
    origin, args = get_origin(hint), get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if origin is dict and args:
        return {k: _typed(args[1], v) for k, v in value.items()}
    if origin is list and args:
        return [_typed(args[0], v) for v in value]
    return value


R = TypeVar("R", bound="Record")


class Record:
    """A dataclass that converts to and from its JSON layout (see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready layout (fields in order; NaN/inf as ``None``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or not f.metadata.get("omit_none"):
                out[f.name] = _plain(value)
        return json_ready(out)

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """Read the layout of :meth:`to_dict` (keys it does not know are ignored)."""
        hints = get_type_hints(cls)
        return cls(**{f.name: _typed(hints[f.name], data[f.name])
                      for f in fields(cls) if f.name in data})


@dataclass
class FrameCounts(Record):
    """Frames of one system's rollout and reference.

    Attributes:
        rollout, finite, matched: rollout frames: all, before the first non-finite one, and
            those the reference covers.
        reference: reference frames.
        start_frame: the reference frame at the rollout's frame 0.
        dilation: reference frames per learned step.
        reference_frames_per_rollout_frame: ``None`` for a one-frame rollout.
    """

    rollout: int
    finite: int
    matched: int
    reference: int
    start_frame: int
    dilation: int
    reference_frames_per_rollout_frame: float | None


@dataclass
class Span(Record):
    """Simulated time from first to last frame (``unit``: ps or tau)."""

    rollout: float
    matched: float
    reference: float
    unit: str


@dataclass
class Speed(Record):
    """Simulated time per wall-clock hour (``unit``: ns/h for real units, else tau/h).

    Attributes:
        model_wall_seconds: wall time of the rollout's stepping.
        model: the rollout's rate (``None`` without a wall time).
        reference_md: the generating LAMMPS run's rate (``None`` when the dataset stores no
            wall time for the system; ``reference_note`` says so).
        reference_wall_seconds: that run's wall time.
        speedup: ``model / reference_md``.
    """

    unit: str
    model_wall_seconds: float
    model: float | None
    reference_md: float | None = None
    reference_wall_seconds: float | None = None
    speedup: float | None = None
    reference_note: str | None = field(default=None, metadata=_OMIT_NONE)


@dataclass
class SystemEvaluation(Record):
    """One rollout system judged against its reference MD.

    Attributes:
        reference_system: the reference dataset's system.
        model: the variant that made the rollout.
        n_beads: beads of the system.
        species: bead species -> beads of it.
        cg_settings: the CG settings (``CGSettings`` as a dict).
        frames, span: frame counts and simulated spans.
        reference_covers_rollout: the reference lasts as long as the whole rollout.
        stability: view (``model``, ``reference_matched``) -> collision report summary.
        properties: view -> property summary (``TrajectoryProperties.summary``).
        values: view -> property name -> value compared across systems (NaN/None: undefined).
        distribution_distance: ``rg_wasserstein``, ``bond_length_wasserstein`` (length unit).
        speed: simulated time per wall-clock hour.
        conditions: the reference system's ``temperature`` and salt attrs
            (:attr:`~eqcg.data.trajectory.SystemTrajectory.conditions`).
        first_shells: ``centre|partner`` -> radius (length unit) of the first coordination
            shell in the whole reference MD (first minimum of its g(r)); every view's
            ``coordination[centre|partner]`` counts partners within it.
        dynamics: the whole rollout against the whole reference at the same step:
            ``com_step_ratio`` / ``bead_step_ratio`` (median over multi-bead molecules of the
            model's over the MD's one-step centre-of-mass / bead MSD), ``msd_ratio``
            (``beads`` / ``chain COM`` -> steps -> the model's MSD over the MD's at that lag,
            at 1, 10, 100, ... steps) and ``exact_com_diffusivity`` (sigma²/tau, ``None`` where
            no exact value is known).
        plots: figure kind -> PNG path relative to the report directory.
    """

    reference_system: str
    model: str
    n_beads: int
    species: dict[str, int]
    cg_settings: dict[str, int]
    frames: FrameCounts
    span: Span
    reference_covers_rollout: bool
    stability: dict[str, dict[str, Any]]
    properties: dict[str, dict[str, Any]]
    values: dict[str, dict[str, float | None]]
    distribution_distance: dict[str, float | None]
    speed: Speed
    conditions: dict[str, float] = field(default_factory=dict)
    first_shells: dict[str, float | None] = field(default_factory=dict)
    dynamics: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)


@dataclass
class AgreementEntry(Record):
    """Agreement of one property over systems (``None`` statistics: ``reason`` says why).

    ``within_1_5x`` / ``within_2x``: fraction of systems whose model value is within that
    factor of the reference; ``relative_error``: mean over systems of
    ``|model - reference| / |reference|``; ``intervals``: statistic name -> bootstrap 95 %
    interval over systems (:func:`eqcg.metrics.agreement.bootstrap_interval`).
    """

    n: int
    pearson_r: float | None
    pearson_p: float | None
    pearson_r_squared: float | None
    spearman_rho: float | None
    spearman_p: float | None
    identity_r2: float | None
    within_1_5x: float | None = None
    within_2x: float | None = None
    relative_error: float | None = None
    intervals: dict[str, list[float | None]] = field(default_factory=dict)
    reason: str | None = field(default=None, metadata=_OMIT_NONE)


@dataclass
class StabilityFractions(Record):
    """Fractions of systems whose rollout stayed finite (and did not blow up) / collision-free /
    both, the reference MD's collision-free fraction over the matched span, each system's first
    collision, and ``blown_up``: system -> the learned step it blew up at, stopping the rollout
    (every system of it ends there)."""

    finite_fraction: float
    collision_free_fraction: float
    stable_fraction: float
    reference_collision_free_fraction: float
    first_collision_frame: dict[str, int | None]
    blown_up: dict[str, int] = field(default_factory=dict)


@dataclass
class SpeedMedians(Record):
    """Medians over systems of :class:`Speed` (``None`` where no system has the value)."""

    unit: str
    model_median: float | None
    reference_median: float | None
    speedup_median: float | None


@dataclass
class SystemMean(Record):
    """Mean over systems of a per-system number, with its bootstrap 95 % interval over
    systems (``[None, None]`` with fewer than three systems)."""

    mean: float | None
    interval: list[float | None]
    n: int


@dataclass
class TrendEntry(Record):
    """How one diffusivity follows temperature at fixed salt (whole rollout and whole MD).

    Over every pair of systems with the same ``li_eo_ratio`` (systems without one count as one
    salt) and different temperatures whose D is finite in both trajectories:

    Attributes:
        pairs: how many such pairs there are.
        rising_model, rising_md: fraction of them where the model's / the MD's D is higher at
            the higher temperature (``None`` without pairs).
        same_order: fraction of them the model's D orders as the MD's does (``None`` without
            pairs).
    """

    pairs: int
    rising_model: float | None
    rising_md: float | None
    same_order: float | None


@dataclass
class Aggregate(Record):
    """Numbers over all systems of an evaluation.

    Attributes:
        agreement: pair -> property name -> agreement of the pair's values over systems:
            ``matched`` (model vs reference MD over the same span), ``whole`` (whole
            trajectories), ``md_halves`` (the reference's first half vs its second: the MD
            ceiling, dynamic properties only), ``exact_reference`` / ``exact_model`` (the
            exact value vs the whole reference / the whole rollout, where one is known).
        medians: name -> view -> median over systems: ``collective_ratio``,
            ``step_correlation`` (views ``model``, ``reference``), ``com_step_ratio``,
            ``bead_step_ratio`` (view ``model/reference``), ``diffusivity[chain COM]/exact``
            (views ``model``, ``reference``).
        temperature_trend: diffusivity property name -> how it follows temperature at fixed
            salt (:class:`TrendEntry`).
        mean_over_systems: property name -> view -> mean over systems.
        system_means: ``collision_free`` (fraction), ``collisions_per_1000_steps`` (colliding
            pairs summed over the rollout's frames per 1000 learned steps),
            ``bond_length_w1`` (Wasserstein-1 distance of CG bond lengths to the MD, length
            unit) -> their mean over systems.
        units: property name -> its unit.
        plots: figure kind -> PNG path relative to the report directory.
    """

    n_systems: int
    stability: StabilityFractions
    agreement: dict[str, dict[str, AgreementEntry]]
    mean_over_systems: dict[str, dict[str, float | None]]
    units: dict[str, str]
    speed: SpeedMedians
    system_means: dict[str, SystemMean] = field(default_factory=dict)
    medians: dict[str, dict[str, float | None]] = field(default_factory=dict)
    temperature_trend: dict[str, TrendEntry] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluationSummary(Record):
    """The content of ``metrics.json``.

    Attributes:
        label: the rollout directory's name.
        model: the variants that made the rollout, joined by `` + ``.
        nll: validation NLL recorded with the rollout (a number or ``{"mean": ...}``).
        rollout, reference: paths of the rollout file and the reference dataset.
        units: the unit system (``UnitSystem`` as a dict) and the diffusivity unit.
        options: the collision threshold and the property options.
        views, definitions: what the view names and the statistics mean.
        systems: system name -> its evaluation.
        calibration: one-step calibration numbers, or ``{"note": why not measured}``.
        group_by: the reference systems' attribute the systems were grouped by, if any.
        groups: value of that attribute -> aggregate over its systems (no figures).
    """

    label: str
    model: str
    nll: float | dict[str, float] | None
    rollout: str
    reference: str
    units: dict[str, str]
    options: dict[str, Any]
    views: dict[str, str]
    definitions: dict[str, str]
    systems: dict[str, SystemEvaluation]
    aggregate: Aggregate
    calibration: dict[str, Any]
    group_by: str | None = field(default=None, metadata=_OMIT_NONE)
    groups: dict[str, Aggregate] | None = field(default=None, metadata=_OMIT_NONE)

    @property
    def nll_value(self) -> float | None:
        """The NLL as one number (the mean where several were recorded)."""
        return self.nll.get("mean") if isinstance(self.nll, dict) else self.nll

    def write(self, out_dir: str | os.PathLike) -> None:
        """Write ``out_dir/metrics.json``."""
        (Path(out_dir) / METRICS_FILE).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, report_dir: str | os.PathLike) -> EvaluationSummary:
        """Read ``report_dir/metrics.json`` (a :class:`DataError` when there is none)."""
        path = Path(report_dir) / METRICS_FILE
        if not path.exists():
            raise DataError(f"{report_dir}: no {METRICS_FILE}; run evaluate there first")
        return cls.from_dict(json.loads(path.read_text()))


def column(title: str, reading: str = "higher is better") -> Any:
    """A :class:`ComparisonRow` column: its table title and which way is better."""
    return field(default=None, metadata={"title": title, "reading": reading})


@dataclass
class ComparisonRow(Record):
    """One evaluation (or one group of its systems) in a comparison; Rg and relaxation
    agreement over systems at the same span, diffusivity and first-shell agreement over each
    trajectory's whole span; ``intervals``: column -> bootstrap 95 % interval over systems;
    ``diffusivity_by_species``: species -> agreement of its diffusivity (whole spans);
    ``diffusivity_ceiling_by_species``: the same for the MD's two halves (the MD ceiling);
    ``trend_pairs``: how many same-salt pairs at different temperatures the trend columns
    count."""

    label: str
    report: str
    nll: float | None = column("NLL", "lower is better")
    rg_r2: float | None = column("Rg r² (Pearson²)")
    rg_identity_r2: float | None = column("Rg R² of y = x")
    relaxation_r2: float | None = column("Rg relaxation time (integrated) r² (Pearson²)")
    end_to_end_relaxation_r2: float | None = column(
        "end-to-end relaxation time (integrated) r² (Pearson²)")
    diffusivity_spearman: float | None = column(
        "diffusivity (Li, else chain COM, else first species; whole spans) Spearman ρ")
    diffusivity_within_1_5x: float | None = column("diffusivity within 1.5x (fraction)")
    diffusivity_within_2x: float | None = column("diffusivity within 2x (fraction)")
    diffusivity_md_halves_spearman: float | None = column(
        "diffusivity, MD half vs half Spearman ρ (ceiling)", "the MD's ceiling")
    diffusivity_md_halves_within_1_5x: float | None = column(
        "diffusivity, MD halves within 1.5x (ceiling)", "the MD's ceiling")
    diffusivity_t_rising_model: float | None = column(
        "D rises with T at fixed salt, model (fraction of same-salt pairs)",
        "closer to MD is better")
    diffusivity_t_rising_md: float | None = column(
        "D rises with T at fixed salt, MD (fraction of same-salt pairs)", "the MD's value")
    diffusivity_t_same_order: float | None = column(
        "D orders same-salt pairs by T as the MD does (fraction)")
    com_diffusivity_exact_model: float | None = column(
        "chain COM D / exact, model (median)", "closer to 1 is better")
    com_diffusivity_exact_md: float | None = column(
        "chain COM D / exact, MD (median)", "closer to 1 is better")
    com_diffusivity_exact_within_1_5x_model: float | None = column(
        "chain COM D within 1.5x of exact, model (fraction)")
    com_diffusivity_exact_within_1_5x_md: float | None = column(
        "chain COM D within 1.5x of exact, MD (fraction)")
    com_step_ratio: float | None = column(
        "COM one-step MSD model / MD (median)", "closer to 1 is better")
    collective_ratio_model: float | None = column(
        "collective ratio n var(COM step) / var(bead step), model (median)",
        "closer to MD is better")
    collective_ratio_md: float | None = column(
        "collective ratio, MD (median)", "the MD's value")
    step_correlation_model: float | None = column(
        "bead step correlation ρ̄, model (median)", "closer to MD is better")
    step_correlation_md: float | None = column("bead step correlation ρ̄, MD (median)",
                                               "the MD's value")
    coordination_error: float | None = column(
        "first-shell coordination (Li, else first species, with its main MD partner) mean "
        "relative error", "lower is better")
    rdf_peak_error: float | None = column(
        "g(r) first-peak position (same pair) mean relative error", "lower is better")
    rdf_peak_height_error: float | None = column(
        "g(r) first-peak height (same pair) mean relative error", "lower is better")
    collision_free_fraction: float | None = column("collision-free fraction")
    collisions_per_1000_steps: float | None = column("collisions per 1000 steps (mean)",
                                                     "lower is better")
    bond_length_w1: float | None = column("CG bond-length W1 to MD (mean)", "lower is better")
    stable_fraction: float | None = column("stable fraction")
    calibration: float | None = column("one-step mean d² (3 = calibrated)",
                                       "closer to 3 is better")
    model_speed: float | None = column("model sim. time per hour (median)")
    speedup: float | None = column("speed-up over MD (median)")
    n_systems: int | None = None
    trend_pairs: int | None = None
    intervals: dict[str, list[float | None]] = field(default_factory=dict)
    diffusivity_by_species: dict[str, AgreementEntry] = field(default_factory=dict)
    diffusivity_ceiling_by_species: dict[str, AgreementEntry] = field(default_factory=dict)

    @classmethod
    def columns(cls) -> dict[str, str]:
        """Column name -> title, in table order."""
        return {f.name: f.metadata["title"] for f in fields(cls) if "title" in f.metadata}

    @classmethod
    def readings(cls) -> dict[str, str]:
        """Column name -> which way is better."""
        return {f.name: f.metadata["reading"] for f in fields(cls) if "title" in f.metadata}


@dataclass
class Comparison(Record):
    """The content of ``comparison.json``: column titles, speed units, rows, figures."""

    columns: dict[str, str]
    speed_unit: list[str]
    rows: list[ComparisonRow]
    plots: dict[str, str]
