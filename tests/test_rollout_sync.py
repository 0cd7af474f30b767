"""Host syncs of the rollout loop: the Verlet rebuild decision costs none of its own, and with
the device neighbour search the loop reads the device only at its save points and guards.

Between rebuilds a neighbour-list query reads one pair of numbers from the device (the edge
count and the rebuild flag); the loop itself syncs only at save points. Counted by
:class:`~eqcg.testing.host_syncs.HostSyncCounter` on the CPU and by
``torch.cuda.set_sync_debug_mode`` on CUDA. With the device neighbour search nothing else syncs
either: the Gaussian head's matrix exponential and square root read nothing on the host.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from eqcg import keys
from eqcg.config import ModelConfig, RolloutConfig, ScoreConfig
from eqcg.graphs.neighbors import VerletList, radius_edges
from eqcg.models.simulator import Simulator
from eqcg.simulation import rollout as rollout_module
from eqcg.simulation.rollout import rollout
from eqcg.testing import random_batch
from eqcg.testing.host_syncs import HostSync, HostSyncCounter

pytestmark = pytest.mark.usefixtures("single_thread")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA absent"))]
PACKAGE = Path(rollout_module.__file__).resolve().parents[1]
LEVELS = 4  # refinement levels: 1 + LEVELS network calls per step
CALLS_PER_STEP = 1 + LEVELS


class CudaSyncs:
    """The syncs ``torch.cuda.set_sync_debug_mode("warn")`` reports, as :class:`HostSync`."""

    def __init__(self, caught: list[warnings.WarningMessage]):
        self._caught = caught

    @property
    def syncs(self) -> list[HostSync]:
        return [HostSync("cuda", _site(w.filename, w.lineno)) for w in self._caught
                if "synchronizing CUDA operation" in str(w.message)]


def _site(filename: str, line: int) -> str:
    path = Path(filename).resolve()
    return f"eqcg/{path.relative_to(PACKAGE)}:{line}" if path.is_relative_to(PACKAGE) else ""


@contextmanager
def counting_syncs(device: str) -> Iterator[HostSyncCounter | CudaSyncs]:
    """Record host syncs: CUDA's own report on CUDA, the CPU-side counter elsewhere."""
    if device != "cuda":
        with HostSyncCounter() as counter:
            yield counter
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield CudaSyncs(caught)
        finally:
            torch.cuda.set_sync_debug_mode(0)


def small_simulator(device: str) -> tuple[Simulator, object]:
    torch.manual_seed(0)
    batch, vocabulary = random_batch(n_systems=2, history=4)
    model = ModelConfig(variant="equivariant", covariance="full", radius=5.0, embed_dim=8,
                        latent_dim=16, message_passing_steps=2, score_message_passing_steps=2,
                        options={"equivariant": {"vector_channels": 8, "lmax": 1,
                                                 "radial_basis": 4}})
    sim = Simulator(model, ScoreConfig(sigma_begin=0.5), vocabulary, history=4,
                    velocity_scale=0.7, acceleration_scale=0.05)
    return sim.double().eval().to(device), batch.to(device)


def seeded_noise(device: str):
    generator = torch.Generator(device=device).manual_seed(0)
    return lambda like: torch.randn(like.shape, generator=generator, dtype=like.dtype,
                                    device=like.device)


def in_file(syncs: list[HostSync], pattern: str) -> int:
    return sum(bool(re.match(pattern, s.site)) for s in syncs)


N_STEPS, SAVE_EVERY = 7, 3  # a refined rollout saving at steps 3 and 6


def syncs_per_step(sim: Simulator, batch, device: str, search: str, monkeypatch
                   ) -> list[list[HostSync]]:
    """The syncs of each step of an ``N_STEPS``-step refined rollout with ``search`` (from one
    dynamics prediction to the next; the last step's include gathering the result)."""
    starts: list[int] = []
    predict = sim.predict
    with counting_syncs(device) as counter:
        def marked(*args, **kwargs):
            starts.append(len(counter.syncs))
            return predict(*args, **kwargs)

        monkeypatch.setattr(sim, "predict", marked)
        rollout(sim, batch, N_STEPS, RolloutConfig(refine_levels=LEVELS, schedule="geometric",
                                                   refine_start="spread", neighbor_search=search),
                save_every=SAVE_EVERY, show_progress=False, noise=seeded_noise(device))
        starts.append(len(counter.syncs))
    return [counter.syncs[a:b] for a, b in zip(starts[:-1], starts[1:])]


@pytest.mark.parametrize("device", DEVICES)
def test_verlet_list_reads_the_device_once_per_call_between_rebuilds(device):
    batch, _ = random_batch(n_systems=3, history=2, triclinic=True)
    batch = batch.to(device)
    pos = batch[keys.POS_HISTORY][:, -1]
    box, pbc, ptr = batch[keys.BOX], batch[keys.PBC], batch.ptr
    cutoff, skin = 4.0, 1.0
    verlet = VerletList(cutoff, skin)
    verlet(pos, box, pbc, ptr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):  # moves of at most 0.45 skin: no rebuild, one read each, exact edges
        step = torch.randn(pos.shape, generator=generator, dtype=pos.dtype).to(device)
        moved = pos + 0.45 * skin * step / step.norm(dim=-1, keepdim=True).max()
        with counting_syncs(device) as counter:
            index, shift = verlet(moved, box, pbc, ptr)
        assert len(counter.syncs) == 1, counter.syncs
        fresh_index, fresh_shift = radius_edges(moved, box, pbc, ptr, cutoff)
        assert torch.equal(index, fresh_index) and torch.equal(shift, fresh_shift)
    assert verlet.builds == 1
    far = pos.clone()
    far[3, 0] += 0.6 * skin
    index, _ = verlet(far, box, pbc, ptr)
    assert verlet.builds == 2
    assert torch.equal(index, radius_edges(far, box, pbc, ptr, cutoff)[0])


@pytest.mark.parametrize("device", DEVICES)
def test_rollout_loop_syncs_only_at_save_points_and_for_edge_counts(device, monkeypatch):
    """Steps 2-6 of a refined 7-step rollout with one neighbour list for all (a wide skin): no
    sync from the loop (eqcg/simulate) but at save points (steps 3 and 6), and one read per
    network call from the neighbour list (the decision adds none; it used to add three). Step 1
    builds the list; step 7 also gathers the result."""
    sim, batch = small_simulator(device)
    monkeypatch.setattr(rollout_module, "NEIGHBOR_SKIN", 3.0)
    lists: list[VerletList] = []

    class Recorded(VerletList):
        def __init__(self, cutoff: float, skin: float):
            super().__init__(cutoff, skin)
            lists.append(self)

    monkeypatch.setattr(rollout_module, "VerletList", Recorded)
    per_step = syncs_per_step(sim, batch, device, "verlet", monkeypatch)
    assert lists[0].builds == 1  # at step 1: later steps reuse the list
    for step in range(2, N_STEPS):
        syncs = per_step[step - 1]
        where = Counter(s.site.split(":")[0] for s in syncs)
        assert in_file(syncs, r"eqcg/graphs/") == CALLS_PER_STEP, (step, where)
        saved = int(step % SAVE_EVERY == 0)
        assert in_file(syncs, r"eqcg/simulation/") == saved, (step, where)


@pytest.mark.parametrize("device", DEVICES)
def test_rollout_loop_with_the_device_search_reads_nothing_between_its_checks(device,
                                                                              monkeypatch):
    """The same refined 7-step rollout with ``neighbor_search: device``: after step 1 (which
    lists the pairs and sizes the slots) nothing syncs, the networks and their full-covariance
    Gaussian head included (eqcg.models.gaussian's matrix functions), but the loop's one read at
    each save point (steps 3 and 6): zero host syncs per step in between."""
    sim, batch = small_simulator(device)
    per_step = syncs_per_step(sim, batch, device, "device", monkeypatch)
    assert in_file(per_step[0], r"eqcg/graphs/") > 0  # the setup, at step 1
    for step in range(2, N_STEPS):
        syncs = per_step[step - 1]
        where = Counter(s.site for s in syncs)
        saved = int(step % SAVE_EVERY == 0)  # the loop's one read at a save point
        assert len(syncs) == saved and in_file(syncs, r"eqcg/simulation/") == saved, (step, where)
