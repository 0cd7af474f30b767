"""The frame-dependent baseline: the shared variant tests (which expect it to *fail* the E(3)
checks, so the checks can fail), a valid diagonal covariance, and translation invariance without
rotation equivariance output by output."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from e3nn import o3

from eqcg import keys
from eqcg.config import ModelConfig
from eqcg.errors import ConfigError
from eqcg.models.baseline import BaselineDynamics, BaselineScore
from eqcg.models.registry import check_variant, get_variant
from eqcg.models.simulator import Simulator
from eqcg.simulation.equivariance import transform_batch
from eqcg.testing import random_batch
from eqcg.testing.variant_tests import (
    VariantTests,
    relative_error,
    score_inputs,
    variant_outputs,
)

HISTORY = 4
MODEL = ModelConfig(
    variant="baseline", radius=5.0, embed_dim=8, latent_dim=16, message_passing_steps=2,
    score_message_passing_steps=2, mlp_layers=1, min_std=0.05,
)

pytestmark = pytest.mark.usefixtures("single_thread")


class TestBaseline(VariantTests):
    history = HISTORY

    @pytest.fixture(scope="class", params=[0, 1], ids=["independent", "shared1"])
    @classmethod
    def model(cls, request: pytest.FixtureRequest) -> ModelConfig:
        return dataclasses.replace(MODEL, shared_noise_rank=request.param)

    def test_diagonal_covariance_above_the_floor(self, simulator: Simulator) -> None:
        batch, _ = random_batch(history=HISTORY, pbc=True, triclinic=True)
        n = batch[keys.POS_HISTORY].shape[0]
        with torch.no_grad():
            out = variant_outputs(simulator, batch, *score_inputs(n))
        assert out.latent.shape == (n, MODEL.latent_dim)
        assert simulator.dynamics.invariant_dim == MODEL.latent_dim
        cov = out.normalized_covariance
        assert torch.equal(cov, cov.transpose(-1, -2))
        assert torch.equal(cov, torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1)))
        assert (torch.diagonal(cov, dim1=-2, dim2=-1) >= MODEL.min_std**2).all()

    def test_translation_invariant_but_not_rotation_equivariant(
        self, simulator: Simulator
    ) -> None:
        batch, _ = random_batch(history=HISTORY, pbc=True, triclinic=True)
        noise, sigma = score_inputs(batch[keys.POS_HISTORY].shape[0])
        torch.manual_seed(7)
        rotation = o3.rand_matrix(dtype=torch.float64)
        eye = torch.eye(3, dtype=torch.float64)
        shift = torch.tensor([3.1, -7.4, 12.2], dtype=torch.float64)
        with torch.no_grad():
            reference = variant_outputs(simulator, batch, noise, sigma)
            translated = variant_outputs(simulator, transform_batch(batch, eye, shift), noise,
                                         sigma)
            rotated = variant_outputs(simulator, transform_batch(batch, rotation, shift),
                                      noise @ rotation.T, sigma)
        assert relative_error(translated.mean, reference.mean) < 1e-9
        assert relative_error(translated.score, reference.score) < 1e-9
        assert relative_error(rotated.mean, reference.mean @ rotation.T) > 1e-3
        assert relative_error(rotated.score, reference.score @ rotation.T) > 1e-3
        assert relative_error(rotated.covariance,
                              rotation @ reference.covariance @ rotation.T) > 1e-3


def test_registered_without_options_and_rejects_other_covariances() -> None:
    variant = get_variant("baseline")
    assert variant.covariances == ("diagonal",)
    assert variant.options is None and not variant.equivariant
    dynamics, score = variant.networks(MODEL, HISTORY)
    assert isinstance(dynamics, BaselineDynamics) and isinstance(score, BaselineScore)
    with pytest.raises(ConfigError, match="covariance 'isotropic' is not supported by variant"):
        check_variant(ModelConfig(variant="baseline", covariance="isotropic"), "test")
    # another variant's section is checked too, and kept
    with_section = ModelConfig(variant="baseline", options={"equivariant": {"lmax": 2}})
    assert check_variant(with_section, "test").options["equivariant"]["lmax"] == 2
