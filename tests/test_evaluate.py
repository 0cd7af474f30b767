"""evaluate() and compare() on a tiny synthetic reference MD dataset and rollouts of it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from eqcg.cg.mapping import CGSettings, compute_mapping
from eqcg.commands.cli import main
from eqcg.data.rollout_file import ROLLOUT_FILE, RolloutAttrs
from eqcg.data.store import load_dataset, write_dataset
from eqcg.data.trajectory import LAMMPS_WALL_SECONDS, SystemTrajectory, Topology
from eqcg.errors import DataError
from eqcg.evaluation import compare, evaluate
from eqcg.evaluation.beads import BeadTrajectory
from eqcg.evaluation.comparison import COMPARISON_FILES, comparison_row
from eqcg.evaluation.markdown import fmt
from eqcg.evaluation.properties import DEFAULT_OPTIONS, trajectory_properties, with_fit_windows
from eqcg.evaluation.report import REPORT_FILE
from eqcg.evaluation.results import (
    METRICS_FILE,
    AgreementEntry,
    Comparison,
    EvaluationSummary,
    SystemEvaluation,
)

SETTINGS = CGSettings(cg_level=3, whole_molecule_max_atoms=1, seed=0)
N_FRAMES, FRAME_INTERVAL = 40, 2.0  # ps
START, DILATION = 4, 2
ROLLOUT_FRAMES = (15, 18, 25)  # the last runs past the reference's end (frame 4 + 2 * 24 > 39)
COLLISION_SYSTEM, COLLISION_FRAME = 2, 20
WALL_SECONDS = 12.0
LAMMPS_WALL_SECONDS_SYS0 = 100.0  # stored by the generator for sys0 only
GROUPS = ("trained", "trained", "longer")  # the reference systems' length_group
TEMPERATURES, LI_EO_RATIO = (400.0, 450.0, 500.0), 0.05  # the reference systems' conditions


def _reference_system(index: int, rng: np.random.Generator) -> SystemTrajectory:
    """Three 6-atom chains (C/O) that breathe as an AR(1) process, plus two diffusing Li ions.

    The breathing memory and the Li step size differ between systems, so relaxation times and
    diffusivities vary across systems. Beads stay several Å apart: no collisions.
    """
    phi, li_step = (0.5, 0.7, 0.85)[index], (0.15, 0.25, 0.35)[index]
    rest = np.concatenate([np.c_[2.0 + 1.5 * np.arange(6), np.full(6, 3.0 + 5 * k),
                                 np.full(6, 4.0)] for k in range(3)])
    chain_of = np.repeat(np.arange(3), 6)
    centre = np.array([rest[chain_of == k].mean(axis=0) for k in range(3)])[chain_of]
    breathing = np.zeros((N_FRAMES, 3))
    for t in range(1, N_FRAMES):
        breathing[t] = phi * breathing[t - 1] + 0.05 * rng.normal(size=3)
    chains = centre + (1 + breathing[:, chain_of, None]) * (rest - centre)
    chains = chains + 0.05 * rng.normal(size=chains.shape)
    ions = np.array([[13.0, 5.5, 11.0], [13.0, 10.5, 11.0]]) + np.cumsum(
        li_step * rng.normal(size=(N_FRAMES, 2, 3)), axis=0)
    cell = np.diag([16.0, 16.0, 16.0])
    if index == 2:
        cell[1, 0], cell[2, 0], cell[2, 1] = 2.0, 1.0, -1.5
    types = np.r_[np.tile([0, 1], 9), 2, 2]
    bonds = np.concatenate([np.c_[6 * k + np.arange(5), 6 * k + np.arange(1, 6)]
                            for k in range(3)])
    return SystemTrajectory(
        name=f"sys{index}",
        topology=Topology(masses=np.array([12.011, 15.999, 6.94])[types], types=types,
                          type_names=["C", "O", "Li"], bonds=bonds,
                          bond_types=np.zeros(len(bonds), dtype=np.int64)),
        positions=np.concatenate([chains, ions], axis=1),
        box=np.tile(cell, (N_FRAMES, 1, 1)),
        time=FRAME_INTERVAL * np.arange(N_FRAMES),
        pbc=True,
        units="real",
    )


def _rollout_system(
    reference: SystemTrajectory, n_frames: int, noise: float, model: str,
    rng: np.random.Generator, collision_frame: int | None = None,
) -> SystemTrajectory:
    """A rollout in the format eqcg writes: the reference's beads at the rollout frames (plus
    ``noise``), continued by a random walk past the reference's end."""
    mapping = compute_mapping(reference.topology, SETTINGS)
    beads = mapping.bead_positions(np.asarray(reference.positions), reference.topology.masses)
    frames = START + DILATION * np.arange(n_frames)
    inside = frames[frames < N_FRAMES]
    positions = beads[inside]
    beyond = n_frames - inside.size
    if beyond:
        walk = np.cumsum(0.1 * rng.normal(size=(beyond, mapping.n_beads, 3)), axis=0)
        positions = np.concatenate([positions, positions[-1] + walk])
    positions = positions + noise * rng.normal(size=positions.shape)
    if collision_frame is not None:
        positions[collision_frame, 1] = positions[collision_frame, 0] + [0.3, 0.0, 0.0]
    return SystemTrajectory(
        name=reference.name,
        topology=Topology(masses=mapping.bead_masses, types=mapping.bead_species,
                          type_names=mapping.species_names, bonds=mapping.cg_bonds,
                          bond_types=np.zeros(len(mapping.cg_bonds), dtype=np.int64)),
        positions=positions,
        box=np.tile(reference.box[START], (n_frames, 1, 1)),
        time=reference.time[START] + DILATION * FRAME_INTERVAL * np.arange(n_frames),
        pbc=True,
        units="real",
        source="eqcg rollout",
        attrs=RolloutAttrs(reference.name, SETTINGS.cg_level, SETTINGS.whole_molecule_max_atoms,
                           SETTINGS.seed, START, DILATION, WALL_SECONDS, model).to_attrs(),
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Reference data, an exact rollout ("equivariant", 3 systems) and a noisy one ("baseline",
    2 systems, evaluated without figures to save time), and their comparison (allowed over
    different systems)."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    references = [_reference_system(i, rng) for i in range(3)]
    references[0].attrs[LAMMPS_WALL_SECONDS] = LAMMPS_WALL_SECONDS_SYS0
    for reference, group, temperature in zip(references, GROUPS, TEMPERATURES, strict=True):
        reference.attrs |= {"length_group": group, "temperature_K": temperature,
                            "li_eo_ratio": LI_EO_RATIO}
    write_dataset(root / "reference", references)
    exact = [_rollout_system(ref, n, 0.0, "equivariant", rng,
                             COLLISION_FRAME if i == COLLISION_SYSTEM else None)
             for i, (ref, n) in enumerate(zip(references, ROLLOUT_FRAMES, strict=True))]
    write_dataset(root / "exact" / ROLLOUT_FILE, exact)
    noisy = [_rollout_system(ref, 15, 0.3, "baseline", rng) for ref in references[:2]]
    write_dataset(root / "noisy" / ROLLOUT_FILE, noisy)
    metrics_exact = evaluate(root / "exact", root / "reference", root / "report_exact",
                             group_by="length_group")
    metrics_noisy = evaluate(root / "noisy", root / "reference" / "dataset.h5",
                             root / "report_noisy", draw_plots=False)
    comparison = compare([root / "report_exact", root / "report_noisy"], root / "comparison",
                         allow_mixed=True)
    return root, metrics_exact, metrics_noisy, comparison


def _assert_png(path: Path) -> None:
    assert path.stat().st_size > 0
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.std() > 0


def test_evaluate_writes_metrics_report_and_plots(evaluated):
    root, metrics, _, _ = evaluated
    out = root / "report_exact"
    assert json.loads((out / METRICS_FILE).read_text()) == metrics
    report = (out / REPORT_FILE).read_text()
    plots = [path for s in metrics["systems"].values() for path in s["plots"].values()]
    plots += list(metrics["aggregate"]["plots"].values())
    assert set(metrics["systems"]["sys0"]["plots"]) == {"rg", "msd", "structure", "dynamics"}
    assert set(metrics["aggregate"]["plots"]) == {"agreement"}
    assert "| centre\\|partner | view |" in report  # a | in a cell is escaped
    assert "### Model vs MD beside the MD ceiling" in report
    assert "| Li\\|C+O | model |" in report  # the first-shell rows of each periodic system
    for path in plots:
        assert f"]({path})" in report
        _assert_png(out / path)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(plots)


def test_an_exact_rollout_agrees_with_the_reference_over_the_matched_span(evaluated):
    _, metrics, _, _ = evaluated
    assert metrics["label"] == "exact" and metrics["model"] == "equivariant"
    for name, n_frames in zip(("sys0", "sys1", "sys2"), ROLLOUT_FRAMES, strict=True):
        system = metrics["systems"][name]
        assert system["frames"]["rollout"] == n_frames
        assert system["frames"]["matched"] == min(n_frames, (N_FRAMES - 1 - START) // DILATION + 1)
        assert system["frames"]["reference_frames_per_rollout_frame"] == pytest.approx(DILATION)
        values = system["values"]
        for key, reference_value in values["reference_matched"].items():
            model_value = values["model_matched"][key]
            if reference_value is None:  # e.g. a coordination number without a first shell
                assert model_value is None, key
            else:
                assert model_value == pytest.approx(reference_value, rel=1e-9), key
        assert {"rdf_peak[Li|C+O]", "rdf_peak_height[Li|C+O]", "coordination[Li|C+O]"} <= set(
            values["model"])
        assert set(system["first_shells"]) == {"Li|C+O"}  # Li (fewer beads) centres the pair
        assert values["reference"]["rg_mean"] != values["reference_matched"]["rg_mean"]
        d_li = system["properties"]["model_matched"]["diffusivity"]["Li"]
        assert d_li["unit"] == "cm^2/s"
        assert d_li["value"] == pytest.approx(1e-4 * d_li["value_native"])
        assert 0 < d_li["stderr"] < 10 * d_li["value"]  # two Li ions: a spread over particles
        assert len(d_li["fit_window"]) == 2 and d_li["fit_window"][0] < d_li["fit_window"][1]
        # the whole rollout's MSD is fitted over the whole MD's lag window (the same time scale)
        md_window = system["properties"]["reference"]["diffusivity"]["Li"]["fit_window"]
        model_window = system["properties"]["model"]["diffusivity"]["Li"]["fit_window"]
        assert md_window[0] <= model_window[0] < model_window[1] <= md_window[1]
        assert md_window[1] - model_window[1] < DILATION * FRAME_INTERVAL  # one rollout lag
        assert set(system["properties"]["reference"]["rdf"]["peaks"]) == {
            "C+O|C+O", "C+O|Li", "Li|Li"}
        assert system["distribution_distance"]["rg_wasserstein"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["systems"]["sys2"]["reference_covers_rollout"] is False
    matched = metrics["aggregate"]["agreement"]["matched"]
    for key in ("rg_mean", "rg_relaxation_integrated", "rg_relaxation_exponential",
                "end_to_end_relaxation_integrated", "diffusivity[Li]", "diffusivity[C+O]",
                "diffusivity[chain COM]"):
        assert matched[key]["n"] == 3
        assert matched[key]["pearson_r_squared"] == pytest.approx(1.0), key
        assert matched[key]["identity_r2"] == pytest.approx(1.0), key
        assert matched[key]["spearman_rho"] == pytest.approx(1.0), key
        # an exact rollout: every system within any factor, and every resample agrees exactly
        assert matched[key]["within_1_5x"] == matched[key]["within_2x"] == 1.0
        for name in ("pearson_r_squared", "identity_r2", "within_1_5x"):
            assert matched[key]["intervals"][name] == pytest.approx([1.0, 1.0]), (key, name)
    assert metrics["aggregate"]["agreement"]["whole"]["rg_mean"]["n"] == 3


def test_stability_and_speed(evaluated):
    _, metrics, _, _ = evaluated
    stability = metrics["aggregate"]["stability"]
    assert stability["finite_fraction"] == 1.0
    assert stability["collision_free_fraction"] == pytest.approx(2 / 3)
    assert stability["stable_fraction"] == pytest.approx(2 / 3)
    assert stability["reference_collision_free_fraction"] == 1.0
    assert stability["first_collision_frame"] == {"sys0": None, "sys1": None,
                                                  "sys2": COLLISION_FRAME}
    assert metrics["systems"]["sys2"]["stability"]["model"]["total_collisions"] == 1
    speed = metrics["systems"]["sys0"]["speed"]
    model_span = DILATION * FRAME_INTERVAL * (ROLLOUT_FRAMES[0] - 1)  # ps
    reference_span = FRAME_INTERVAL * (N_FRAMES - 1)
    assert speed["unit"] == "ns/h"
    assert speed["model"] == pytest.approx(model_span / WALL_SECONDS * 3600 / 1000)
    assert speed["reference_wall_seconds"] == LAMMPS_WALL_SECONDS_SYS0
    assert speed["reference_md"] == pytest.approx(
        reference_span / LAMMPS_WALL_SECONDS_SYS0 * 3600 / 1000)
    assert speed["speedup"] == pytest.approx(speed["model"] / speed["reference_md"])
    assert "reference_note" not in speed
    assert metrics["systems"]["sys1"]["speed"]["reference_md"] is None
    assert "stores no LAMMPS wall time" in metrics["systems"]["sys1"]["speed"]["reference_note"]


def test_agreement_needs_three_systems_and_figures_can_be_skipped(evaluated):
    root, _, metrics, _ = evaluated
    assert metrics["aggregate"]["n_systems"] == 2
    entry = metrics["aggregate"]["agreement"]["matched"]["rg_mean"]
    assert entry["n"] == 2 and entry["pearson_r_squared"] is None
    assert "at least 3" in entry["reason"]
    assert metrics["aggregate"]["plots"] == {} and metrics["systems"]["sys0"]["plots"] == {}
    assert not list((root / "report_noisy").rglob("*.png"))
    assert (root / "report_noisy" / REPORT_FILE).read_text().startswith("# Evaluation of")
    model = metrics["systems"]["sys0"]["values"]["model_matched"]["rg_mean"]
    reference = metrics["systems"]["sys0"]["values"]["reference_matched"]["rg_mean"]
    assert model != pytest.approx(reference, rel=1e-6)


def test_compare_writes_table_and_bar_charts(evaluated):
    root, _, _, comparison = evaluated
    out = root / "comparison"
    md_file, json_file, csv_file = (out / name for name in COMPARISON_FILES)
    assert json.loads(json_file.read_text()) == comparison
    rows = {row["label"]: row for row in comparison["rows"]}
    assert set(rows) == {"exact", "exact [longer]", "exact [trained]", "noisy"}
    assert rows["exact"]["rg_r2"] == pytest.approx(1.0)
    assert rows["noisy"]["rg_r2"] is None
    assert rows["exact"]["collision_free_fraction"] == pytest.approx(2 / 3)
    assert rows["exact"]["nll"] is None
    with open(csv_file) as f:
        assert [row["label"] for row in csv.DictReader(f)] == list(rows)
    markdown = md_file.read_text()
    assert "exact" in markdown and "noisy" in markdown
    whole = json.loads((root / "report_exact" / METRICS_FILE).read_text())[
        "aggregate"]["agreement"]["whole"]
    by_species = rows["exact"]["diffusivity_by_species"]
    assert set(by_species) == {"C+O", "Li", "chain COM"}
    assert by_species["Li"] == whole["diffusivity[Li]"]
    rho, (low, _) = by_species["Li"]["spearman_rho"], by_species["Li"]["intervals"]["spearman_rho"]
    assert f"| exact | Li | 3 | {fmt(rho)} [{fmt(low)}, " in markdown
    assert set(comparison["plots"]) == {"comparison"}
    for path in comparison["plots"].values():
        assert f"]({path})" in markdown
        _assert_png(out / path)


def test_compare_refuses_reports_over_different_systems_unless_allowed(evaluated, tmp_path,
                                                                       capsys):
    root = evaluated[0]
    exact, noisy = root / "report_exact", root / "report_noisy"
    out = tmp_path / "comparison"
    for first, second, counts in ((exact, noisy, "3 and 2"), (noisy, exact, "2 and 3")):
        assert main(["compare", str(first), str(second), "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"eqcg compare: error: {first} and {second} evaluate different systems ({counts}; "
            f"only in {exact}: sys2): one table would put numbers over different systems side "
            "by side; compare reports of the same systems, or pass --allow-mixed")
        assert not out.exists()
    assert main(["compare", str(exact), str(noisy), "--out", str(out), "--allow-mixed"]) == 0
    assert (out / "comparison.json").is_file()


def test_metrics_and_comparison_files_round_trip_through_the_typed_results(evaluated):
    root = evaluated[0]
    for report in ("report_exact", "report_noisy"):
        summary = EvaluationSummary.read(root / report)
        assert isinstance(summary.systems["sys0"], SystemEvaluation)
        assert isinstance(summary.aggregate.agreement["matched"]["rg_mean"], AgreementEntry)
        assert summary.systems["sys0"].speed.reference_wall_seconds == LAMMPS_WALL_SECONDS_SYS0
        text = (root / report / METRICS_FILE).read_text()
        assert json.dumps(summary.to_dict(), indent=2) == text
    text = (root / "comparison" / COMPARISON_FILES[1]).read_text()
    comparison = Comparison.from_dict(json.loads(text))
    assert json.dumps(comparison.to_dict(), indent=2) == text
    assert [row.label for row in comparison.rows] == [
        "exact", "exact [longer]", "exact [trained]", "noisy"]


def test_compare_shows_li_diffusivity_else_chain_com_else_the_first_species(evaluated):
    root = evaluated[0]
    summary = EvaluationSummary.read(root / "report_exact")
    matched = summary.aggregate.agreement["whole"]  # D from each trajectory's whole span
    row = comparison_row("exact", root, summary)
    assert row.diffusivity_spearman == matched["diffusivity[Li]"].spearman_rho
    del matched["diffusivity[Li]"]
    matched["diffusivity[chain COM]"].spearman_rho = -0.25
    assert comparison_row("exact", root, summary).diffusivity_spearman == -0.25
    del matched["diffusivity[chain COM]"]
    matched["diffusivity[C+O]"].spearman_rho = -0.5
    assert comparison_row("exact", root, summary).diffusivity_spearman == -0.5


def test_compare_shows_the_first_shell_of_li_with_its_main_partner_in_md(evaluated):
    root = evaluated[0]
    summary = EvaluationSummary.read(root / "report_exact")
    aggregate = summary.aggregate
    entry = aggregate.agreement["whole"]["coordination[Li|C+O]"]
    assert comparison_row("exact", root, summary).coordination_error == entry.relative_error
    for centre, partner, mean, error in (("Li", "TFSI", 0.5, 0.4), ("Li", "PEO", 4.0, 0.1),
                                         ("A", "B", 9.0, 0.7)):
        key = f"coordination[{centre}|{partner}]"
        aggregate.agreement["whole"][key] = AgreementEntry(
            3, None, None, None, None, None, None, relative_error=error)
        aggregate.mean_over_systems[key] = {"reference": mean}
    aggregate.mean_over_systems["coordination[Li|C+O]"] = {"reference": None}
    row = comparison_row("exact", root, summary)
    assert row.coordination_error == 0.1  # Li before A; PEO fills Li's first shell
    assert row.rdf_peak_error is row.rdf_peak_height_error is None  # no peak entries for it


def test_refitting_diffusivities_matches_a_full_recomputation():
    rng = np.random.default_rng(2)
    n_frames, n_beads = 60, 8
    traj = BeadTrajectory(
        name="walk", positions=np.cumsum(rng.normal(size=(n_frames, n_beads, 3)), axis=0),
        time=0.5 * np.arange(n_frames), box=np.tile(np.eye(3) * 20.0, (n_frames, 1, 1)),
        pbc=True, units="real", masses=np.ones(n_beads), species=np.array([0] * 6 + [1] * 2),
        species_names=["C+O", "Li"], bonds=np.array([[0, 1], [1, 2], [3, 4], [4, 5]]),
        molecules=np.array([0, 0, 0, 1, 1, 1, 2, 3]))
    windows = {"Li": (3.0, 9.0), "C+O": (1.0, 4.0)}
    full = trajectory_properties(traj, fit_windows=windows)
    refit = with_fit_windows(traj, trajectory_properties(traj), DEFAULT_OPTIONS, windows)
    assert refit.diffusivity == full.diffusivity and refit.missing == full.missing
    assert refit.diffusivity["Li"].fit_window == (3.0, 9.0)
    np.testing.assert_array_equal(refit.msd["Li"], full.msd["Li"])


def test_rollout_without_its_attributes_is_rejected(evaluated, tmp_path):
    root = evaluated[0]
    with load_dataset(root / "exact" / ROLLOUT_FILE) as rollout:
        system = rollout["sys0"]
        broken = SystemTrajectory(
            name=system.name, topology=system.topology, positions=system.positions[()],
            box=system.box, time=system.time, pbc=system.pbc, units=system.units,
            attrs={k: v for k, v in system.attrs.items() if k != "start_frame"})
        write_dataset(tmp_path / "broken" / ROLLOUT_FILE, [broken])
    with pytest.raises(DataError, match="start_frame"):
        evaluate(tmp_path / "broken", root / "reference", tmp_path / "out")



def test_systems_are_also_summarised_per_group_and_compared_per_group(evaluated):
    root, metrics, _, comparison = evaluated
    assert metrics["group_by"] == "length_group"
    groups = metrics["groups"]
    assert {g: groups[g]["n_systems"] for g in groups} == {"longer": 1, "trained": 2}
    # sys2 (the longer one) collides; the two trained systems do not
    assert groups["longer"]["stability"]["collision_free_fraction"] == 0.0
    assert groups["trained"]["stability"]["collision_free_fraction"] == 1.0
    assert [row["label"] for row in comparison["rows"]] == [
        "exact", "exact [longer]", "exact [trained]", "noisy"]
    assert [row["n_systems"] for row in comparison["rows"]] == [3, 1, 2, 2]
    text = (root / "comparison" / COMPARISON_FILES[0]).read_text()
    assert "| exact [trained] | 2 |" in text
    with pytest.raises(DataError, match="no attribute 'solvent'"):
        evaluate(root / "exact", root / "reference", root / "report_solvent",
                 group_by="solvent", draw_plots=False, calibrate=False)


def test_collisions_per_1000_steps_and_means_over_systems(evaluated):
    _, metrics, _, comparison = evaluated
    means = metrics["aggregate"]["system_means"]
    # one colliding pair in one frame of sys2, whose finite rollout spans 24 learned steps
    # (frames every DILATION reference frames = one learned step); none in the others
    expected = [0.0, 0.0, 1000.0 / (ROLLOUT_FRAMES[COLLISION_SYSTEM] - 1)]
    assert metrics["systems"]["sys2"]["stability"]["model"]["total_collisions"] == 1
    assert means["collisions_per_1000_steps"]["mean"] == pytest.approx(np.mean(expected))
    low, high = means["collisions_per_1000_steps"]["interval"]
    assert 0.0 == low < np.mean(expected) < high == pytest.approx(expected[2])
    assert means["collision_free"]["mean"] == pytest.approx(2 / 3)
    assert means["bond_length_w1"]["mean"] == pytest.approx(0.0, abs=1e-9)
    row = comparison["rows"][0]
    assert row["collisions_per_1000_steps"] == pytest.approx(np.mean(expected))
    assert row["intervals"]["collisions_per_1000_steps"] == [low, high]
    assert row["rg_r2"] == pytest.approx(1.0) and row["intervals"]["rg_r2"] == [1.0, 1.0]


def test_li_diffusivity_equals_an_independent_msd_fit(evaluated):
    """Each reference system's Li+ D in metrics.json against a direct numpy computation on the
    same frames: drift of the whole system removed, MSD averaged over every time origin by
    explicit differences, a straight line over lags 10-50 % of the span, D = slope / 6, and
    its standard error from each ion's own line."""
    metrics = json.loads((evaluated[0] / "report_exact" / METRICS_FILE).read_text())
    with load_dataset(evaluated[0] / "reference") as reference:
        for system in reference:
            positions = np.asarray(system.positions[()], dtype=np.float64)
            masses = system.topology.masses
            com = (masses[None, :, None] * positions).sum(1) / masses.sum()
            positions = positions - (com - com[0])[:, None, :]
            li = positions[:, system.topology.type_names.index("Li") == system.topology.types]
            n = li.shape[0]
            msd = np.array([[((li[k:, i] - li[: n - k, i]) ** 2).sum(-1).mean()
                             for i in range(li.shape[1])] for k in range(n)])
            lags = system.time - system.time[0]
            inside = (lags >= 0.1 * lags[-1] - 1e-9) & (lags <= 0.5 * lags[-1] + 1e-9)
            slope = np.polyfit(lags[inside], msd[inside].mean(1), 1)[0]
            each = np.polyfit(lags[inside], msd[inside], 1)[0] / 6
            reported = metrics["systems"][system.name]["properties"]["reference"][
                "diffusivity"]["Li"]
            assert reported["value_native"] == pytest.approx(slope / 6, rel=1e-9)
            assert reported["value"] == pytest.approx(slope / 6 * 1e-4, rel=1e-9)  # cm²/s
            assert reported["stderr"] == pytest.approx(
                1e-4 * each.std(ddof=1) / np.sqrt(each.size), rel=1e-9)


def test_conditions_and_the_temperature_trend_of_li_d(evaluated):
    """All three reference systems share one salt at rising temperatures: three pairs."""
    root, metrics, _, comparison = evaluated
    systems = [metrics["systems"][f"sys{i}"] for i in range(3)]
    assert [s["conditions"] for s in systems] == [
        {"temperature": t, "li_eo_ratio": LI_EO_RATIO} for t in TEMPERATURES]
    model, md = (np.array([s["values"][view]["diffusivity[Li]"] for s in systems])
                 for view in ("model", "reference"))
    pairs = [(0, 1), (0, 2), (1, 2)]  # (colder, warmer)
    assert metrics["aggregate"]["temperature_trend"]["diffusivity[Li]"] == pytest.approx({
        "pairs": 3,
        "rising_model": np.mean([model[j] > model[i] for i, j in pairs]),
        "rising_md": np.mean([md[j] > md[i] for i, j in pairs]),
        "same_order": np.mean([(model[j] > model[i]) == (md[j] > md[i]) for i, j in pairs])})
    trend = metrics["aggregate"]["temperature_trend"]["diffusivity[Li]"]
    row, longer = comparison["rows"][0], comparison["rows"][1]  # exact, exact [longer]
    assert (row["diffusivity_t_rising_model"], row["diffusivity_t_rising_md"],
            row["diffusivity_t_same_order"]) == (
        trend["rising_model"], trend["rising_md"], trend["same_order"])
    assert row["trend_pairs"] == 3
    assert longer["diffusivity_t_same_order"] is None  # one system: no pairs
    markdown = (root / "comparison" / COMPARISON_FILES[0]).read_text()
    assert f"{fmt(trend['same_order'])} (3 pairs)" in markdown
    assert "### Temperature trend at fixed salt" in (
        root / "report_exact" / REPORT_FILE).read_text()
