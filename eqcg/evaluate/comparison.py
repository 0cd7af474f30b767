"""Several evaluations side by side: :func:`compare`."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from eqcg.evaluate.figures import comparison_figures
from eqcg.evaluate.markdown import image, table
from eqcg.evaluate.results import (
    PREFERRED_SPECIES,
    AgreementEntry,
    Comparison,
    ComparisonRow,
    EvaluationSummary,
    diffusing_species,
    diffusivity_key,
)

COMPARISON_FILES = ("comparison.md", "comparison.json", "comparison.csv")


def _diffusivity_entry(entries: dict[str, AgreementEntry]) -> AgreementEntry | None:
    """The agreement of the diffusivity of the first of :data:`PREFERRED_SPECIES` that
    ``entries`` have, else of their first species (``None`` when no diffusivity was measured)."""
    species = diffusing_species(entries)
    if not species:
        return None
    chosen = next((s for s in PREFERRED_SPECIES if s in species), species[0])
    return entries[diffusivity_key(chosen)]


def comparison_row(label: str, report: Path, summary: EvaluationSummary) -> ComparisonRow:
    """The columns of one evaluation; agreement over systems at the same simulated span."""
    matched = summary.aggregate.agreement["matched"]
    rg, relaxation = matched.get("rg_mean"), matched.get("rg_relaxation_integrated")
    diffusivity = _diffusivity_entry(matched)
    stability, speed = summary.aggregate.stability, summary.aggregate.speed
    return ComparisonRow(
        label=label,
        report=str(report),
        nll=summary.nll_value,
        rg_r2=rg.pearson_r_squared if rg else None,
        rg_identity_r2=rg.identity_r2 if rg else None,
        relaxation_r2=relaxation.pearson_r_squared if relaxation else None,
        diffusivity_spearman=diffusivity.spearman_rho if diffusivity else None,
        collision_free_fraction=stability.collision_free_fraction,
        stable_fraction=stability.stable_fraction,
        calibration=summary.calibration.get("mean_mahalanobis_squared"),
        model_speed=speed.model_median,
        speedup=speed.speedup_median,
    )


def _labels(directories: list[Path], summaries: list[EvaluationSummary]) -> list[str]:
    """Each report's label, with its directory name added where labels repeat."""
    labels = [s.label or d.name for d, s in zip(directories, summaries, strict=True)]
    return [f"{label} ({d.name})" if labels.count(label) > 1 else label
            for label, d in zip(labels, directories, strict=True)]


def _markdown(comparison: Comparison) -> str:
    lines = ["# Comparison", "", table(
        ["label", *comparison.columns.values()],
        [[row.label, *(getattr(row, c) for c in comparison.columns)] for row in comparison.rows],
    ), "", f"Speeds in {', '.join(comparison.speed_unit)}. r² (Pearson²) over systems at the "
           "same simulated span; R² of y = x is the coefficient of determination of the "
           "identity.", ""]
    lines += [image(path, "comparison of the columns above") for path in comparison.plots.values()]
    return "\n".join(lines)


def compare(report_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict:
    """Line up evaluations (directories written by :func:`~eqcg.evaluate.report.evaluate`) in
    one table and plots.

    Writes ``comparison.md``, ``comparison.json``, ``comparison.csv`` and
    ``plots/comparison.png`` (side-by-side bar charts, one per column that has a value) into
    ``out_dir``. Each report is labelled by its rollout directory's name, with its report
    directory's name added where labels repeat. ``nll`` is read from a report's
    ``metrics.json`` when something put it there (a number or ``{"mean": ...}``). Agreement
    columns are over systems at the same simulated span (``matched``); the diffusivity column
    is Li's where a report has it, else its first species'.

    Returns the content of ``comparison.json`` (:class:`Comparison` as a dict).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    directories = [Path(d) for d in report_dirs]
    summaries = [EvaluationSummary.read(d) for d in directories]
    rows = [comparison_row(label, d, s) for label, d, s in
            zip(_labels(directories, summaries), directories, summaries, strict=True)]
    speed_units = sorted({s.aggregate.speed.unit for s in summaries})
    comparison = Comparison(columns=ComparisonRow.columns(), speed_unit=speed_units, rows=rows,
                            plots=comparison_figures(out, rows, speed_units))
    md_path, json_path, csv_path = (out / name for name in COMPARISON_FILES)
    content = comparison.to_dict()
    json_path.write_text(json.dumps(content, indent=2))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "report", *comparison.columns])
        writer.writeheader()
        writer.writerows(content["rows"])
    md_path.write_text(_markdown(comparison))
    return content
