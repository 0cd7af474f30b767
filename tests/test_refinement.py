"""Refinement: few-step samplers on an exact Gaussian score, score calls per step, the Verlet
neighbour list, equivariance of refined rollouts, excluded volume, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from torch_geometric.utils import scatter

from eqcg import keys
from eqcg.config import ModelConfig, RolloutConfig, ScoreConfig
from eqcg.evaluation.calibration import calibration_from_distances, mahalanobis_squared
from eqcg.graphs.neighbors import VerletList, radius_edges
from eqcg.models.gaussian import GaussianAcceleration, gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.simulation import rollout as rollout_module
from eqcg.simulation.equivariance import random_orthogonal, transform_batch
from eqcg.simulation.langevin import (
    annealed_langevin,
    geometric_ladder,
    level_to_level,
)
from eqcg.simulation.refinement import (
    keep_molecule_centres,
    noise_ladder,
    push_apart,
    score_evaluations,
)
from eqcg.simulation.rollout import rollout
from eqcg.testing import random_batch

D = torch.float64
MU, S = torch.tensor([1.0, -2.0, 0.5], dtype=D), 0.3


pytestmark = pytest.mark.usefixtures("single_thread")


def gaussian_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact score of N(MU, S²) convolved with N(0, sigma²), ``sigma (n,)``."""
    return -(x - MU) / (S**2 + sigma[:, None] ** 2)


def wide_start(n: int = 20000) -> torch.Tensor:
    """The Gaussian seen through noise of 0.8, where the ladders below start: a proposal almost
    three times too wide, as a sampled dynamics step looks to the refiner."""
    z = torch.randn(n, 3, dtype=D, generator=torch.Generator().manual_seed(1))
    return MU + (S**2 + 0.8**2) ** 0.5 * z


@pytest.mark.parametrize("schedule,std_band", [
    ("geometric", (0.95, 1.05)), ("ddim", (0.85, 1.0)), ("ancestral", (0.7, 0.9)),
])
def test_ten_level_samplers_reach_the_gaussian_in_ten_evaluations(schedule, std_band):
    calls = []

    def score(x, sigma):
        calls.append(1)
        return gaussian_score(x, sigma)

    sigmas = geometric_ladder(torch.tensor(0.8, dtype=D), 0.01, 10)
    out = level_to_level(score, wide_start(), sigmas,
                         gaussian_noise(torch.Generator().manual_seed(0)), schedule)
    settings = RolloutConfig(refine_levels=10, schedule=schedule)
    assert len(calls) == 10 == score_evaluations(settings, 10)
    _assert_reaches_the_gaussian(out, std_band)
    # the paper's 200 evaluations with a constant step of 5e-5 leave the proposal almost as is
    paper = annealed_langevin(gaussian_score, wide_start(), geometric_ladder(
        torch.tensor(10.0, dtype=D), 0.01, 20), 10, 5e-5,
        gaussian_noise(torch.Generator().manual_seed(0)), "constant")
    assert float((paper.std(0) / S).min()) > 2.5


def test_five_geometric_levels_reach_the_gaussian_in_five_evaluations():
    """The cheaper schedule of results/refinement (``--refine-levels 5``) loses nothing on an
    exact score: the spread within 5 % (measured: 1 %) in 5 evaluations."""
    calls = []

    def score(x, sigma):
        calls.append(1)
        return gaussian_score(x, sigma)

    out = level_to_level(score, wide_start(), geometric_ladder(torch.tensor(0.8, dtype=D),
                                                               0.01, 5),
                         gaussian_noise(torch.Generator().manual_seed(0)), "geometric")
    assert len(calls) == 5 == score_evaluations(RolloutConfig(refine_levels=5), 10)
    _assert_reaches_the_gaussian(out, (0.95, 1.05))


def _assert_reaches_the_gaussian(out: torch.Tensor, std_band: tuple[float, float]) -> None:
    """``out (n, 3)`` has the exact Gaussian's mean and a spread within ``std_band`` of it."""
    torch.testing.assert_close(out.mean(0), MU, atol=0.02, rtol=0)
    ratio = out.std(0) / S
    assert bool(((ratio > std_band[0]) & (ratio < std_band[1])).all()), ratio


def test_ddim_converges_to_the_gaussian_as_levels_are_added():
    errors = []
    for n_levels in (5, 20, 80):
        sigmas = geometric_ladder(torch.tensor(0.8, dtype=D), 0.001, n_levels)
        out = level_to_level(gaussian_score, wide_start(), sigmas, gaussian_noise(), "ddim")
        errors.append(float((out.std(0) / S - 1).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.03


def test_final_denoising_step_is_tweedie():
    x = torch.tensor([[2.0, 0.0, 0.0]], dtype=D)
    out = annealed_langevin(gaussian_score, x, torch.tensor([0.1], dtype=D), 1, 1e-30,
                            lambda like: torch.zeros_like(like), "ncsn", denoise=True)
    expected = x + 0.1**2 * gaussian_score(x, torch.tensor([0.1], dtype=D))
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_spread_ladder_starts_at_each_systems_spread_clamped_to_the_training_range():
    model_sigmas = geometric_ladder(torch.tensor(1.0, dtype=D), 0.01, 10)
    graph_of_bead = torch.tensor([0, 0, 0, 1, 2])
    # system 0: per-bead tr Σ / 3 of 0.18, 0.01, 0.08 -> spread sqrt(0.09) = 0.3; systems 1
    # and 2: spreads 5 and 0.001, clamped to the training range [0.01, 1]
    covariance = torch.diag_embed(torch.tensor(
        [[0.16, 0.16, 0.22], [0.01] * 3, [0.08] * 3, [25.0] * 3, [1e-6] * 3], dtype=D))
    ladder = noise_ladder(RolloutConfig(refine_levels=4, refine_start="spread"), model_sigmas,
                          covariance, graph_of_bead, 3)
    torch.testing.assert_close(ladder[0], torch.tensor([0.3, 0.3, 0.3, 1.0, 0.01], dtype=D))
    torch.testing.assert_close(ladder[-1], torch.full((5,), 0.01, dtype=D))
    top = noise_ladder(RolloutConfig(refine_levels=10), model_sigmas, covariance, graph_of_bead,
                       3)
    torch.testing.assert_close(top[:, 0], model_sigmas)


def small_simulator(lmax: int = 1, shared_noise_rank: int = 0) -> tuple[Simulator, object]:
    torch.manual_seed(0)
    batch, vocabulary = random_batch(n_systems=2, history=4)
    model = ModelConfig(variant="equivariant", covariance="full", radius=5.0, embed_dim=8,
                        latent_dim=16, message_passing_steps=2, score_message_passing_steps=2,
                        shared_noise_rank=shared_noise_rank,
                        options={"equivariant": {"vector_channels": 8, "lmax": lmax,
                                                 "radial_basis": 4}})
    sim = Simulator(model, ScoreConfig(sigma_begin=0.5), vocabulary, history=4,
                    velocity_scale=0.7, acceleration_scale=0.05)
    return sim.double().eval(), batch


REFINEMENTS = [
    RolloutConfig(refine_levels=3, langevin_steps=2, schedule="ncsn", denoise=True,
                  step_size=1e-5),
    RolloutConfig(refine_levels=4, schedule="geometric", refine_start="spread"),
    RolloutConfig(refine_levels=5, schedule="ddim", refine_start="spread",
                  excluded_volume=1.0),
    RolloutConfig(refine=False),
]


@pytest.mark.parametrize("refinement", REFINEMENTS, ids=lambda r: f"{r.schedule}-{r.refine}")
def test_score_network_calls_per_step_equal_the_configured_count(refinement):
    sim, batch = small_simulator()
    calls = {"score": 0, "dynamics": 0}
    hooks = [sim.score_network.register_forward_hook(
                 lambda *_: calls.__setitem__("score", calls["score"] + 1)),
             sim.dynamics.register_forward_hook(
                 lambda *_: calls.__setitem__("dynamics", calls["dynamics"] + 1))]
    rollout(sim, batch, 3, refinement, show_progress=False,
            noise=gaussian_noise(torch.Generator().manual_seed(0)))
    for hook in hooks:
        hook.remove()
    expected = {REFINEMENTS[0].schedule: 3 * 2 + 1, "geometric": 4, "ddim": 5}
    per_step = expected[refinement.schedule] if refinement.refine else 0
    assert per_step == score_evaluations(refinement, len(sim.sigmas))
    assert calls == {"score": 3 * per_step, "dynamics": 3}


def test_verlet_list_equals_a_fresh_search_until_a_bead_crosses_half_the_skin():
    batch, _ = random_batch(n_systems=3, history=2, triclinic=True)
    pos = batch[keys.POS_HISTORY][:, -1]
    box, pbc, ptr = batch[keys.BOX], batch[keys.PBC], batch.ptr
    cutoff, skin = 4.0, 1.0
    verlet = VerletList(cutoff, skin)
    verlet(pos, box, pbc, ptr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):  # moves of at most 0.45 skin: no rebuild, same edges in the same order
        step = torch.randn(pos.shape, generator=generator, dtype=D)
        moved = pos + 0.45 * skin * step / step.norm(dim=-1, keepdim=True).max()
        fresh_index, fresh_shift = radius_edges(moved, box, pbc, ptr, cutoff)
        index, shift = verlet(moved, box, pbc, ptr)
        assert torch.equal(index, fresh_index) and torch.equal(shift, fresh_shift)
    assert verlet.builds == 1
    far = pos.clone()
    far[3] += torch.tensor([0.6 * skin, 0.0, 0.0], dtype=D)
    index, shift = verlet(far, box, pbc, ptr)
    assert verlet.builds == 2
    fresh_index, fresh_shift = radius_edges(far, box, pbc, ptr, cutoff)
    assert torch.equal(index, fresh_index) and torch.equal(shift, fresh_shift)


def test_rollout_reusing_the_neighbour_list_equals_rebuilding_at_every_evaluation(monkeypatch):
    sim, batch = small_simulator()
    refinement = RolloutConfig(refine_levels=4, schedule="geometric", refine_start="spread")

    def run() -> torch.Tensor:
        return rollout(sim, batch, 4, refinement, show_progress=False,
                       noise=gaussian_noise(torch.Generator().manual_seed(3))).positions

    reused = run()
    builds = []
    original = rollout_module.VerletList

    class Counting(original):
        def __init__(self, cutoff, skin):
            super().__init__(cutoff, skin)
            builds.append(self)

    monkeypatch.setattr(rollout_module, "VerletList", Counting)
    run()
    assert 1 <= builds[0].builds < 4 * (1 + 4)  # fewer searches than evaluations
    monkeypatch.setattr(rollout_module, "NEIGHBOR_SKIN", 1e-12)  # rebuild at every call
    rebuilt = run()
    assert builds[1].builds == 4 * (1 + 4)
    assert torch.equal(reused, rebuilt)


@pytest.mark.parametrize("shared, keep_com", [(0, False), (1, True)],
                         ids=["independent", "shared-keep-com"])
@pytest.mark.parametrize("improper", [False, True])
def test_refined_rollout_is_equivariant(improper, shared, keep_com):
    """Sampled (shared noise drawn through the same rotated noise source) and refined."""
    sim, batch = small_simulator(shared_noise_rank=shared)
    refinement = RolloutConfig(refine_levels=4, schedule="geometric", refine_start="spread",
                               excluded_volume=1.0, keep_com=keep_com)
    generator = torch.Generator().manual_seed(11)
    rotation = random_orthogonal(generator, improper=improper).to(D)
    shift = 5.0 * torch.randn(3, generator=generator, dtype=D)

    def run(b, r: torch.Tensor | None) -> torch.Tensor:
        g = torch.Generator().manual_seed(5)

        def noise(like):
            z = torch.randn(like.shape, generator=g, dtype=like.dtype)
            return z if r is None else z @ r.T

        return rollout(sim, b, 3, refinement, noise=noise,
                       show_progress=False).positions

    reference = run(batch, None)
    moved = run(transform_batch(batch, rotation, shift), rotation)
    expected = reference @ rotation.T + shift
    error = float((moved - expected).norm() / (expected - shift).norm())
    assert error < 1e-9


def test_push_apart_moves_overlapping_pairs_to_the_distance():
    pos = torch.tensor([[0.0, 0, 0], [0.3, 0, 0], [5.0, 0, 0], [5.0, 0.6, 0]], dtype=D)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    edge_vec = pos[edge_index[1]] - pos[edge_index[0]]
    out = push_apart(pos, edge_index, edge_vec, 0.5)
    torch.testing.assert_close(out[1, 0] - out[0, 0], torch.tensor(0.5, dtype=D))
    torch.testing.assert_close(out[:2].mean(0), pos[:2].mean(0))
    torch.testing.assert_close(out[1:, 1:], pos[1:, 1:])
    torch.testing.assert_close(out[2:], pos[2:])  # already 0.6 apart: untouched


def test_calibration_matches_an_independent_numpy_computation():
    rng = np.random.default_rng(0)
    n = 4000
    a = rng.normal(size=(n, 3, 3))
    cov = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(3)
    mean = rng.normal(size=(n, 3))
    target = mean + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.normal(size=(n, 3)))
    prediction = GaussianAcceleration(torch.tensor(mean), torch.tensor(cov))
    d2 = mahalanobis_squared(prediction, torch.tensor(target)).numpy()
    residual = target - mean
    expected_d2 = np.einsum("ni,ni->n", residual, np.linalg.solve(cov, residual[..., None])[..., 0])
    np.testing.assert_allclose(d2, expected_d2, rtol=1e-10)
    calibration = calibration_from_distances(d2)
    assert calibration.coverage_68 == np.mean(expected_d2 <= scipy.stats.chi2.ppf(0.68, 3))
    assert calibration.coverage_95 == np.mean(expected_d2 <= scipy.stats.chi2.ppf(0.95, 3))
    assert calibration.mean_mahalanobis_squared == pytest.approx(expected_d2.mean(), rel=1e-12)
    # calibrated by construction: close to nominal; a 4x too wide covariance: d² / 4, over-covered
    assert calibration.mean_mahalanobis_squared == pytest.approx(3.0, abs=0.15)
    assert calibration.coverage_68 == pytest.approx(0.68, abs=0.02)
    wide = calibration_from_distances(mahalanobis_squared(
        GaussianAcceleration(prediction.mean, 4 * prediction.covariance),
        torch.tensor(target)).numpy())
    assert wide.mean_mahalanobis_squared == pytest.approx(calibration.mean_mahalanobis_squared / 4)
    assert wide.coverage_95 > 0.99


def test_keep_molecule_centres_against_numpy():
    rng = np.random.default_rng(3)
    molecule = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    n = molecule.size
    masses, refined = rng.uniform(1, 3, n), rng.normal(size=(n, 3))
    sampled = rng.normal(size=(n, 3))
    kept = keep_molecule_centres(torch.tensor(refined), torch.tensor(sampled),
                                 torch.tensor(masses), torch.tensor(molecule)).numpy()
    for m in range(4):
        beads = molecule == m
        weights = masses[beads, None] / masses[beads].sum()
        np.testing.assert_allclose((weights * kept[beads]).sum(0),
                                   (weights * sampled[beads]).sum(0), atol=1e-12)
        shape = kept[beads] - refined[beads]  # one rigid shift per molecule
        np.testing.assert_allclose(shape, np.broadcast_to(shape[0], shape.shape), atol=1e-12)


def test_refinement_keeping_centres_moves_no_molecule_centre():
    """One deterministic refined step with ``keep_com`` leaves every molecule's centre where
    the unrefined dynamics step puts it, and still changes the positions."""
    sim, batch = small_simulator()
    plain = rollout(sim, batch, 1, RolloutConfig(deterministic=True, refine=False),
                    show_progress=False).positions[-1]
    kept = rollout(sim, batch, 1, RolloutConfig(deterministic=True, refine_levels=4,
                                                keep_com=True),
                   show_progress=False).positions[-1]
    masses, molecule = batch[keys.BEAD_MASSES], batch[keys.BEAD_MOLECULE]
    n = molecule.numel()
    centre = lambda x: scatter(masses[:, None] * x, molecule, dim=0, dim_size=n)  # noqa: E731
    torch.testing.assert_close(centre(kept), centre(plain), rtol=0, atol=1e-10)
    assert (kept - plain).abs().max() > 1e-4


def test_a_blow_up_between_rare_save_points_stops_the_rollout_within_the_guard_interval(
        monkeypatch):
    """A system that explodes at step 5 of a rollout saved every 1000 steps is stopped at the
    next guard check (step GUARD_EVERY), not 1000 steps later; the error names system and step
    and says which saved frames were kept."""
    sim, batch = small_simulator()
    calls = []
    predict = sim.predict

    def exploding(*args, **kwargs):
        prediction = predict(*args, **kwargs)
        calls.append(1)
        if len(calls) == 5:
            prediction.acceleration.mean[0] = float("nan")
        return prediction

    monkeypatch.setattr(sim, "predict", exploding)
    with pytest.raises(rollout_module.RolloutFailure,
                       match=r"system 0 at step 5 \(noticed at step 10\); the frames saved up to "
                             r"step 0 were kept") as failure:
        rollout(sim, batch, 500, RolloutConfig(deterministic=True, refine=False),
                save_every=1000, show_progress=False)
    assert len(calls) == rollout_module.GUARD_EVERY == 10
    assert failure.value.result.positions.shape[0] == 1  # the starting frame
