"""One-step dynamics diagnostics, the exact chain diffusivity and the MD split-half ceiling,
each against an independent numpy computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats

from eqcg.cg.mapping import CGSettings, compute_mapping
from eqcg.data.rollout_file import ROLLOUT_FILE, RolloutAttrs
from eqcg.data.store import load_dataset, write_dataset
from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.evaluation import compare, evaluate
from eqcg.evaluation.properties import PropertyOptions, com_fit_window, lag_ratio
from eqcg.metrics.dynamics import (
    bond_separation,
    correlation_profile,
    exact_com_diffusivity,
    langevin_com_diffusivity,
    molecule_steps,
    step_correlations,
    step_displacements,
    velocity_autocorrelation,
)


def _correlated_walk(rng, n_steps, sizes, a, b):
    """Positions ``(n_steps + 1, sum(sizes), 3)`` whose steps are ``a common + b own`` per
    molecule (``common`` shared by the molecule's particles), and the molecule index of each."""
    steps = []
    for size, a_m, b_m in zip(sizes, a, b, strict=True):
        common = rng.normal(size=(n_steps, 1, 3))
        steps.append(a_m * common + b_m * rng.normal(size=(n_steps, size, 3)))
    steps = np.concatenate(steps, axis=1)
    positions = np.concatenate([np.zeros((1, *steps.shape[1:])), np.cumsum(steps, axis=0)])
    return positions, np.repeat(np.arange(len(sizes)), sizes)


def test_correlated_steps_give_the_expected_rho_and_collective_ratio():
    rng = np.random.default_rng(0)
    sizes, a, b = (6, 4, 1), (0.6, 0.0, 0.0), (0.8, 1.0, 1.0)
    positions, molecules = _correlated_walk(rng, 20000, sizes, a, b)
    masses = np.ones(molecules.shape[0])
    result = molecule_steps(step_displacements(positions), masses, molecules)

    steps = np.diff(positions, axis=0)
    np.testing.assert_array_equal(result.molecules, [0, 1])  # the lone particle is left out
    np.testing.assert_array_equal(result.n_particles, [6, 4])
    for k, members in enumerate((np.arange(6), np.arange(6, 10))):
        msd = [np.mean(np.sum(steps[:, i] ** 2, axis=-1)) for i in members]
        pairs = [np.mean(np.sum(steps[:, i] * steps[:, j], axis=-1)) / np.sqrt(msd[p] * msd[q])
                 for (p, i), (q, j) in itertools.permutations(enumerate(members), 2)]
        com = steps[:, members].mean(axis=1)
        com_msd = np.mean(np.sum(com**2, axis=-1))
        assert result.bead_msd[k] == pytest.approx(np.mean(msd), rel=1e-12)
        assert result.com_msd[k] == pytest.approx(com_msd, rel=1e-12)
        assert result.correlation[k] == pytest.approx(np.mean(pairs), rel=1e-10, abs=1e-12)
        assert result.collective_ratio[k] == pytest.approx(len(members) * com_msd / np.mean(msd))
    # the model: rho = a^2 / (a^2 + b^2), collective ratio 1 + (n - 1) rho
    rho = 0.36
    assert result.correlation[0] == pytest.approx(rho, abs=0.02)
    assert result.collective_ratio[0] == pytest.approx(1 + 5 * rho, abs=0.08)
    assert result.correlation[1] == pytest.approx(0.0, abs=0.02)
    assert result.collective_ratio[1] == pytest.approx(1.0, abs=0.05)
    assert result.bead_msd[1] == pytest.approx(3.0, rel=0.02)  # 3 b^2 per step


def test_step_statistics_over_several_frames_and_mass_weights():
    rng = np.random.default_rng(1)
    positions = np.cumsum(rng.normal(size=(500, 3, 3)), axis=0)
    masses = np.array([1.0, 2.0, 5.0])
    stride = 3
    result = molecule_steps(step_displacements(positions, stride), masses, np.zeros(3, int))
    steps = positions[stride:] - positions[:-stride]
    com = (steps * masses[None, :, None]).sum(axis=1) / masses.sum()
    assert result.com_msd[0] == pytest.approx(np.mean(np.sum(com**2, axis=-1)), rel=1e-12)
    assert result.bead_msd[0] == pytest.approx(np.mean(np.sum(steps**2, axis=-1)), rel=1e-12)
    assert result.bead_msd[0] == pytest.approx(3 * stride, rel=0.1)  # a random walk


def test_velocity_autocorrelation_matches_a_direct_average_and_an_ar1_process():
    rng = np.random.default_rng(2)
    phi, n = 0.6, 4000
    velocity = np.zeros((n, 5, 3))
    for t in range(1, n):
        velocity[t] = phi * velocity[t - 1] + rng.normal(size=(5, 3))
    positions = np.concatenate([np.zeros((1, 5, 3)), np.cumsum(velocity, axis=0)])
    acf = velocity_autocorrelation(positions, stride=1, max_lag=4)
    np.testing.assert_allclose(acf, phi ** np.arange(5), atol=0.03)
    stride = 2
    acf = velocity_autocorrelation(positions[:300], stride=stride, max_lag=3)
    v = positions[stride:300] - positions[:300 - stride]
    direct = [np.mean(np.sum(v[: v.shape[0] - m * stride] * v[m * stride:], axis=-1))
              for m in range(4)]
    np.testing.assert_allclose(acf, np.array(direct) / direct[0], rtol=1e-10)


def test_step_correlations_are_normalised_pair_averages():
    rng = np.random.default_rng(3)
    steps = rng.normal(size=(50, 4, 3))
    corr = step_correlations(steps)
    for i, j in itertools.product(range(4), repeat=2):
        dot = np.mean(np.sum(steps[:, i] * steps[:, j], axis=-1))
        norm = np.sqrt(np.mean(np.sum(steps[:, i] ** 2, -1)) * np.mean(np.sum(steps[:, j] ** 2,
                                                                              -1)))
        assert corr[i, j] == pytest.approx(dot / norm, rel=1e-12)


def test_bond_separation_and_the_correlation_profile_along_the_chain():
    bonds = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [5, 6], [6, 7]])
    separation = bond_separation(bonds, 9)
    expected = np.full((9, 9), np.inf)
    for start, size in ((0, 5), (5, 3), (8, 1)):
        idx = np.arange(start, start + size)
        expected[np.ix_(idx, idx)] = np.abs(idx[:, None] - idx[None, :])
    np.testing.assert_array_equal(separation, expected)
    corr = np.random.default_rng(4).uniform(-1, 1, size=(9, 9))
    corr = (corr + corr.T) / 2
    seps, profile = correlation_profile(corr, separation)
    np.testing.assert_array_equal(seps, [1, 2, 3, 4])
    for s, value in zip(seps, profile, strict=True):
        assert value == pytest.approx(corr[expected == s].mean())


def test_exact_com_diffusivity_from_the_langevin_attributes():
    masses, one = np.ones(20), np.zeros(20, dtype=int)
    attrs = {"temperature": 1.5, "damp": 2.0}
    assert exact_com_diffusivity(attrs, "lj", masses, one) == pytest.approx(1.5 * 2.0 / 20)
    assert langevin_com_diffusivity(1.0, 1.0, 40.0) == pytest.approx(0.025)
    assert exact_com_diffusivity(attrs, "real", masses, one) is None
    assert exact_com_diffusivity({"temperature": 1.0}, "lj", masses, one) is None
    assert exact_com_diffusivity(attrs, "lj", masses, np.r_[one[:10], one[10:] + 1]) is None


def test_com_fit_window_in_steps_is_capped_by_the_fraction_window():
    options = PropertyOptions(fit_window_fraction=(0.1, 0.5), com_fit_window_steps=(10, 200))
    assert com_fit_window(10_000.0, 5.0, options) == (50.0, 1000.0)
    assert com_fit_window(200.0, 5.0, options) == (20.0, 100.0)  # short: the fraction window
    assert com_fit_window(800.0, 5.0, options) == (50.0, 400.0)
    assert com_fit_window(1.0, 1.0, PropertyOptions(com_fit_window_steps=None)) is None


def test_lag_ratio_on_the_lags_both_curves_have():
    lag_model, model = 2.0 * np.arange(6), np.arange(6, dtype=float)
    lag_md, md = 1.0 * np.arange(8), 2.0 * np.arange(8)
    lags, ratio = lag_ratio(lag_model, model, lag_md, md)
    np.testing.assert_array_equal(lags, [2.0, 4.0, 6.0])
    np.testing.assert_allclose(ratio, [1 / 4, 2 / 8, 3 / 12])


# ---- evaluate on lone Langevin chains: exact D, one-step statistics, MD split-half ceiling ----

SETTINGS = CGSettings(cg_level=3, whole_molecule_max_atoms=1, seed=0)
START, DILATION, ROLLOUT_STEPS = 4, 2, 60


def _rollout(reference: SystemTrajectory) -> SystemTrajectory:
    """The reference's beads every ``DILATION`` frames from ``START``, slowed down by half
    (a "model" whose chains diffuse too slowly)."""
    mapping = compute_mapping(reference.topology, SETTINGS)
    frames = START + DILATION * np.arange(ROLLOUT_STEPS + 1)
    beads = mapping.bead_positions(np.asarray(reference.positions[()])[frames],
                                   reference.topology.masses)
    beads = beads[:1] + 0.5 * (beads - beads[:1])
    return SystemTrajectory(
        name=reference.name,
        topology=Topology(masses=mapping.bead_masses, types=mapping.bead_species,
                          type_names=mapping.species_names, bonds=mapping.cg_bonds,
                          bond_types=np.zeros(len(mapping.cg_bonds), dtype=np.int64)),
        positions=beads, box=np.zeros((frames.size, 3, 3)),
        time=np.asarray(reference.time)[frames], pbc=False, units="lj", source="eqcg rollout",
        attrs=RolloutAttrs(reference.name, SETTINGS.cg_level, SETTINGS.whole_molecule_max_atoms,
                           SETTINGS.seed, START, DILATION, 1.0, "slow").to_attrs())


def _com(reference: SystemTrajectory) -> np.ndarray:
    """``(n_frames, 3)`` centre of mass of a one-chain reference system."""
    masses = reference.topology.masses
    return np.einsum("n,fnd->fd", masses / masses.sum(), np.asarray(reference.positions[()]))


def _direct_d(com: np.ndarray, dt: float, stride: int, fraction=(0.1, 0.5)) -> float:
    """D of a COM trajectory by a direct MSD and a straight line over the default window
    (5 - 50 steps of ``stride`` frames, capped at ``fraction`` of the longest lag)."""
    n = com.shape[0]
    lags = np.arange(n)
    msd = np.array([0.0] + [np.mean(np.sum((com[k:] - com[:-k]) ** 2, -1)) for k in lags[1:]])
    t = dt * lags
    start = min(5 * stride * dt, fraction[0] * t[-1])
    stop = min(50 * stride * dt, fraction[1] * t[-1])
    inside = (t >= start * (1 - 1e-12)) & (t <= stop * (1 + 1e-12))
    return np.polyfit(t[inside], msd[inside], 1)[0] / 6


@pytest.fixture(scope="module")
def chains_evaluated(polymer_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("chains")
    with load_dataset(polymer_data) as data:
        references = list(data)
        write_dataset(root / "slow" / ROLLOUT_FILE, [_rollout(r) for r in references])
        coms = {r.name: _com(r) for r in references}
        attrs = {r.name: dict(r.attrs) for r in references}
        masses = {r.name: float(r.topology.masses.sum()) for r in references}
        dt = float(references[0].time[1] - references[0].time[0])
    metrics = evaluate(root / "slow", polymer_data, root / "report", draw_plots=False,
                       calibrate=False)
    comparison = compare([root / "report"], root / "comparison")
    return metrics, comparison, coms, attrs, masses, dt


def test_evaluate_reports_the_exact_d_beside_md_and_model(chains_evaluated):
    metrics, comparison, coms, attrs, masses, dt = chains_evaluated
    key = "diffusivity[chain COM]"
    names = sorted(metrics["systems"])
    exact = np.array([attrs[n]["temperature"] * attrs[n]["damp"] / masses[n] for n in names])
    md = np.array([metrics["systems"][n]["values"]["reference"][key] for n in names])
    model = np.array([metrics["systems"][n]["values"]["model"][key] for n in names])
    for n, value in zip(names, exact, strict=True):
        system = metrics["systems"][n]
        assert system["values"]["exact"][key] == pytest.approx(value)
        assert system["dynamics"]["exact_com_diffusivity"] == pytest.approx(value)
        assert system["values"]["reference"][key] == pytest.approx(
            _direct_d(coms[n], dt, DILATION), rel=1e-9)
    agreement = metrics["aggregate"]["agreement"]
    for pair, values in (("exact_reference", md), ("exact_model", model)):
        ratio = values / exact
        assert agreement[pair][key]["within_1_5x"] == pytest.approx(
            np.mean((ratio >= 1 / 1.5) & (ratio <= 1.5)))
        assert set(agreement[pair]) == {key}
    medians = metrics["aggregate"]["medians"][f"{key}/exact"]
    assert medians["reference"] == pytest.approx(np.median(md / exact))
    assert medians["model"] == pytest.approx(np.median(model / exact))
    row = comparison["rows"][0]
    assert row["com_diffusivity_exact_md"] == pytest.approx(np.median(md / exact))
    assert row["com_diffusivity_exact_model"] == pytest.approx(np.median(model / exact))


def test_one_step_statistics_use_one_rollout_step_on_both_sides(chains_evaluated):
    metrics, comparison, coms, _, _, _ = chains_evaluated
    ratios = []
    for name, system in metrics["systems"].items():
        com = coms[name]
        md_steps = com[DILATION:] - com[:-DILATION]  # every origin, one learned step apart
        md = np.mean(np.sum(md_steps**2, axis=-1))
        assert system["values"]["reference"]["com_step_msd"] == pytest.approx(md, rel=1e-9)
        frames = START + DILATION * np.arange(ROLLOUT_STEPS + 1)
        model_steps = 0.5 * np.diff(com[frames], axis=0)  # the rollout's COM, slowed by half
        model = np.mean(np.sum(model_steps**2, axis=-1))
        assert system["values"]["model"]["com_step_msd"] == pytest.approx(model, rel=1e-9)
        assert system["dynamics"]["com_step_ratio"] == pytest.approx(model / md, rel=1e-9)
        # slowing every displacement down leaves correlations and the collective ratio alone
        assert system["values"]["model"]["step_correlation"] == pytest.approx(
            system["values"]["model_matched"]["step_correlation"])
        ratios.append(model / md)
    assert comparison["rows"][0]["com_step_ratio"] == pytest.approx(np.median(ratios))
    assert np.median(ratios) == pytest.approx(0.25, rel=0.3)


def test_md_split_half_ceiling_matches_a_direct_computation(chains_evaluated):
    metrics, comparison, coms, _, _, dt = chains_evaluated
    key = "diffusivity[chain COM]"
    names = sorted(metrics["systems"])
    halves = []
    for name in names:
        com = coms[name]
        half = com.shape[0] // 2
        direct = [_direct_d(com[:half], dt, DILATION), _direct_d(com[half:2 * half], dt,
                                                                  DILATION)]
        values = metrics["systems"][name]["values"]
        got = [values["reference_half1"][key], values["reference_half2"][key]]
        np.testing.assert_allclose(got, direct, rtol=1e-9)
        halves.append(direct)
    first, second = np.array(halves).T
    entry = metrics["aggregate"]["agreement"]["md_halves"][key]
    assert entry["spearman_rho"] == pytest.approx(scipy.stats.spearmanr(first, second)[0])
    assert entry["pearson_r_squared"] == pytest.approx(
        scipy.stats.pearsonr(first, second)[0] ** 2)
    assert entry["within_1_5x"] == pytest.approx(
        np.mean((second >= first / 1.5) & (second <= first * 1.5)))
    assert "rg_mean" not in metrics["aggregate"]["agreement"]["md_halves"]
    row = comparison["rows"][0]
    assert row["diffusivity_md_halves_spearman"] == entry["spearman_rho"]
    assert row["diffusivity_ceiling_by_species"]["chain COM"] == entry
