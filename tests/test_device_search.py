"""The device neighbour search: the pairs of a fresh vesin search in fixed slots, rollouts equal
to those of the Verlet list for both variants (the padding honoured by each network), and the
cases it refuses or stops at."""

from __future__ import annotations

import pytest
import torch

from eqcg import keys
from eqcg.config import ModelConfig, RolloutConfig, ScoreConfig
from eqcg.errors import ConfigError
from eqcg.graphs.neighbors import DeviceNeighbors, _without, radius_edges
from eqcg.models.gaussian import gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.simulation import rollout as rollout_module
from eqcg.simulation.rollout import RolloutFailure, rollout
from eqcg.testing import random_batch

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("pbc, triclinic", [(True, True), (True, False), (False, False)])
def test_device_search_fills_its_slots_with_the_pairs_of_a_fresh_search(pbc, triclinic):
    batch, _ = random_batch(n_systems=3, history=2, pbc=pbc, triclinic=triclinic)
    pos, box, ptr = batch[keys.POS_HISTORY][:, -1], batch[keys.BOX], batch.ptr
    periodic, bonds = batch[keys.PBC], batch[keys.CG_BOND_INDEX]
    search = DeviceNeighbors(4.0, capacity_factor=1.5)
    generator = torch.Generator().manual_seed(0)
    for move in range(3):  # the first positions size the slots; later ones reuse them
        moved = pos + 0.3 * move * torch.randn(pos.shape, generator=generator, dtype=pos.dtype)
        index, shift, mask = search.radius_pairs(moved, box, periodic, ptr, exclude=bonds)
        fresh_index, fresh_shift = _without(*radius_edges(moved, box, periodic, ptr, 4.0),
                                            bonds, pos.shape[0])
        n = fresh_index.shape[1]
        assert index.shape[1] == search.capacity >= n > 0
        assert search.capacity <= sum(int(c) * (int(c) - 1) for c in ptr.diff())
        assert bool(mask[:n].all()) and not bool(mask[n:].any())
        assert torch.equal(index[:, :n], fresh_index)
        torch.testing.assert_close(shift[:n], fresh_shift, rtol=0, atol=1e-12)
    assert not bool(search.overflow)


def simulator(variant: str) -> tuple[Simulator, object]:
    torch.manual_seed(0)
    batch, vocabulary = random_batch(n_systems=2, history=4, triclinic=True)
    options = ({"equivariant": {"vector_channels": 8, "lmax": 1, "radial_basis": 4}}
               if variant == "equivariant" else {})
    model = ModelConfig(variant=variant, covariance="full" if variant == "equivariant"
                        else "diagonal", radius=5.0, embed_dim=8, latent_dim=16,
                        message_passing_steps=2, score_message_passing_steps=2, options=options)
    sim = Simulator(model, ScoreConfig(sigma_begin=0.5), vocabulary, history=4,
                    velocity_scale=0.7, acceleration_scale=0.05)
    return sim.double().eval(), batch


@pytest.mark.parametrize("variant", ["equivariant", "baseline"])
def test_a_rollout_with_the_device_search_equals_one_with_the_verlet_list(variant):
    """Refined, with the excluded-volume pass: every consumer of the padded edges leaves the
    padding out (the baseline sums edge latents, the equivariant network its messages)."""
    sim, batch = simulator(variant)
    refinement = RolloutConfig(refine_levels=3, schedule="geometric", excluded_volume=1.0)
    runs = {}
    for search in ("verlet", "device"):
        settings = RolloutConfig(**{**vars(refinement), "neighbor_search": search})
        runs[search] = rollout(sim, batch, 4, settings, show_progress=False,
                               noise=gaussian_noise(torch.Generator().manual_seed(3))).positions
    torch.testing.assert_close(runs["device"], runs["verlet"], rtol=0, atol=1e-10)
    assert float((runs["verlet"][-1] - runs["verlet"][0]).norm()) > 0.1  # the rollout moved


def test_a_cut_off_beyond_half_the_cell_is_refused():
    batch, _ = random_batch(n_systems=1, history=2, triclinic=True)  # narrowest width 13.6
    with pytest.raises(ConfigError, match="not below half the narrowest width .13.59"):
        DeviceNeighbors(7.0).radius_pairs(batch[keys.POS_HISTORY][:, -1], batch[keys.BOX],
                                          batch[keys.PBC], batch.ptr)
    with pytest.raises(ConfigError, match="hold 90 bead pairs .over 50"):
        DeviceNeighbors(4.0, max_pairs=50).radius_pairs(
            batch[keys.POS_HISTORY][:, -1], batch[keys.BOX], batch[keys.PBC], batch.ptr)


def test_a_rollout_that_outgrows_the_slots_stops_with_its_frames(monkeypatch):
    class Tight(DeviceNeighbors):
        def __init__(self, cutoff: float):
            super().__init__(cutoff, capacity_factor=1.0)

        def _setup(self, *args, **kwargs):
            super()._setup(*args, **kwargs)
            self.capacity -= 1  # one slot short from the first step on

    monkeypatch.setattr(rollout_module, "DeviceNeighbors", Tight)
    sim, batch = simulator("equivariant")
    with pytest.raises(RolloutFailure, match="more pairs within the cut-off than its .* at "
                                             "step 1 .noticed at step 2.") as caught:
        rollout(sim, batch, 5, RolloutConfig(refine=False, neighbor_search="device"),
                save_every=2, show_progress=False)
    assert caught.value.result.steps.tolist() == [0] and not caught.value.blown_up
