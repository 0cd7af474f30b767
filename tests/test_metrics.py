"""Each metric against an analytic case or an independent computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats

from eqcg.metrics import (
    agreement,
    autocorrelation,
    bond_lengths,
    bootstrap_interval,
    centres_of_mass,
    close_pairs,
    collision_report,
    diffusivity_unit,
    end_to_end_vectors,
    exponential_relaxation_time,
    first_nonfinite_frame,
    fit_diffusivity,
    half_min_width,
    identity_r2,
    integrated_relaxation_time,
    linear_chains,
    mean_squared_displacement,
    minimum_image,
    r_squared_rows,
    radial_distribution,
    radius_of_gyration,
    relative_error,
    relative_error_rows,
    remove_drift,
    spearman_rows,
    within_factor,
    within_factor_rows,
)

TRICLINIC = np.array([[10.0, 0.0, 0.0], [3.0, 11.0, 0.0], [-2.0, 1.5, 12.0]])


# --- radius of gyration ------------------------------------------------------------------------


def _sphere(radius: float, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Antipodal pairs of points on a sphere centred at the origin (so its centre is the COM)."""
    directions = rng.normal(size=(n_pairs, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return radius * np.concatenate([directions, -directions])


def test_rg_of_points_on_a_sphere_is_its_radius():
    rng = np.random.default_rng(0)
    points = _sphere(3.7, 50, rng) + np.array([5.0, -2.0, 1.0])
    assert radius_of_gyration(points, np.ones(100)) == pytest.approx(3.7, rel=1e-12)


def test_rg_of_a_uniform_rod_matches_the_discrete_formula_and_continuum_limit():
    length = 6.0
    for n in (2, 11, 2000):
        rod = np.zeros((n, 3))
        rod[:, 0] = np.linspace(0.0, length, n)
        exact = length * np.sqrt((n + 1) / (12.0 * (n - 1)))  # sqrt(<x^2> - <x>^2) of the grid
        assert radius_of_gyration(rod, np.ones(n)) == pytest.approx(exact, rel=1e-12)
    assert radius_of_gyration(rod, np.ones(n)) == pytest.approx(length / np.sqrt(12), rel=1e-3)


def test_rg_is_mass_weighted_and_per_group_with_leading_axes():
    rng = np.random.default_rng(1)
    # two masses m1, m2 a distance d apart: Rg = d sqrt(m1 m2) / (m1 + m2)
    pair = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert radius_of_gyration(pair, np.array([1.0, 3.0])) == pytest.approx(2 * np.sqrt(3) / 4)
    spheres = np.concatenate([_sphere(1.5, 10, rng), _sphere(4.0, 20, rng) + 50.0])
    groups = np.r_[np.zeros(20, int), np.ones(40, int)]
    frames = np.stack([spheres, 2.0 * spheres])  # (2 frames, 60, 3)
    rg = radius_of_gyration(frames, np.ones(60), groups)
    assert rg.shape == (2, 2)
    np.testing.assert_allclose(rg, [[1.5, 4.0], [3.0, 8.0]], rtol=1e-12)


def test_linear_chains_and_end_to_end_vectors():
    # 0-1-2-3 chain, 4 ion, 5-6-7 ring, 8 star centre with 9, 10, 11, then 12-13 dimer
    bonds = np.array([[1, 0], [1, 2], [2, 3], [5, 6], [6, 7], [7, 5],
                      [8, 9], [8, 10], [8, 11], [12, 13]])
    groups = np.array([0, 0, 0, 0, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4])
    chain_groups, ends = linear_chains(bonds, groups)
    np.testing.assert_array_equal(chain_groups, [0, 4])
    np.testing.assert_array_equal(ends, [[0, 3], [12, 13]])
    positions = np.arange(3 * 14 * 3, dtype=float).reshape(3, 14, 3) ** 1.5
    vectors = end_to_end_vectors(positions, ends)
    assert vectors.shape == (3, 2, 3)
    np.testing.assert_allclose(vectors[:, 0], positions[:, 3] - positions[:, 0])


# --- periodic geometry -------------------------------------------------------------------------


def test_minimum_image_matches_a_search_over_images():
    rng = np.random.default_rng(2)
    vectors = rng.uniform(-30, 30, size=(200, 3))
    shifts = np.array(list(itertools.product(range(-4, 5), repeat=3))) @ TRICLINIC
    candidates = vectors[:, None, :] + shifts[None]
    brute = np.linalg.norm(candidates, axis=-1).min(axis=1)
    np.testing.assert_allclose(np.linalg.norm(minimum_image(vectors, TRICLINIC), axis=-1), brute)


def test_bond_lengths_of_wrapped_positions_use_the_minimum_image():
    box = np.tile(np.diag([10.0, 10.0, 10.0]), (2, 1, 1))
    positions = np.array([[[0.5, 5, 5], [9.5, 5, 5], [3, 3, 3]],
                          [[1.0, 5, 5], [2.0, 5, 5], [3, 3, 5]]])
    bonds = np.array([[0, 1], [1, 2]])
    lengths = bond_lengths(positions, bonds, box)
    np.testing.assert_allclose(lengths[:, 0], [1.0, 1.0])
    np.testing.assert_allclose(bond_lengths(positions, bonds)[:, 0], [9.0, 1.0])


@pytest.mark.parametrize("cell", [np.diag([12.0, 13.0, 14.0]), TRICLINIC])
def test_rdf_of_uniform_random_points_is_one(cell):
    rng = np.random.default_rng(3)
    n_frames, n = 40, 300
    positions = rng.uniform(size=(n_frames, n, 3)) @ cell
    kinds = rng.integers(0, 2, n)
    r_max = half_min_width(cell)
    rdf = radial_distribution(positions, np.tile(cell, (n_frames, 1, 1)), kinds, r_max, 16)
    assert rdf.g.shape == (2, 2, 16)
    np.testing.assert_allclose(rdf.g, rdf.g.transpose(1, 0, 2))
    outer = rdf.r > 0.4 * r_max  # enough pairs per bin for ~5% noise
    np.testing.assert_allclose(rdf.g[..., outer], 1.0, atol=0.1)
    assert abs(rdf.g[..., outer].mean() - 1.0) < 0.02
    with pytest.raises(ValueError, match="narrowest"):
        radial_distribution(positions[:1], np.tile(cell, (1, 1, 1)), kinds, 1.1 * r_max)


def test_rdf_counts_a_single_pair_exactly():
    cell = np.diag([10.0, 10.0, 10.0])
    positions = np.array([[[0.25, 0.0, 0.0], [9.2, 0.0, 0.0]]])  # 1.05 apart across the edge
    rdf = radial_distribution(positions, cell[None], np.array([0, 1]), 5.0, 50)
    k = np.searchsorted(rdf.edges, 1.05) - 1
    shell = 4 / 3 * np.pi * (rdf.edges[k + 1] ** 3 - rdf.edges[k] ** 3)
    assert rdf.g[0, 1, k] == pytest.approx(1000.0 / shell)  # one pair of N_a N_b = 1
    assert np.isnan(rdf.g[0, 0]).all()  # one particle of a kind has no self pairs
    assert rdf.peak(0, 1)[0] == pytest.approx(rdf.r[k])
    unwrapped = positions + np.array([[[-20.0, 0.0, 0.0], [0.0, 30.0, -10.0]]])
    shifted = radial_distribution(unwrapped, cell[None], np.array([0, 1]), 5.0, 50)
    np.testing.assert_array_equal(shifted.g[0, 1], rdf.g[0, 1])


def test_rdf_coordination_numbers_match_a_brute_force_count():
    rng = np.random.default_rng(5)
    cell = np.diag([9.0, 10.0, 11.0])
    positions = rng.uniform(size=(3, 60, 3)) @ cell
    kinds = rng.integers(0, 3, 60)
    rdf = radial_distribution(positions, np.tile(cell, (3, 1, 1)), kinds, 4.5, 45)
    delta = positions[:, :, None] - positions[:, None, :]
    delta -= np.round(delta / np.diag(cell)) * np.diag(cell)
    distance = np.linalg.norm(delta, axis=-1)
    distance[:, np.arange(60), np.arange(60)] = np.inf
    for r_cut in (rdf.edges[17], rdf.edges[45]):
        for a, b in itertools.product(range(3), repeat=2):
            within = (distance[:, kinds == a][:, :, kinds == b] < r_cut).sum(-1)
            assert rdf.coordination_number(a, b, r_cut) == pytest.approx(within.mean())
    assert np.isnan(rdf.coordination_number(0, 1, 4.6))  # beyond r_max


def test_rdf_first_shell_of_a_rock_salt_lattice():
    """Each ion of a jittered rock-salt lattice (spacing 1) has 6 counter-ions at 1 and the
    next ones at sqrt(3): the first minimum of g_ab lies between, and encloses exactly 6."""
    rng = np.random.default_rng(6)
    sites = np.array(list(itertools.product(range(6), repeat=3)), dtype=float)
    kinds = sites.sum(axis=1).astype(int) % 2
    positions = sites + rng.normal(scale=0.04, size=(20, *sites.shape))
    rdf = radial_distribution(positions, np.tile(np.eye(3) * 6.0, (20, 1, 1)), kinds, 3.0, 100)
    r_min = rdf.first_minimum(0, 1)
    assert 1.2 < r_min < np.sqrt(3) - 0.1
    assert rdf.peak(0, 1)[0] == pytest.approx(1.0, abs=0.03)
    assert rdf.coordination_number(0, 1, r_min) == pytest.approx(6.0)
    assert rdf.coordination_number(1, 1, 1.05) == 0.0  # like ions sit at sqrt(2)
    assert 1.45 < rdf.first_minimum(0, 0) < 2.0  # 12 like ions at sqrt(2), 6 at 2


def test_centres_of_mass_are_mass_weighted_group_centres():
    rng = np.random.default_rng(4)
    positions = rng.normal(size=(3, 7, 3))
    masses = rng.uniform(1.0, 3.0, size=7)
    groups = np.array([0, 0, 1, 2, 2, 2, 3])
    centres = centres_of_mass(positions, masses, groups)
    assert centres.shape == (3, 4, 3)
    for group in range(4):
        members = groups == group
        expected = (positions[:, members] * masses[members, None]).sum(1) / masses[members].sum()
        np.testing.assert_allclose(centres[:, group], expected, rtol=1e-12)


# --- dynamics ----------------------------------------------------------------------------------


def test_autocorrelation_matches_a_direct_sum():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 3, 2))
    acf = autocorrelation(x)
    d = x - x.mean(axis=0)
    direct = np.array([(d[: 50 - k] * d[k:]).sum() / (50 - k) for k in range(50)])
    np.testing.assert_allclose(acf, direct / direct[0], atol=1e-12)
    raw = autocorrelation(x, subtract_mean=False, max_lag=5)
    direct = np.array([(x[: 50 - k] * x[k:]).sum() / (50 - k) for k in range(6)])
    np.testing.assert_allclose(raw, direct / direct[0], atol=1e-12)


def _ar1(phi: float, n_frames: int, n_series: int, rng: np.random.Generator) -> np.ndarray:
    x = np.empty((n_frames, n_series))
    x[0] = rng.normal(size=n_series) / np.sqrt(1 - phi**2)  # stationary start
    noise = rng.normal(size=(n_frames, n_series))
    for t in range(1, n_frames):
        x[t] = phi * x[t - 1] + noise[t]
    return x


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_relaxation_times_of_an_ar1_process(phi):
    dt = 0.25
    acf = autocorrelation(_ar1(phi, 4000, 100, np.random.default_rng(5)))
    integrated = integrated_relaxation_time(acf, dt)
    assert integrated.converged
    assert integrated.tau == pytest.approx(dt * (1 + phi) / (2 * (1 - phi)), rel=0.05)
    exponential = exponential_relaxation_time(acf, dt)
    assert exponential.converged
    assert exponential.tau == pytest.approx(-dt / np.log(phi), rel=0.05)
    assert exponential.amplitude == pytest.approx(1.0, abs=0.05)


def test_relaxation_of_an_undecayed_series_is_flagged():
    # an end-to-end vector that barely turns within the data: C(t) stays near 1
    t = np.linspace(0, 1, 100)[:, None]
    acf = autocorrelation(np.array([3.0, 1.0, -2.0]) + 0.1 * t, subtract_mean=False)
    assert acf.min() > 0.9
    assert not integrated_relaxation_time(acf, 1.0).converged
    assert not exponential_relaxation_time(acf, 1.0).converged


def test_msd_matches_a_direct_average_over_time_origins():
    rng = np.random.default_rng(6)
    positions = np.cumsum(rng.normal(size=(30, 7, 3)), axis=0) + 1e3
    msd = mean_squared_displacement(positions)
    direct = [np.mean(np.sum((positions[k:] - positions[: 30 - k]) ** 2, -1)) for k in range(30)]
    np.testing.assert_allclose(msd, direct, rtol=1e-9, atol=1e-9)
    assert mean_squared_displacement(positions, max_lag=4).shape == (5,)
    each = mean_squared_displacement(positions, per_particle=True)
    direct = [np.mean(np.sum((positions[k:, 2] - positions[: 30 - k, 2]) ** 2, -1))
              for k in range(30)]
    np.testing.assert_allclose(each[:, 2], direct, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(each.mean(axis=1), msd, rtol=1e-12)


def test_diffusivity_standard_error_is_the_spread_of_each_particles_own_fit():
    rng = np.random.default_rng(8)
    lag_time = np.arange(20.0)
    slopes = rng.uniform(0.5, 2.0, size=5)
    each = lag_time[:, None] * slopes + rng.normal(scale=0.1, size=(20, 5))
    fit = fit_diffusivity(lag_time, each, window=(4.0, 12.0))
    inside = (lag_time >= 4) & (lag_time <= 12)
    own = [np.polyfit(lag_time[inside], each[inside, i], 1)[0] / 6 for i in range(5)]
    assert fit.stderr == pytest.approx(np.std(own, ddof=1) / np.sqrt(5))
    assert fit.diffusivity == pytest.approx(np.mean(own))  # a line's slope is linear in y
    assert fit_diffusivity(lag_time, each[:, :1], window=(4.0, 12.0)).stderr is None
    assert fit_diffusivity(lag_time, each.mean(axis=1), window=(4.0, 12.0)).stderr is None


def test_msd_and_diffusivity_of_a_brownian_walk():
    rng = np.random.default_rng(7)
    D, dt, n_frames, n_walkers = 0.35, 0.5, 400, 800
    steps = rng.normal(scale=np.sqrt(2 * D * dt), size=(n_frames, n_walkers, 3))
    steps[0] = 0.0
    positions = np.cumsum(steps, axis=0)
    lag_time = dt * np.arange(n_frames)
    msd = mean_squared_displacement(positions)
    np.testing.assert_allclose(msd[1:50], 6 * D * lag_time[1:50], rtol=0.05)
    fit = fit_diffusivity(lag_time, msd)
    assert fit.diffusivity == pytest.approx(D, rel=0.08)  # long lags have few origins
    assert fit.fit_window == pytest.approx((0.1 * lag_time[-1], 0.5 * lag_time[-1]), abs=dt)
    assert fit.n_points == np.count_nonzero((lag_time >= fit.fit_window[0])
                                            & (lag_time <= fit.fit_window[1]))
    fixed = fit_diffusivity(lag_time, msd, window=(5.0, 20.0))
    assert fixed.fit_window == (5.0, 20.0)
    assert fixed.diffusivity == pytest.approx(D, rel=0.05)
    # a drift shared by every particle is removed before the MSD
    drifted = positions + (np.arange(n_frames) * 0.8)[:, None, None]
    np.testing.assert_allclose(
        mean_squared_displacement(remove_drift(drifted, np.ones(n_walkers))),
        mean_squared_displacement(remove_drift(positions, np.ones(n_walkers))), atol=1e-8)


def test_diffusivity_units():
    assert diffusivity_unit("real") == (1e-4, "cm^2/s")  # 1 Å^2/ps = 1e-16 cm^2 / 1e-12 s
    assert diffusivity_unit("lj") == (1.0, "sigma^2/tau")


# --- stability ---------------------------------------------------------------------------------


def test_close_pairs_in_hand_built_frames():
    cell = np.diag([10.0, 10.0, 10.0])
    positions = np.array([
        [1.0, 1.0, 1.0], [1.5, 1.0, 1.0],  # 0.5 apart: collide
        [5.0, 5.0, 5.0], [6.5, 5.0, 5.0],  # 1.5 apart: no
        [0.2, 8.0, 8.0], [9.9, 8.0, 8.0],  # 0.3 apart across the x boundary
    ])
    np.testing.assert_array_equal(close_pairs(positions, cell, True, 1.0), [[0, 1], [4, 5]])
    np.testing.assert_array_equal(close_pairs(positions, cell, False, 1.0), [[0, 1]])
    np.testing.assert_array_equal(close_pairs(positions, cell, True, 1.6),
                                  [[0, 1], [2, 3], [4, 5]])
    unwrapped = positions + np.array([0.0, 0.0, 30.0])  # whole periodic images away
    assert close_pairs(unwrapped, cell, True, 1.0).shape == (2, 2)
    # triclinic: b = (3, 11, 0), so (0.5, 0.5, 5) and (3.2, 11.4, 5) are 0.5 apart through b
    tri = np.array([[0.5, 0.5, 5.0], [3.2, 11.4, 5.0]])
    assert close_pairs(tri, TRICLINIC, True, 1.0).shape == (1, 2)
    assert close_pairs(tri, TRICLINIC, False, 1.0).shape == (0, 2)


def test_collision_report_over_frames():
    cell = np.tile(np.diag([10.0, 10.0, 10.0]), (5, 1, 1))
    positions = np.tile(np.array([[1.0, 1, 1], [4.0, 1, 1], [7.0, 1, 1]]), (5, 1, 1))
    positions[2, 1] = [1.4, 1, 1]  # frame 2: 0 and 1 collide
    positions[3, 2] = [9.6, 1, 1]  # frame 3: 1.4 from bead 0 across the boundary: no collision
    positions[4, 2] = [10.5, 1, 1]  # frame 4: the image at 0.5 is 0.5 from bead 0
    report = collision_report(positions, cell, True, 1.0)
    np.testing.assert_array_equal(report.n_collisions, [0, 0, 1, 0, 1])
    assert report.first_collision_frame == 2
    assert report.finite and not report.collision_free and not report.stable
    positions[3, 0, 1] = np.nan
    report = collision_report(positions, cell, True, 1.0)
    assert report.first_nonfinite_frame == 3 == first_nonfinite_frame(positions)
    assert not report.finite and report.n_collisions[3] == 0
    clean = collision_report(positions[:2], cell[:2], True)
    assert clean.stable and clean.first_collision_frame is None
    assert clean.summary()["total_collisions"] == 0


# --- agreement ---------------------------------------------------------------------------------


def test_agreement_against_independent_statistics():
    rng = np.random.default_rng(8)
    reference = rng.normal(size=12)
    model = 0.7 * reference + 0.4 * rng.normal(size=12) + 0.3
    result = agreement(reference, model)
    r = np.corrcoef(reference, model)[0, 1]
    ranks = np.corrcoef(scipy.stats.rankdata(reference), scipy.stats.rankdata(model))[0, 1]
    assert result.n == 12
    assert result.pearson_r == pytest.approx(r)
    assert result.pearson_r_squared == pytest.approx(r**2)
    assert result.spearman_rho == pytest.approx(ranks)
    residual = np.sum((model - reference) ** 2)
    total = np.sum((reference - reference.mean()) ** 2)
    assert result.identity_r2 == pytest.approx(1 - residual / total)
    assert 0 < result.pearson_p < 0.05


def test_squared_pearson_and_identity_r2_differ_for_a_scaled_model():
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    scaled = agreement(reference, 2.0 * reference)
    assert scaled.pearson_r_squared == pytest.approx(1.0)
    assert scaled.identity_r2 == pytest.approx(1 - 30.0 / 5.0)
    assert identity_r2(reference, reference) == 1.0


def test_agreement_drops_nan_pairs_and_needs_three_systems():
    reference = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    model = np.array([1.1, 1.9, 3.0, np.nan, 5.2])
    assert agreement(reference, model).n == 3
    with pytest.raises(ValueError, match="at least 3"):
        agreement(reference[:3], model[:3])


# --- bootstrap intervals ----------------------------------------------------------------------


def test_within_factor_counts_systems_inside_the_band():
    reference = np.array([1.0, 1.0, 1.0, 2.0, 4.0, np.nan, -1.0])
    model = np.array([1.5, 0.66, 1.51, 1.0, -4.0, 1.0, -1.0])
    assert within_factor(reference, model, 1.5) == pytest.approx(1 / 5)  # 1.5 in, 0.66 < 1/1.5
    assert within_factor(reference, model, 2.0) == pytest.approx(4 / 5)
    assert np.isnan(within_factor(reference[-1:], model[-1:], 2.0))  # no positive reference


def test_relative_error_is_the_mean_over_systems_with_a_nonzero_reference():
    reference = np.array([2.0, 4.0, -1.0, 0.0, np.nan, 5.0])
    model = np.array([3.0, 3.0, -1.5, 1.0, 1.0, np.nan])
    assert relative_error(reference, model) == pytest.approx((0.5 + 0.25 + 0.5) / 3)
    assert np.isnan(relative_error(reference[3:4], model[3:4]))
    rows = relative_error_rows(np.array([[1.0, 2.0], [4.0, 4.0]]), np.array([[2.0, 2.0],
                                                                            [4.0, 2.0]]))
    np.testing.assert_allclose(rows, [0.5, 0.25])


def test_bootstrap_interval_of_a_fraction_is_the_binomial_interval():
    """Resampling n systems of which k are inside the band makes the resampled fraction
    Binomial(n, k / n) / n: its percentile interval is the binomial quantiles, exactly."""
    n, k = 30, 21
    reference = np.ones(n)
    model = np.where(np.arange(n) < k, 1.2, 3.0)
    low, high = bootstrap_interval(lambda r, m: within_factor_rows(r, m, 1.5), reference, model,
                                   n_resamples=20000, seed=1)
    binomial = scipy.stats.binom(n, k / n)
    assert (low, high) == (binomial.ppf(0.025) / n, binomial.ppf(0.975) / n)


def test_bootstrap_interval_of_r_squared_matches_exact_enumeration():
    """For 5 systems all 5^5 resamples are equally likely: their exact percentile interval
    of Pearson r^2 is what the Monte-Carlo bootstrap approaches."""
    reference = np.array([1.0, 2.0, 3.5, 4.0, 6.0])
    model = np.array([1.4, 1.8, 3.0, 5.1, 5.6])
    exact = []
    for draw in itertools.product(range(5), repeat=5):
        index = np.array(draw)
        r = np.corrcoef(reference[index], model[index])[0, 1] if len(set(draw)) > 1 else np.nan
        exact.append(r * r)
    exact = np.array(exact)
    exact = exact[np.isfinite(exact)]
    expected = np.quantile(exact, [0.025, 0.975], method="inverted_cdf")
    low, high = bootstrap_interval(r_squared_rows, reference, model, n_resamples=20000)
    assert low == pytest.approx(expected[0], abs=0.02)
    assert high == pytest.approx(expected[1], abs=0.005)
    assert np.isnan(bootstrap_interval(r_squared_rows, reference[:2], model[:2])).all()


def test_row_statistics_equal_scipy_on_each_row():
    rng = np.random.default_rng(3)
    reference, model = rng.normal(size=(6, 9)), rng.normal(size=(6, 9))
    model[0, :4] = model[0, 4:8]  # ties
    for row in range(6):
        assert r_squared_rows(reference, model)[row] == pytest.approx(
            scipy.stats.pearsonr(reference[row], model[row]).statistic ** 2)
        assert spearman_rows(reference, model)[row] == pytest.approx(
            scipy.stats.spearmanr(reference[row], model[row]).statistic)
    assert np.isnan(r_squared_rows(np.ones((1, 4)), model[:1, :4])).all()
