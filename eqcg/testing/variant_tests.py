"""The test-suite every variant passes: subclass :class:`VariantTests` in a test module.

A new variant gets its interface, equivariance, save/reload and rollout tests by naming a small
model config of it::

    from eqcg.testing.variant_tests import VariantTests

    class TestMine(VariantTests):
        @pytest.fixture(scope="class")
        @classmethod
        def model(cls) -> ModelConfig:
            return ModelConfig(variant="mine", covariance="isotropic", latent_dim=16)

(parametrise the fixture to test several settings; class-scoped fixtures are
classmethods). Every check runs in float64. A variant registered with ``equivariant=True`` must
pass rotations, reflections and translations (open boundaries, a triclinic cell rotated with the
positions, the 48 symmetries of a fixed cubic cell) to :attr:`VariantTests.tolerance`, rollouts
included; one registered with ``equivariant=False`` must *fail* them (which shows that the
checks can fail) while staying translation and permutation equivariant, as every variant must.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.config import Config, DataConfig, ModelConfig, RolloutConfig, ScoreConfig
from eqcg.errors import ConfigError
from eqcg.models.checkpoint import (
    RunMetadata,
    build_simulator,
    load_checkpoint,
    model_state,
    save_checkpoint,
)
from eqcg.models.integrator import acceleration_target
from eqcg.models.interface import DynamicsNetwork, ScoreNetwork
from eqcg.models.registry import Variant, check_variant, get_variant
from eqcg.models.simulator import Simulator
from eqcg.simulation.equivariance import measure_equivariance, permute_batch, transform_batch
from eqcg.simulation.rollout import rollout
from eqcg.testing import random_batch

__all__ = ["Outputs", "VariantTests", "relative_error", "score_inputs", "variant_outputs"]

#: box, orientation handling and boundaries of the equivariance cases
EQUIVARIANCE_CASES = {
    "open": dict(pbc=False, triclinic=False, rotate_box=True),
    "triclinic": dict(pbc=True, triclinic=True, rotate_box=True),
    "cube": dict(pbc=True, triclinic=False, rotate_box=False),
}


@dataclass
class Outputs:
    """Every output of a simulator on one batch (physical units unless said otherwise)."""

    mean: torch.Tensor  # (n, 3) acceleration mean
    covariance: torch.Tensor  # (n, 3, 3) acceleration covariance
    normalized_covariance: torch.Tensor  # (n, 3, 3) the same in normalised units
    nll: torch.Tensor  # (n,) NLL of the true acceleration
    latent: torch.Tensor  # (n, ...) dynamics latent (the score network's context)
    invariant_latent: torch.Tensor  # (n, invariant_dim) rotation-invariant latent
    score: torch.Tensor  # (n, 3) sigma times the score
    shared_factor: torch.Tensor | None  # (n, r, 3, 3) factors of noise shared per molecule


def variant_outputs(
    sim: Simulator, batch: Batch, noise: torch.Tensor, sigma: torch.Tensor
) -> Outputs:
    """All outputs of ``sim`` on ``batch``; the score at ``target_pos + sigma * noise``."""
    pos_history = batch[keys.POS_HISTORY]
    bead_features = sim.embed(batch)
    pred = sim.predict(batch, pos_history, bead_features)
    dynamics = sim.dynamics(sim.graph_inputs(batch, pos_history[:, -1], bead_features),
                            (pos_history[:, 1:] - pos_history[:, :-1]) / sim.velocity_scale)
    target = acceleration_target(pos_history, batch[keys.TARGET_POS])
    noisy = batch[keys.TARGET_POS] + sigma[:, None] * noise
    score = sim.score_times_sigma(batch, noisy, pos_history[:, -1], sigma, bead_features,
                                  pred.latent)
    return Outputs(pred.acceleration.mean, pred.acceleration.marginal_covariance(),
                   pred.normalized.marginal_covariance(), pred.acceleration.nll(target),
                   pred.latent, dynamics.invariant_latent, score,
                   None if pred.acceleration.shared is None else pred.acceleration.shared.factor)


def score_inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard normal ``noise (n, 3)`` and ``sigma (n,)`` in ``[0.1, 1.1)``, float64."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    sigma = 0.1 + torch.rand(n, generator=generator, dtype=torch.float64)
    return noise, sigma


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max absolute difference over the max absolute expected value."""
    return float((actual - expected).abs().max() / expected.abs().max())


class VariantTests:
    """Interface and symmetry tests of one variant; subclasses define the ``model`` fixture."""

    history: int = 4  # k of the test simulators
    tolerance: float = 1e-9  # largest relative error of an exact symmetry in float64
    compared = ("mean", "covariance", "nll", "latent", "score")  # outputs compared per bead

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> ModelConfig:
        """A small model config of the variant under test (subclasses override this)."""
        raise NotImplementedError("a VariantTests subclass defines the `model` fixture")

    @pytest.fixture(scope="class")
    @classmethod
    def variant(cls, model: ModelConfig) -> Variant:
        return get_variant(model.variant)

    @pytest.fixture(scope="class")
    @classmethod
    def simulator(cls, model: ModelConfig) -> Simulator:
        """The model in float64, eval mode, seeded weights."""
        return cls.make_simulator(model).double().eval()

    @classmethod
    def make_simulator(cls, model: ModelConfig) -> Simulator:
        """A float32 simulator of ``model`` with seeded weights."""
        torch.manual_seed(0)
        _, vocabulary = random_batch(history=cls.history)
        return Simulator(model, ScoreConfig(n_levels=3), vocabulary, history=cls.history,
                         velocity_scale=0.7, acceleration_scale=0.4)

    def test_registered_and_builds(self, model: ModelConfig, variant: Variant) -> None:
        assert model.covariance in variant.covariances
        resolved = check_variant(model, "test")
        if variant.options is not None:
            assert set(resolved.options[variant.name]) == {
                f.name for f in dataclasses.fields(variant.options)}
        dynamics, score = variant.networks(resolved, self.history)
        assert isinstance(dynamics, DynamicsNetwork) and isinstance(score, ScoreNetwork)
        with pytest.raises(ConfigError, match="covariance 'no-such' is not supported by"):
            check_variant(dataclasses.replace(model, covariance="no-such"), "test")
        with pytest.raises(ConfigError, match=rf"model\.{variant.name}\."
                                              if variant.options else "takes no options"):
            check_variant(dataclasses.replace(
                model, options={variant.name: {"no_such_option": 1}}), "test")

    def test_output_shapes_and_dtypes(self, simulator: Simulator) -> None:
        batch, _ = random_batch(history=self.history, pbc=True, triclinic=True)
        n = batch[keys.POS_HISTORY].shape[0]
        with torch.no_grad():
            out = variant_outputs(simulator, batch, *score_inputs(n))
        assert out.mean.shape == (n, 3) and out.score.shape == (n, 3)
        assert out.covariance.shape == (n, 3, 3) and out.nll.shape == (n,)
        assert out.latent.shape[0] == n
        assert out.invariant_latent.shape == (n, simulator.dynamics.invariant_dim)
        torch.testing.assert_close(out.covariance, out.covariance.transpose(-1, -2))
        assert (torch.linalg.eigvalsh(out.covariance) > 0).all()
        if out.shared_factor is not None:
            rank = out.shared_factor.shape[1]
            assert out.shared_factor.shape == (n, rank, 3, 3) and rank >= 1
        for name, value in vars(out).items():
            if value is None:
                continue
            assert torch.isfinite(value).all(), name
            assert value.dtype == torch.float64, name

    def test_gradients_reach_every_parameter(self, model: ModelConfig) -> None:
        batch, _ = random_batch(history=self.history, pbc=True)
        sim = self.make_simulator(model).double()
        n = batch[keys.POS_HISTORY].shape[0]
        out = variant_outputs(sim, batch, *score_inputs(n))
        (out.nll.mean() + out.score.pow(2).mean()).backward()
        for name, parameter in sim.named_parameters():
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().max() > 0, name

    @pytest.mark.parametrize("pbc", [False, True], ids=["open", "periodic"])
    def test_batch_of_two_equals_each_alone(self, simulator: Simulator, pbc: bool) -> None:
        batch, _ = random_batch(n_systems=2, history=self.history, pbc=pbc, triclinic=pbc)
        noise, sigma = score_inputs(batch[keys.POS_HISTORY].shape[0])
        with torch.no_grad():
            together = variant_outputs(simulator, batch, noise, sigma)
            ptr = batch.ptr.tolist()
            for g in range(2):
                beads = slice(ptr[g], ptr[g + 1])
                alone = variant_outputs(simulator, Batch.from_data_list([batch.get_example(g)]),
                                        noise[beads], sigma[beads])
                for name in self.compared:
                    torch.testing.assert_close(getattr(alone, name),
                                               getattr(together, name)[beads],
                                               rtol=0, atol=1e-10, msg=name)

    @pytest.mark.parametrize("pbc", [False, True], ids=["open", "periodic"])
    def test_translation_invariance(self, simulator: Simulator, pbc: bool) -> None:
        batch, _ = random_batch(history=self.history, pbc=pbc, triclinic=pbc)
        noise, sigma = score_inputs(batch[keys.POS_HISTORY].shape[0])
        shift = torch.tensor([3.1, -7.4, 12.2], dtype=torch.float64)
        eye = torch.eye(3, dtype=torch.float64)
        with torch.no_grad():
            reference = variant_outputs(simulator, batch, noise, sigma)
            moved = variant_outputs(simulator, transform_batch(batch, eye, shift), noise, sigma)
        for name in self.compared:
            assert relative_error(getattr(moved, name), getattr(reference, name)) \
                < self.tolerance, name

    @pytest.mark.parametrize("pbc", [False, True], ids=["open", "periodic"])
    def test_permutation_equivariance(self, simulator: Simulator, pbc: bool) -> None:
        batch, _ = random_batch(history=self.history, pbc=pbc, triclinic=pbc)
        generator = torch.Generator().manual_seed(6)
        ptr = batch.ptr.tolist()
        perm = torch.cat([start + torch.randperm(stop - start, generator=generator)
                          for start, stop in zip(ptr[:-1], ptr[1:], strict=True)])
        noise, sigma = score_inputs(perm.numel())
        with torch.no_grad():
            reference = variant_outputs(simulator, batch, noise, sigma)
            moved = variant_outputs(simulator, permute_batch(batch, perm), noise[perm],
                                    sigma[perm])
        for name in self.compared:
            assert relative_error(getattr(moved, name), getattr(reference, name)[perm]) \
                < self.tolerance, name

    @pytest.mark.parametrize("case", EQUIVARIANCE_CASES)
    def test_e3_equivariance_as_declared(
        self, simulator: Simulator, variant: Variant, case: str
    ) -> None:
        """Rotations + reflections + translations of every output and of a refined rollout
        (:func:`~eqcg.simulation.equivariance.measure_equivariance`): pass if the variant claims
        equivariance, fail (but stay permutation equivariant) if it does not."""
        spec = EQUIVARIANCE_CASES[case]
        batch, _ = random_batch(history=self.history, pbc=spec["pbc"],
                                triclinic=spec["triclinic"])
        if not spec["rotate_box"]:
            cube = 15.0 * torch.eye(3, dtype=torch.float64)
            batch[keys.BOX] = cube.expand(batch.num_graphs, 3, 3)
        errors = measure_equivariance(simulator, batch, n_trials=2,
                                      rotate_box=spec["rotate_box"])
        if variant.equivariant:
            assert max(vars(errors).values()) < self.tolerance, errors
        else:
            assert errors.mean > 1e-3 and errors.score > 1e-3 and errors.rollout > 1e-4, errors
            assert errors.permutation < self.tolerance, errors

    def test_save_and_reload(self, model: ModelConfig, tmp_path: Path) -> None:
        """A checkpoint rebuilds the same networks (config, options and weights)."""
        sim = self.make_simulator(model).eval()
        config = Config(data=DataConfig(history=self.history),
                        model=check_variant(model, "test"), score=ScoreConfig(n_levels=3))
        path = tmp_path / "model.pt"
        save_checkpoint(path, model_state(sim, config, RunMetadata()))
        reloaded, stored = build_simulator(load_checkpoint(path), str(path))
        assert check_variant(stored.model, str(path)) == config.model
        batch, _ = random_batch(history=self.history, pbc=True, dtype=torch.float32)
        noise, sigma = (t.float() for t in score_inputs(batch[keys.POS_HISTORY].shape[0]))
        with torch.no_grad():
            before = variant_outputs(sim, batch, noise, sigma)
            after = variant_outputs(reloaded.eval(), batch, noise, sigma)
        for name in self.compared:
            torch.testing.assert_close(getattr(after, name), getattr(before, name),
                                       rtol=0, atol=0, msg=name)

    def test_short_rollout(self, simulator: Simulator) -> None:
        batch, _ = random_batch(history=self.history, pbc=True, triclinic=True)
        steps = 3
        result = rollout(simulator, batch, steps, RolloutConfig(refine_levels=2),
                         show_progress=False)
        n = batch[keys.POS_HISTORY].shape[0]
        assert result.positions.shape == (steps + 1, n, 3)
        assert torch.isfinite(result.positions).all()
        torch.testing.assert_close(result.positions[0], batch[keys.POS_HISTORY][:, -1])
