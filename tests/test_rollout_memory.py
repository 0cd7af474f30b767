"""A rollout's memory stays flat in the number of steps when it does not keep its frames."""

import gc
import warnings

import torch

from eqcg.config import ModelConfig, RolloutConfig, ScoreConfig
from eqcg.models.simulator import Simulator
from eqcg.simulation.rollout import rollout
from eqcg.testing import random_batch


def live_tensor_bytes() -> int:
    """Bytes of the storages of every tensor alive in this process (counted exactly, unlike the
    resident set size, which the allocator rounds and keeps)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # gc also holds torch's deprecated aliases
        # type(), not isinstance: gc also holds weak proxies (torch.compile's), which raise
        # ReferenceError on isinstance once their referent is gone
        return sum(o.untyped_storage().nbytes() for o in gc.get_objects()
                   if issubclass(type(o), torch.Tensor))


def test_live_memory_does_not_grow_between_step_100_and_1000(single_thread):
    torch.manual_seed(0)
    batch, vocabulary = random_batch(n_systems=1, history=2)
    model = ModelConfig(variant="baseline", covariance="diagonal", radius=5.0, embed_dim=4,
                        latent_dim=8, message_passing_steps=1, score_message_passing_steps=1)
    sim = Simulator(model, ScoreConfig(sigma_begin=0.5), vocabulary, history=2,
                    acceleration_scale=1e-3).double().eval()
    frame_bytes = batch.num_nodes * 3 * 8
    growth = {}
    for keep in (True, False):
        seen = {}

        def on_save(step, frame, history, seen=seen):
            if step in (100, 1000):
                seen[step] = live_tensor_bytes()

        result = rollout(sim, batch, 1000, RolloutConfig(deterministic=True, refine=False),
                         keep_frames=keep, on_save=on_save, show_progress=False)
        growth[keep] = seen[1000] - seen[100]
        assert result.steps[-1] == 1000
    assert growth[True] >= 900 * frame_bytes  # the control: kept frames are seen
    # streamed: flat, up to a few hundred bytes of tensors other code (and earlier tests) keep
    assert growth[False] < 10 * frame_bytes
