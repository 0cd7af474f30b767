"""``report.md`` of an evaluation, rendered from its :class:`EvaluationSummary`."""

from __future__ import annotations

from eqcg.evaluation.markdown import image, table
from eqcg.evaluation.results import (
    COORDINATION,
    EXACT,
    EXACT_COM,
    RDF_PEAK,
    RDF_PEAK_HEIGHT,
    Aggregate,
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


def _ceiling_table(agg: Aggregate) -> str:
    """Model-vs-MD agreement (whole trajectories) beside the MD's half-vs-half agreement of
    every dynamic property."""
    whole, halves = agg.agreement["whole"], agg.agreement.get("md_halves", {})
    rows = []
    for key, ceiling in halves.items():
        model = whole.get(key)
        rows.append([key, *(getattr(entry, name) if entry else None for entry in (model, ceiling)
                            for name in ("n", "spearman_rho", "within_1_5x",
                                         "pearson_r_squared"))])
    return table(["property", "n", "Spearman ρ", "within 1.5x", "r² (Pearson²)",
                  "MD halves n", "MD halves Spearman ρ", "MD halves within 1.5x",
                  "MD halves r² (Pearson²)"], rows)


def _exact_table(agg: Aggregate) -> str:
    """The chain centre-of-mass D of the whole MD and the whole rollout against the exact value
    (empty without one)."""
    medians = agg.medians.get(f"{EXACT_COM}/{EXACT}", {})
    rows = []
    for label, pair, view in (("MD", "exact_reference", "reference"),
                              ("model", "exact_model", "model")):
        entry = agg.agreement.get(pair, {}).get(EXACT_COM)
        if entry is not None:
            rows.append([label, entry.n, medians.get(view), entry.within_1_5x, entry.within_2x,
                         entry.spearman_rho])
    if not rows:
        return ""
    return ("Exact D = kT damp / M of a lone Langevin chain (no hydrodynamics).\n\n"
            + table(["trajectory", "n", "median D / D_exact", "within 1.5x of exact",
                     "within 2x of exact", "Spearman ρ with exact"], rows))


def _trend_table(agg: Aggregate) -> str:
    """How each diffusivity follows temperature at fixed salt in the whole rollout and the whole
    MD (empty without diffusivities)."""
    if not agg.temperature_trend:
        return ""
    return ("Pairs of systems with the same Li:EO ratio (systems without one count as one "
            "salt) and different temperatures, D finite in both; fractions of them.\n\n"
            + table(["property", "same-salt pairs", "model D rises with T",
                     "MD D rises with T", "model orders as MD"],
                    [[key, e.pairs, e.rising_model, e.rising_md, e.same_order]
                     for key, e in agg.temperature_trend.items()]))


def _medians_table(agg: Aggregate) -> str:
    """Medians over systems of the one-step statistics (whole trajectories)."""
    m = agg.medians
    rows = [[name, m.get(key, {}).get("model"), m.get(key, {}).get("reference")]
            for name, key in (("collective ratio", "collective_ratio"),
                              ("step correlation ρ̄", "step_correlation"))]
    rows += [[f"{name} model / MD", m.get(key, {}).get("model/reference"), None]
             for name, key in (("COM one-step MSD", "com_step_ratio"),
                               ("bead one-step MSD", "bead_step_ratio"))]
    return table(["median over systems", "model", "MD"], rows)


def _system_dynamics_table(summary: EvaluationSummary) -> str:
    """One row per system: the one-step statistics of the whole rollout and the whole MD, and
    the chain centre-of-mass D against its exact value."""
    rows = []
    for name, s in summary.systems.items():
        model, md = s.values["model"], s.values["reference"]
        rows.append([name, s.dynamics.get("com_step_ratio"), model.get("collective_ratio"),
                     md.get("collective_ratio"), model.get("step_correlation"),
                     md.get("step_correlation"), model.get(EXACT_COM), md.get(EXACT_COM),
                     s.values.get(EXACT, {}).get(EXACT_COM)])
    return table(["system", "COM step MSD model/MD", "collective ratio model",
                  "collective ratio MD", "ρ̄ model", "ρ̄ MD", "D chain COM model",
                  "D chain COM MD", "D exact"], rows)


def _dynamics_markdown(summary: EvaluationSummary) -> list[str]:
    """The dynamics section: the MD ceiling, exact values, the temperature trend and one-step
    statistics."""
    agg = summary.aggregate
    return [
        "## Dynamics", "",
        "A step is one rollout frame interval, in the MD the same time from every frame. "
        "Collective ratio: n_beads var(COM step) / var(bead step) per multi-bead molecule (1: "
        "independent beads); ρ̄: mean correlation of the steps of two beads of one molecule. "
        "MD halves: the first half of each reference trajectory against its second (each "
        "fitted on its own): what the reference can resolve.", "",
        "### Model vs MD beside the MD ceiling (whole trajectories)", "",
        _ceiling_table(agg), "", _exact_table(agg), "",
        "### Temperature trend at fixed salt (whole trajectories)", "", _trend_table(agg), "",
        "### One-step statistics", "", _medians_table(agg), "",
        _system_dynamics_table(summary), "",
    ]


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


def _blown_up_lines(blown_up: dict[str, int]) -> list[str]:
    """A line naming the systems that blew up (and stopped the rollout), if any."""
    if not blown_up:
        return []
    named = ", ".join(f"`{name}` at step {step}" for name, step in blown_up.items())
    return [f"**The rollout blew up**: {named}; it stopped there, so every system's frames end "
            "at that step (the fractions above count a blown-up system as not finite).", ""]


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
            ["finite fraction (and not blown up)", stability.finite_fraction],
            ["collision-free fraction", stability.collision_free_fraction],
            ["stable fraction (finite, not blown up, collision-free)",
             stability.stable_fraction],
            ["reference MD collision-free fraction",
             stability.reference_collision_free_fraction],
            [f"model simulated time per hour, median [{speed.unit}]", speed.model_median],
            [f"reference MD simulated time per hour, median [{speed.unit}]",
             speed.reference_median],
            ["speed-up, median", speed.speedup_median],
        ]), "",
        *_blown_up_lines(stability.blown_up),
        "## Cross-system agreement", "",
        "r² (Pearson²) is the squared Pearson correlation (the paper's r²); R² of y = x is the "
        "coefficient of determination of the identity line (1 only when the values agree).", "",
        "### Same simulated span (model vs reference MD at the rollout's frames)", "",
        table(_AGREEMENT_HEADERS, _agreement_rows(agg.agreement["matched"])), "",
        "### Whole trajectories", "",
        table(_AGREEMENT_HEADERS, _agreement_rows(agg.agreement["whole"])), "",
        *_dynamics_markdown(summary),
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
