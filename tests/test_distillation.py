"""Distilled refinement: the distillation targets on an exact Gaussian, the distilled sampler
in rollouts (call count, equivariance), the settings it refuses, and ``eqcg distill`` on real
data."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch

from eqcg.commands.cli import main
from eqcg.commands.distillation import (
    DistillSettings,
    distill,
    distillation_loss,
    distillation_target,
    draw_variance,
    teacher_levels,
    teacher_step,
)
from eqcg.config import ModelConfig, RolloutConfig, ScoreConfig, load_config
from eqcg.errors import ConfigError
from eqcg.models.checkpoint import load_checkpoint, load_simulator
from eqcg.models.gaussian import gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.simulation.equivariance import random_orthogonal, transform_batch
from eqcg.simulation.langevin import distilled_ladder, distilled_steps, geometric_ladder
from eqcg.simulation.refinement import score_evaluations
from eqcg.simulation.rollout import rollout
from eqcg.testing import random_batch
from eqcg.training.trainer import train

pytestmark = pytest.mark.usefixtures("single_thread")
D = torch.float64
MU = torch.tensor([0.5, -0.2, 0.1], dtype=D)
S = 0.3
SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.log_every=2", "train.val_windows=16"]


def gaussian_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Exact score of N(MU, S²) convolved with N(0, sigma²), ``sigma (n,)``."""
    return -(x - MU) / (S**2 + sigma[:, None] ** 2)


def at_level(sigma: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``(n, 3)`` samples of the Gaussian seen through noise ``sigma``."""
    z = torch.randn(n, 3, dtype=D, generator=torch.Generator().manual_seed(seed))
    return MU + (S**2 + sigma**2) ** 0.5 * z


def test_a_gaussian_distilled_to_three_steps_reaches_its_spread_in_three_evaluations():
    """Fit a linear student to the teacher's 10-level descents by the distillation loss (least
    squares), measure each step's spread from pairs of descents, and sample: the exact
    Gaussian's mean, its spread within 5 %, from 3 score calls."""
    teacher_ladder = geometric_ladder(torch.tensor(0.8, dtype=D), 0.01, 10)
    ladder = distilled_ladder(teacher_ladder[0], teacher_ladder[-1], 3)
    torch.testing.assert_close(ladder, teacher_ladder[[0, 3, 6]])  # 3 divides 10 - 1
    generator = torch.Generator().manual_seed(100)  # not the seeds of at_level's samples
    slopes, spreads = [], []
    for k, a in enumerate(ladder):
        b = ladder[k + 1] if k + 1 < len(ladder) else None
        path = teacher_levels(teacher_ladder, a, b)
        expected_path = teacher_ladder[3 * k:3 * k + 4] if b is not None else teacher_ladder[6:]
        torch.testing.assert_close(path, expected_path)

        def descent(x, path=path, last=b is None):
            return teacher_step(gaussian_score, x, path, last, gaussian_noise(generator))

        x = at_level(a, 40000, seed=k)
        target = distillation_target(x, descent(x), a, b)
        design = torch.stack([x.reshape(-1), torch.ones(x.numel(), dtype=D)], 1)
        offsets = torch.zeros(x.numel(), 3, dtype=D)
        offsets[torch.arange(x.numel()), torch.arange(x.numel()) % 3] = 1.0
        design = torch.cat([design[:, :1], offsets], 1)  # f = beta x + gamma_component
        coefficients = torch.linalg.lstsq(design, target.reshape(-1, 1)).solution.squeeze(1)
        fitted = (design @ coefficients).reshape(-1, 3)
        teacher_once = a * gaussian_score(x, a.expand(x.shape[0]))
        # the student fits the descent better than the teacher's own score at ``a`` does
        assert distillation_loss(fitted, target) < distillation_loss(teacher_once, target)
        slopes.append(coefficients)
        spreads.append(draw_variance(descent(x), descent(x)).sqrt())
    calls = []

    def student(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        k = int(torch.argmin((ladder - sigma[0]).abs()))
        calls.append(k)
        beta, gamma = slopes[k][0], slopes[k][1:]
        return (beta * x + gamma) / sigma[:, None]

    out = distilled_steps(student, at_level(torch.tensor(0.8, dtype=D), 20000, seed=9),
                          ladder, torch.stack(spreads), gaussian_noise(generator))
    assert calls == [0, 1, 2]
    assert score_evaluations(RolloutConfig(refine_levels=3, schedule="distilled"), 10) == 3
    torch.testing.assert_close(out.mean(0), MU, atol=0.02, rtol=0)
    ratio = out.std(0) / S
    assert bool(((ratio > 0.95) & (ratio < 1.05)).all()), ratio


def distilled_simulator(levels: int = 3) -> tuple[Simulator, object]:
    torch.manual_seed(0)
    batch, vocabulary = random_batch(n_systems=2, history=4)
    model = ModelConfig(variant="equivariant", covariance="full", radius=5.0, embed_dim=8,
                        latent_dim=16, message_passing_steps=2, score_message_passing_steps=2,
                        options={"equivariant": {"vector_channels": 8, "lmax": 1,
                                                 "radial_basis": 4}})
    sim = Simulator(model, ScoreConfig(sigma_begin=0.5, distilled_levels=levels), vocabulary,
                    history=4, velocity_scale=0.7, acceleration_scale=0.05)
    sim.distilled_noise.copy_(torch.linspace(0.2, 0.05, levels))
    return sim.double().eval(), batch


DISTILLED = RolloutConfig(refine_levels=3, schedule="distilled", excluded_volume=1.0)


def test_a_distilled_rollout_calls_the_score_network_once_per_level():
    sim, batch = distilled_simulator()
    calls = []
    hook = sim.score_network.register_forward_hook(lambda *_: calls.append(1))
    rollout(sim, batch, 4, DISTILLED, show_progress=False,
            noise=gaussian_noise(torch.Generator().manual_seed(0)))
    hook.remove()
    assert len(calls) == 4 * 3


@pytest.mark.parametrize("improper", [False, True])
def test_distilled_rollout_is_equivariant(improper):
    sim, batch = distilled_simulator()
    generator = torch.Generator().manual_seed(11)
    rotation = random_orthogonal(generator, improper=improper).to(D)
    shift = 5.0 * torch.randn(3, generator=generator, dtype=D)

    def run(b, r: torch.Tensor | None) -> torch.Tensor:
        g = torch.Generator().manual_seed(5)

        def noise(like):
            z = torch.randn(like.shape, generator=g, dtype=like.dtype)
            return z if r is None else z @ r.T

        return rollout(sim, b, 3, DISTILLED, noise=noise, show_progress=False).positions

    reference = run(batch, None)
    moved = run(transform_batch(batch, rotation, shift), rotation)
    expected = reference @ rotation.T + shift
    assert float((moved - expected).norm() / (expected - shift).norm()) < 1e-9
    assert float((reference[-1] - reference[0]).norm()) > 0.1  # the rollout moved


@pytest.mark.parametrize("settings, message", [
    (RolloutConfig(refine_levels=10, schedule="geometric"), "schedule must be distilled"),
    (RolloutConfig(refine_levels=2, schedule="distilled"), "refine_levels must be 3"),
    (RolloutConfig(refine_levels=3, schedule="distilled", refine_start="spread"),
     "refine_start must be top"),
])
def test_a_distilled_score_network_refuses_other_refinements(settings, message):
    sim, batch = distilled_simulator()
    with pytest.raises(ConfigError, match=message):
        rollout(sim, batch, 1, settings, show_progress=False)
    rollout(sim, batch, 1, RolloutConfig(refine=False), show_progress=False)  # sampling alone


def test_the_distilled_schedule_needs_a_distilled_score_network():
    with pytest.raises(ConfigError, match="rollout.schedule distilled needs a distilled"):
        load_config("configs/polymer_equivariant.yaml", ["rollout.schedule=distilled"])
    with pytest.raises(ConfigError, match="distilled_levels .10. must be below"):
        load_config("configs/polymer_equivariant.yaml", ["score.distilled_levels=10"])


@pytest.fixture(scope="module")
def teacher(polymer_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("distill") / "teacher"
    config = load_config("configs/polymer_equivariant.yaml",
                         SMALL + ["train.max_steps=4", "train.val_every=2"])
    train(config, polymer_data, run_dir, show_progress=False)
    return run_dir


def test_eqcg_distill_writes_a_run_that_rolls_out_with_its_steps(teacher, polymer_data,
                                                                  tmp_path, capsys):
    out = tmp_path / "distilled"
    assert main(["distill", str(teacher), "--levels", "3", "--steps", "4", "--batch-size", "2",
                 "--calibration-batches", "2", "--out", str(out)]) == 0
    assert "3 score calls per step" in capsys.readouterr().out
    simulator, config, _ = load_simulator(out)
    assert (config.score.distilled_levels, config.rollout.schedule,
            config.rollout.refine_levels) == (3, "distilled", 3)
    assert bool((simulator.distilled_noise > 0).all()) and simulator.distilled_noise.shape == (3,)
    teacher_model, _, _ = load_simulator(teacher)
    student, taught = simulator.state_dict(), teacher_model.state_dict()
    assert all(torch.equal(student[name], value) for name, value in taught.items()
               if not name.startswith("score_network."))  # only the score network trained
    assert any(not torch.equal(student[name], value) for name, value in taught.items()
               if name.startswith("score_network."))
    with open(out / "metrics.csv", newline="") as f:
        val = [row for row in csv.DictReader(f) if row["split"] == "val"]
    assert sorted((row["step"], row["level"]) for row in val) == [
        (step, level) for step in ("0", "4") for level in ("0", "1", "2")]
    # the floor (the teacher's own spread) is positive and, on average, below the loss
    floors = [float(row["floor"]) for row in val]
    assert min(floors) > 0 and sum(floors) < sum(float(row["loss"]) for row in val)
    assert main(["rollout", str(out), "--data", str(polymer_data), "--steps", "2",
                 "--out", str(tmp_path / "rollout")]) == 0
    refused = tmp_path / "refused"
    assert main(["rollout", str(out), "--data", str(polymer_data), "--steps", "2",
                 "--schedule", "geometric", "--out", str(refused)]) != 0
    assert "rollout.schedule must be distilled" in capsys.readouterr().err
    assert not refused.exists()  # refused before anything was written
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 4 and state["distillation"]["levels"] == 3


def test_distill_refuses_what_it_cannot_distil(teacher, tmp_path):
    with pytest.raises(ConfigError, match="--levels 10: must be below"):
        distill(teacher, tmp_path / "a", DistillSettings(levels=10, steps=1))
    first = tmp_path / "b"
    distill(teacher, first, DistillSettings(levels=2, steps=1, batch_size=2,
                                            calibration_batches=1), show_progress=False)
    with pytest.raises(ConfigError, match="distilled already"):
        distill(first, tmp_path / "c", DistillSettings(levels=1, steps=1))
    with pytest.raises(ConfigError, match="other settings .levels: 2 -> 3"):
        distill(teacher, first, DistillSettings(levels=3, steps=1, batch_size=2,
                                                calibration_batches=1), resume=True)
    stored = load_config(first / "config.yaml")
    with pytest.raises(ConfigError, match="distilled run's"):
        train(dataclasses.replace(stored), "unused", tmp_path / "d")
