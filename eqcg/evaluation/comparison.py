"""Several evaluations side by side: :func:`compare`."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TypeVar

from eqcg.evaluation.figures import comparison_figures
from eqcg.evaluation.markdown import fmt, image, table
from eqcg.evaluation.provenance import check_comparable, read_report
from eqcg.evaluation.results import (
    COORDINATION,
    EXACT,
    EXACT_COM,
    PREFERRED_SPECIES,
    RDF_PEAK,
    RDF_PEAK_HEIGHT,
    Aggregate,
    AgreementEntry,
    Comparison,
    ComparisonRow,
    EvaluationSummary,
    TrendEntry,
    diffusing_species,
    diffusivity_key,
    key_pairs,
    pair_key,
)
from eqcg.runtime.outputs import claims_output

COMPARISON_FILES = ("comparison.md", "comparison.json", "comparison.csv")
# comparison column -> TrendEntry field: how Li's D follows temperature at fixed salt
TREND_COLUMNS = {"diffusivity_t_rising_model": "rising_model",
                 "diffusivity_t_rising_md": "rising_md",
                 "diffusivity_t_same_order": "same_order"}


E = TypeVar("E", AgreementEntry, TrendEntry)


def _diffusivity_entry(entries: dict[str, E]) -> E | None:
    """The entry of the diffusivity of the first of :data:`PREFERRED_SPECIES` that ``entries``
    have, else of their first species (``None`` when no diffusivity was measured)."""
    species = diffusing_species(entries)
    if not species:
        return None
    chosen = next((s for s in PREFERRED_SPECIES if s in species), species[0])
    return entries[diffusivity_key(chosen)]


def _first_shell_entries(aggregate: Aggregate) -> list[AgreementEntry | None]:
    """The agreement of the coordination number and the first-peak position and height of one
    species pair: the first of :data:`PREFERRED_SPECIES` that centres a pair (else the first
    centre), with the partner that fills most of its first shell in MD (``None`` without
    RDFs)."""
    whole = aggregate.agreement["whole"]
    pairs = key_pairs(COORDINATION, whole)
    if not pairs:
        return [None, None, None]
    centres = sorted({centre for centre, _ in pairs})
    centre = next((s for s in PREFERRED_SPECIES if s in centres), centres[0])

    def reference_mean(partner: str) -> float:
        value = aggregate.mean_over_systems[pair_key(COORDINATION, centre, partner)]["reference"]
        return -1.0 if value is None else value

    partner = max((p for c, p in pairs if c == centre), key=reference_mean)
    return [whole.get(pair_key(prefix, centre, partner))
            for prefix in (COORDINATION, RDF_PEAK, RDF_PEAK_HEIGHT)]


def _median_columns(aggregate: Aggregate) -> dict[str, float | None]:
    """The comparison columns that are medians over systems (:attr:`Aggregate.medians`)."""
    medians = aggregate.medians
    sources = {
        "com_diffusivity_exact_model": (f"{EXACT_COM}/{EXACT}", "model"),
        "com_diffusivity_exact_md": (f"{EXACT_COM}/{EXACT}", "reference"),
        "com_step_ratio": ("com_step_ratio", "model/reference"),
        "collective_ratio_model": ("collective_ratio", "model"),
        "collective_ratio_md": ("collective_ratio", "reference"),
        "step_correlation_model": ("step_correlation", "model"),
        "step_correlation_md": ("step_correlation", "reference"),
    }
    return {column: medians.get(name, {}).get(view) for column, (name, view) in sources.items()}


def comparison_row(label: str, report: Path, summary: EvaluationSummary,
                   aggregate: Aggregate | None = None) -> ComparisonRow:
    """The columns of one evaluation (or of ``aggregate``, one group of its systems) with their
    bootstrap intervals: Rg and relaxation agreement at the same simulated span, diffusivity
    and first-shell agreement over each trajectory's whole span, the MD's split-half ceiling
    of the diffusivity, its temperature trend at fixed salt (no intervals), the chain
    centre-of-mass D against its exact value, and medians over systems of the one-step
    statistics (whole trajectories)."""
    aggregate = summary.aggregate if aggregate is None else aggregate
    matched = aggregate.agreement["matched"]
    rg, relaxation = matched.get("rg_mean"), matched.get("rg_relaxation_integrated")
    end_to_end = matched.get("end_to_end_relaxation_integrated")
    diffusivity = _diffusivity_entry(aggregate.agreement["whole"])
    halves = _diffusivity_entry(aggregate.agreement.get("md_halves", {}))
    trend = _diffusivity_entry(aggregate.temperature_trend)
    exact_md, exact_model = (aggregate.agreement.get(pair, {}).get(EXACT_COM)
                             for pair in ("exact_reference", "exact_model"))
    coordination, rdf_peak, rdf_peak_height = _first_shell_entries(aggregate)
    stability, speed, means = aggregate.stability, aggregate.speed, aggregate.system_means
    agreement_columns = {
        "rg_r2": (rg, "pearson_r_squared"), "rg_identity_r2": (rg, "identity_r2"),
        "relaxation_r2": (relaxation, "pearson_r_squared"),
        "end_to_end_relaxation_r2": (end_to_end, "pearson_r_squared"),
        "diffusivity_spearman": (diffusivity, "spearman_rho"),
        "diffusivity_within_1_5x": (diffusivity, "within_1_5x"),
        "diffusivity_within_2x": (diffusivity, "within_2x"),
        "diffusivity_md_halves_spearman": (halves, "spearman_rho"),
        "diffusivity_md_halves_within_1_5x": (halves, "within_1_5x"),
        "com_diffusivity_exact_within_1_5x_model": (exact_model, "within_1_5x"),
        "com_diffusivity_exact_within_1_5x_md": (exact_md, "within_1_5x"),
        "coordination_error": (coordination, "relative_error"),
        "rdf_peak_error": (rdf_peak, "relative_error"),
        "rdf_peak_height_error": (rdf_peak_height, "relative_error"),
    }
    mean_columns = {"collision_free_fraction": "collision_free",
                    "collisions_per_1000_steps": "collisions_per_1000_steps",
                    "bond_length_w1": "bond_length_w1"}
    intervals = {column: entry.intervals[name] for column, (entry, name)
                 in agreement_columns.items() if entry is not None and name in entry.intervals}
    intervals |= {column: means[name].interval for column, name in mean_columns.items()
                  if name in means}
    return ComparisonRow(
        label=label,
        report=str(report),
        nll=summary.nll_value,
        **{column: getattr(entry, name) if entry is not None else None
           for column, (entry, name) in agreement_columns.items()},
        **{column: getattr(trend, name) if trend is not None else None
           for column, name in TREND_COLUMNS.items()},
        collision_free_fraction=stability.collision_free_fraction,
        collisions_per_1000_steps=(means["collisions_per_1000_steps"].mean
                                   if "collisions_per_1000_steps" in means else None),
        bond_length_w1=means["bond_length_w1"].mean if "bond_length_w1" in means else None,
        stable_fraction=stability.stable_fraction,
        calibration=summary.calibration.get("mean_mahalanobis_squared"),
        model_speed=speed.model_median,
        speedup=speed.speedup_median,
        **_median_columns(aggregate),
        n_systems=aggregate.n_systems,
        trend_pairs=trend.pairs if trend is not None else None,
        intervals=intervals,
        diffusivity_by_species={
            species: aggregate.agreement["whole"][diffusivity_key(species)]
            for species in diffusing_species(aggregate.agreement["whole"])},
        diffusivity_ceiling_by_species={
            species: aggregate.agreement["md_halves"][diffusivity_key(species)]
            for species in diffusing_species(aggregate.agreement.get("md_halves", {}))},
    )


def summary_rows(label: str, report: Path, summary: EvaluationSummary) -> list[ComparisonRow]:
    """One row for all of an evaluation's systems, then one per group of them (labelled
    ``label [group]``) when it was grouped."""
    rows = [comparison_row(label, report, summary)]
    for group, aggregate in (summary.groups or {}).items():
        rows.append(comparison_row(f"{label} [{group}]", report, summary, aggregate))
    return rows


def _labels(directories: list[Path], summaries: list[EvaluationSummary]) -> list[str]:
    """Each report's label, with its directory name added where labels repeat."""
    labels = [s.label or d.name for d, s in zip(directories, summaries, strict=True)]
    return [f"{label} ({d.name})" if labels.count(label) > 1 else label
            for label, d in zip(labels, directories, strict=True)]


def _cell(value: float | None, interval: list[float | None] | None) -> str:
    """``value [low, high]`` where there is an interval, else the value."""
    if value is None or interval is None or None in interval:
        return fmt(value)
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]"


def _ceiling_cells(entry: AgreementEntry | None) -> list[str]:
    """The MD split-half Spearman and within-1.5x cells (``n/a`` without an entry)."""
    if entry is None:
        return [fmt(None), fmt(None)]
    return [_cell(getattr(entry, name), entry.intervals.get(name))
            for name in ("spearman_rho", "within_1_5x")]


def _row_cell(row: ComparisonRow, column: str) -> str:
    """One markdown cell: the value with its interval, a trend fraction with its pair count."""
    if column in TREND_COLUMNS and row.trend_pairs:
        return f"{fmt(getattr(row, column))} ({row.trend_pairs} pairs)"
    return _cell(getattr(row, column), row.intervals.get(column))


def _markdown(comparison: Comparison) -> str:
    lines = ["# Comparison", "", table(
        ["label", "systems", *comparison.columns.values()],
        [[row.label, row.n_systems, *(_row_cell(row, c) for c in comparison.columns)]
         for row in comparison.rows],
    ), "", f"Speeds in {', '.join(comparison.speed_unit)}. r² (Pearson²) over systems at the "
           "same simulated span (diffusivity and first shell: each trajectory's whole span); "
           "R² of y = x is the coefficient of determination of the "
           "identity; [low, high]: bootstrap 95 % interval over systems; `label [group]`: the "
           "systems of one group.", ""]
    lines += [image(path, "comparison of the columns above") for path in comparison.plots.values()]
    lines += ["", "## Diffusivity of every species", "", table(
        ["label", "species", "systems", "Spearman ρ", "within 1.5x", "within 2x",
         "mean relative error", "MD halves Spearman ρ", "MD halves within 1.5x"],
        [[row.label, species, entry.n,
          *(_cell(getattr(entry, name), entry.intervals.get(name))
            for name in ("spearman_rho", "within_1_5x", "within_2x", "relative_error")),
          *_ceiling_cells(row.diffusivity_ceiling_by_species.get(species))]
         for row in comparison.rows for species, entry in row.diffusivity_by_species.items()],
    ), "", "Each trajectory's whole span; [low, high]: bootstrap 95 % interval over systems; "
           "MD halves: the first half of each MD trajectory against its second (each fitted "
           "on its own), the agreement the MD itself can resolve.", ""]
    return "\n".join(lines)


@claims_output("comparison", "out_dir")
def compare(report_dirs: list[str | os.PathLike], out_dir: str | os.PathLike, *,
            overwrite: bool = False, allow_mixed: bool = False) -> dict:
    """Line up evaluations (directories written by :func:`~eqcg.evaluation.report.evaluate`) in
    one table and plots.

    Writes ``comparison.md``, ``comparison.json``, ``comparison.csv`` and
    ``plots/comparison.png`` (a bar chart per column that has a value, each bar with its
    bootstrap interval) into ``out_dir``. Each report is labelled by its rollout directory's
    name, with its report directory's name added where labels repeat. ``nll`` is read from a
    report's ``metrics.json`` when something put it there (a number or ``{"mean": ...}``).
    Agreement columns for Rg and relaxation times are over systems at the same simulated span
    (``matched``); diffusivity and first-shell columns compare each trajectory's whole span
    (``whole``: the MD's full length against the full rollout, the rollout's MSD fitted over
    the MD's lag window; equilibrium properties, which need the most statistics there are).
    The diffusivity column is Li's where a report has it, else its first species'; the
    first-shell columns are those of Li (else the first species centring a pair) with its main
    partner in MD.

    ``out_dir`` is claimed as a comparison (:func:`~eqcg.runtime.outputs.claim_output`): one
    holding a comparison needs ``overwrite``. Reports in different unit systems or over
    different systems are refused unless ``allow_mixed``
    (:func:`~eqcg.evaluation.provenance.check_comparable`).

    Returns the content of ``comparison.json`` (:class:`Comparison` as a dict).
    """
    out = Path(out_dir)
    directories = [Path(d) for d in report_dirs]
    summaries = [read_report(d) for d in directories]
    if not allow_mixed:
        check_comparable(directories, summaries)
    rows = [row for label, d, s in
            zip(_labels(directories, summaries), directories, summaries, strict=True)
            for row in summary_rows(label, d, s)]
    speed_units = sorted({s.aggregate.speed.unit for s in summaries})
    comparison = Comparison(columns=ComparisonRow.columns(), speed_unit=speed_units, rows=rows,
                            plots=comparison_figures(out, rows, speed_units))
    md_path, json_path, csv_path = (out / name for name in COMPARISON_FILES)
    content = comparison.to_dict()
    json_path.write_text(json.dumps(content, indent=2))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "report", "n_systems", "trend_pairs",
                                               *comparison.columns], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(content["rows"])
    md_path.write_text(_markdown(comparison))
    return content
