"""``report.md`` of an evaluation, rendered from its :class:`EvaluationSummary`."""

from __future__ import annotations

from eqcg.evaluate.markdown import image, table
from eqcg.evaluate.results import (
    COORDINATION,
    RDF_PEAK,
    RDF_PEAK_HEIGHT,
    AgreementEntry,
    EvaluationSummary,
    SystemEvaluation,
    pair_key,
)

_AGREEMENT_HEADERS = ["property", "n", "r² (Pearson²)", "Pearson r", "Spearman ρ",
                      "R² of y = x", "within 2x", "mean relative error", "note"]
_VIEWS_SHOWN = ("model", "model_matched", "reference_matched", "reference")


def _agreement_rows(entries: dict[str, AgreementEntry]) -> list[list[object]]:
    return [[key, e.n, e.pearson_r_squared, e.pearson_r, e.spearman_rho, e.identity_r2,
             e.within_2x, e.relative_error, e.reason or ""] for key, e in entries.items()]


def _calibration_markdown(calibration: dict) -> str:
    if "mean_mahalanobis_squared" not in calibration:
        return calibration.get("note", "not measured")
    return ("Coverage of the predicted acceleration Gaussian on clean held-out histories "
            f"({calibration['n_samples']} bead predictions; calibrated: 0.68, 0.95 and 3).\n\n"
            + table(["covariance", "inside 68 % ellipsoid", "inside 95 % ellipsoid",
                     "mean squared Mahalanobis distance"],
                    [[calibration["covariance"], calibration["coverage_68"],
                      calibration["coverage_95"], calibration["mean_mahalanobis_squared"]]]))


def _diffusivity_table(system: SystemEvaluation) -> str:
    rows = []
    for view in _VIEWS_SHOWN:
        for species, fit in system.properties[view]["diffusivity"].items():
            if fit is not None:
                rows.append([view, species, fit["value"], fit.get("stderr"), fit["unit"],
                             f"{fit['fit_window'][0]:.4g}–{fit['fit_window'][1]:.4g}",
                             fit["fit_r2"]])
    return table(["view", "species", "D", "standard error (particles)", "unit",
                  f"fit window [{system.span.unit}]", "fit R²"], rows)


def _first_shell_table(system: SystemEvaluation, length_unit: str) -> str:
    """First-peak position and first-shell coordination of every pair in every view, within
    the shell radius of the whole MD (empty without RDFs)."""
    rows = []
    for pair, radius in system.first_shells.items():
        centre, partner = pair.split("|", 1)
        rows += [[pair, view, radius, *(system.values[view].get(pair_key(prefix, centre, partner))
                                         for prefix in (RDF_PEAK, RDF_PEAK_HEIGHT, COORDINATION))]
                 for view in _VIEWS_SHOWN]
    if not rows:
        return ""
    return table(["centre|partner", "view", f"shell radius (MD) [{length_unit}]",
                  f"first peak [{length_unit}]", "first-peak g(r)", "coordination"], rows)


def report_markdown(summary: EvaluationSummary) -> str:
    """The Markdown report: stability and speed, agreement tables, calibration, figures, and
    one section per system."""
    agg = summary.aggregate
    stability, speed = agg.stability, agg.speed
    lines = [
        f"# Evaluation of `{summary.label}`", "",
        f"- rollout: `{summary.rollout}`", f"- reference MD: `{summary.reference}`",
        f"- systems: {agg.n_systems}; collision threshold "
        f"{summary.options['collision_threshold']} {summary.units['length']}", "",
        "## Stability and speed", "",
        table(["quantity", "value"], [
            ["finite fraction", stability.finite_fraction],
            ["collision-free fraction", stability.collision_free_fraction],
            ["stable fraction (finite and collision-free)", stability.stable_fraction],
            ["reference MD collision-free fraction",
             stability.reference_collision_free_fraction],
            [f"model simulated time per hour, median [{speed.unit}]", speed.model_median],
            [f"reference MD simulated time per hour, median [{speed.unit}]",
             speed.reference_median],
            ["speed-up, median", speed.speedup_median],
        ]), "",
        "## Cross-system agreement", "",
        "r² (Pearson²) is the squared Pearson correlation (the paper's r²); R² of y = x is the "
        "coefficient of determination of the identity line (1 only when the values agree).", "",
        "### Same simulated span (model vs reference MD at the rollout's frames)", "",
        table(_AGREEMENT_HEADERS, _agreement_rows(agg.agreement["matched"])), "",
        "### Whole trajectories", "",
        table(_AGREEMENT_HEADERS, _agreement_rows(agg.agreement["whole"])), "",
        "## Calibration of one-step predictions", "",
        _calibration_markdown(summary.calibration), "",
    ]
    lines += [image(path, key) + "\n" for key, path in agg.plots.items()]
    lines += ["## Systems", "", table(
        ["system", "frames (finite/matched)", "Rg model", "Rg MD", "τ_Rg model", "τ_Rg MD",
         "collisions", "first collision frame", f"speed model [{speed.unit}]",
         f"speed MD [{speed.unit}]"],
        [[name, f"{s.frames.finite}/{s.frames.matched}",
          s.values["model_matched"]["rg_mean"], s.values["reference_matched"]["rg_mean"],
          s.values["model_matched"]["rg_relaxation_integrated"],
          s.values["reference_matched"]["rg_relaxation_integrated"],
          s.stability["model"]["total_collisions"],
          s.stability["model"]["first_collision_frame"], s.speed.model,
          s.speed.reference_md] for name, s in summary.systems.items()],
    ), ""]
    for name, s in summary.systems.items():
        lines += [f"### {name}", "", _diffusivity_table(s), "",
                  _first_shell_table(s, summary.units["length"]), ""]
        lines += [image(path, f"{name} {kind}") + "\n" for kind, path in s.plots.items()]
    return "\n".join(lines)
