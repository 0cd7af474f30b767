"""The equivariant variant: the shared variant tests (E(3), permutations, gradients, batching,
save/reload, rollout) for each covariance mode, plus the latent irreps transforming under every
symmetry, float32, and its layers.

Checks run in float64 at a relative error of 1e-9: rotations and reflections (with and without
periodic boundaries, the box rotated with the positions), the 48 symmetries of a cubic box
applied to the positions only, translations, and permutations of the beads of each system.
"""

from __future__ import annotations

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from eqcg import keys
from eqcg.config import ModelConfig, ScoreConfig
from eqcg.errors import ConfigError
from eqcg.graphs.neighbors import BOND_EDGE, RADIUS_EDGE
from eqcg.models.equivariant import EquivariantOptions
from eqcg.models.equivariant_layers import ChannelwiseTensorProduct, EdgeEncoding
from eqcg.models.registry import check_variant, get_variant
from eqcg.models.simulator import Simulator
from eqcg.simulation.equivariance import cube_symmetries, random_orthogonal, transform_batch
from eqcg.testing import random_batch
from eqcg.testing.variant_tests import VariantTests, relative_error, variant_outputs

HISTORY = 4
TOLERANCE = 1e-9


pytestmark = pytest.mark.usefixtures("single_thread")


def small_model(covariance: str, lmax: int = 2, shared_noise_rank: int = 0) -> ModelConfig:
    return ModelConfig(
        variant="equivariant", covariance=covariance, radius=5.0, embed_dim=8, latent_dim=16,
        message_passing_steps=2, score_message_passing_steps=2,
        shared_noise_rank=shared_noise_rank,
        options={"equivariant": {"vector_channels": 8, "lmax": lmax, "radial_basis": 4}},
    )


def representation(irreps: o3.Irreps, rotation: torch.Tensor) -> torch.Tensor:
    """``D(R)`` of ``irreps``, accurate in float64 (e3nn builds its Lie-algebra generators in
    the default dtype)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return irreps.D_from_matrix(rotation)
    finally:
        torch.set_default_dtype(default)


def assert_equivariant(
    sim: Simulator, batch: Batch, rotation: torch.Tensor, shift: torch.Tensor, rotate_box: bool
) -> None:
    generator = torch.Generator().manual_seed(1)
    n = batch[keys.POS_HISTORY].shape[0]
    noise = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    sigma = 0.1 + torch.rand(n, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        ref = variant_outputs(sim, batch, noise, sigma)
        moved_batch = transform_batch(batch, rotation, shift, rotate_box)
        moved = variant_outputs(sim, moved_batch, noise @ rotation.T, sigma)
    latent_rep = representation(sim.dynamics.irreps_latent, rotation)
    assert relative_error(moved.mean, ref.mean @ rotation.T) < TOLERANCE
    assert relative_error(moved.covariance, rotation @ ref.covariance @ rotation.T) < TOLERANCE
    assert relative_error(moved.nll, ref.nll) < TOLERANCE
    assert relative_error(moved.latent, ref.latent @ latent_rep.T) < TOLERANCE
    assert relative_error(moved.invariant_latent, ref.invariant_latent) < TOLERANCE
    assert relative_error(moved.score, ref.score @ rotation.T) < TOLERANCE
    if ref.shared_factor is not None:
        assert relative_error(moved.shared_factor,
                              rotation @ ref.shared_factor @ rotation.T) < TOLERANCE


def random_shift(generator: torch.Generator) -> torch.Tensor:
    return 20.0 * torch.randn(3, generator=generator, dtype=torch.float64)


class TestEquivariant(VariantTests):
    history = HISTORY
    tolerance = TOLERANCE

    @pytest.fixture(scope="class",
                    params=[("isotropic", 2), ("full", 2), ("full", 1), ("full", 1, 2)],
                    ids=["isotropic-l2", "full-l2", "full-l1", "full-l1-shared2"])
    @classmethod
    def model(cls, request: pytest.FixtureRequest) -> ModelConfig:
        return small_model(*request.param)

    @pytest.mark.parametrize("improper", [False, True], ids=["rotation", "reflection"])
    def test_open_boundaries(self, simulator: Simulator, improper: bool) -> None:
        batch, _ = random_batch(history=HISTORY, pbc=False, dtype=torch.float64)
        generator = torch.Generator().manual_seed(2)
        for _ in range(2):
            rotation = random_orthogonal(generator, improper)
            assert_equivariant(simulator, batch, rotation, random_shift(generator),
                               rotate_box=False)

    @pytest.mark.parametrize("improper", [False, True], ids=["rotation", "reflection"])
    def test_triclinic_box_rotated_with_positions(
        self, simulator: Simulator, improper: bool
    ) -> None:
        batch, _ = random_batch(history=HISTORY, pbc=True, triclinic=True, dtype=torch.float64)
        generator = torch.Generator().manual_seed(3)
        rotation = random_orthogonal(generator, improper)
        assert_equivariant(simulator, batch, rotation, random_shift(generator), rotate_box=True)

    def test_cubic_box_symmetries_without_rotating_box(self, simulator: Simulator) -> None:
        batch, _ = random_batch(history=HISTORY, pbc=True, dtype=torch.float64)
        batch[keys.BOX] = 15.0 * torch.eye(3, dtype=torch.float64).expand_as(batch[keys.BOX])
        generator = torch.Generator().manual_seed(4)
        symmetries = cube_symmetries()
        assert len({tuple(s.flatten().tolist()) for s in symmetries}) == 48
        for symmetry in symmetries:
            assert_equivariant(simulator, batch, symmetry, random_shift(generator),
                               rotate_box=False)

    def test_periodic_translation(self, simulator: Simulator) -> None:
        batch, _ = random_batch(history=HISTORY, pbc=True, triclinic=True, dtype=torch.float64)
        generator = torch.Generator().manual_seed(5)
        eye = torch.eye(3, dtype=torch.float64)
        assert_equivariant(simulator, batch, eye, random_shift(generator), rotate_box=False)


def test_float32_runs_and_is_equivariant() -> None:
    batch, vocabulary = random_batch(history=HISTORY, pbc=False, dtype=torch.float32)
    torch.manual_seed(0)
    sim = Simulator(small_model("full"), ScoreConfig(), vocabulary, history=HISTORY)
    rotation = -o3.rand_matrix()
    with torch.no_grad():
        pred = sim.predict(batch, batch[keys.POS_HISTORY])
        moved = transform_batch(batch, rotation, torch.zeros(3), rotate_box=False)
        moved_pred = sim.predict(moved, moved[keys.POS_HISTORY])
    assert pred.acceleration.mean.dtype == torch.float32
    assert relative_error(moved_pred.acceleration.mean, pred.acceleration.mean @ rotation.T) < 1e-4
    expected = rotation @ pred.acceleration.covariance @ rotation.T
    assert relative_error(moved_pred.acceleration.covariance, expected) < 1e-4


def test_tensor_product_matches_e3nn() -> None:
    """:class:`ChannelwiseTensorProduct` is e3nn's ``uvu`` tensor product summed per node."""
    irreps_in, irreps_sh = o3.Irreps("3x0e + 3x1o + 2x2e"), o3.Irreps.spherical_harmonics(2)
    target = o3.Irreps("1x0e + 1x1o + 1x2e")
    ours = ChannelwiseTensorProduct(irreps_in, irreps_sh, target).double()
    generator = torch.Generator().manual_seed(7)
    n, n_edges = 5, 17
    edge_index = torch.randint(0, n, (2, n_edges), generator=generator)
    x = torch.randn(n, irreps_in.dim, generator=generator, dtype=torch.float64)
    vec = torch.randn(n_edges, 3, generator=generator, dtype=torch.float64)
    sh = o3.spherical_harmonics(irreps_sh, vec, normalize=True, normalization="component")
    weights = torch.randn(n_edges, ours.weight_numel, generator=generator, dtype=torch.float64)
    # the same paths for e3nn: input block by input block, harmonic by harmonic
    paths = [
        (i, j, ir_out)
        for i, (_, ir_in) in enumerate(irreps_in)
        for j, (_, ir_sh) in enumerate(irreps_sh)
        for ir_out in ir_in * ir_sh
        if ir_out in {ir for _, ir in target}
    ]
    theirs = o3.TensorProduct(
        irreps_in, irreps_sh, o3.Irreps([(irreps_in[i].mul, ir) for i, _, ir in paths]),
        [(i, j, k, "uvu", True) for k, (i, j, _) in enumerate(paths)],
        internal_weights=False, shared_weights=False,
    ).double()
    summed = scatter(theirs(x[edge_index[0]], sh, weights), edge_index[1], dim=0, dim_size=n)
    # our output sorts the paths by irrep (stably)
    blocks = summed.split([irreps_in[i].mul * ir.dim for i, _, ir in paths], dim=-1)
    order = sorted(range(len(paths)), key=lambda k: paths[k][2])
    expected = torch.cat([blocks[k] for k in order], dim=-1)
    actual = ours(x, edge_index, ours.couple(sh), weights)
    sorted_irreps = o3.Irreps([(irreps_in[paths[k][0]].mul, paths[k][2]) for k in order])
    assert ours.irreps_out == sorted_irreps.simplify()
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_envelope_cuts_radius_edges_but_not_bonds() -> None:
    encoding = EdgeEncoding(lmax=1, n_basis=4).double()
    lengths = torch.tensor([0.5, 0.999, 1.2, 1.2], dtype=torch.float64)
    vec = lengths[:, None] * torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64)
    edge_type = torch.tensor([RADIUS_EDGE, RADIUS_EDGE, RADIUS_EDGE, BOND_EDGE])
    _, scalars, envelope = encoding(vec, edge_type)
    assert 0.0 < envelope[0] < 1.0
    assert envelope[1] < 1e-6  # vanishes as (1 - r)^3
    assert envelope[2] == 0.0
    assert envelope[3] == 1.0
    assert torch.isfinite(scalars).all()


def test_registered_with_its_covariances_and_options() -> None:
    variant = get_variant("equivariant")
    assert set(variant.covariances) == {"isotropic", "full"} and variant.covariances[0] == "full"
    assert variant.options is EquivariantOptions and variant.equivariant
    with pytest.raises(ConfigError, match="covariance 'diagonal' is not supported by variant"):
        check_variant(ModelConfig(variant="equivariant", covariance="diagonal"), "test")
    resolved = check_variant(small_model("full", lmax=2), "test")
    assert resolved.options["equivariant"] == {"vector_channels": 8, "lmax": 2,
                                               "radial_basis": 4, "avg_neighbors": 10.0}


@pytest.mark.parametrize("options, message", [
    ({"vector_chanels": 8}, r"c\.yaml: unknown key 'model\.equivariant\.vector_chanels'"),
    ({"lmax": 0}, r"c\.yaml: model\.equivariant\.lmax must be >= 1 .*got 0$"),
    ({"radial_basis": -1}, r"c\.yaml: model\.equivariant\.radial_basis must be > 0"),
    ({"avg_neighbors": "many"}, r"c\.yaml: model\.equivariant\.avg_neighbors must be a number"),
])
def test_bad_options_are_named_with_the_file(options: dict, message: str) -> None:
    model = ModelConfig(variant="equivariant", covariance="full",
                        options={"equivariant": options})
    with pytest.raises(ConfigError, match=message):
        check_variant(model, "c.yaml")
