"""torchrun + DDP on CPU (gloo, 2 processes) matches single-process training."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import torch

from eqcg import load_dataset, write_dataset
from eqcg.commands.cli import main
from eqcg.config import load_config
from eqcg.testing import random_system
from eqcg.training.trainer import train

OVERRIDES = [  # random systems record no temperature
    "model.temperature_input=false", "model.embed_dim=8", "model.latent_dim=16",
    "model.message_passing_steps=1",
    "model.score_message_passing_steps=1", "model.radius=5.0", "data.cg_level=3",
    "data.whole_molecule_max_atoms=1", "data.split=[1.0, 0.0, 0.0]", "train.max_steps=4",
    "train.val_every=4", "train.val_windows=4", "train.noise_end=0.0", "train.score_weight=0.0",
]

RANK_SCRIPT = """
import os, sys, torch
from eqcg.config import load_config
from eqcg.training.trainer import train
config = load_config(sys.argv[1], sys.argv[4:])
result = train(config, sys.argv[2], sys.argv[3], device="cpu", show_progress=False)
torch.save(result.simulator.state_dict(), f"{sys.argv[3]}/rank{os.environ['RANK']}.pt")
"""


def test_two_gloo_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    # equal-sized systems: the mean over a rank's beads then averages to the global mean
    systems = [random_system(f"s{i}", n_frames=10, seed=i) for i in range(4)]
    write_dataset(tmp_path / "data", systems)
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(RANK_SCRIPT))
    config = "configs/electrolyte_baseline.yaml"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), config, str(tmp_path / "data"), str(tmp_path / "ddp"),
           *OVERRIDES, "train.batch_size=2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "ddp/rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp/rank1.pt", weights_only=True)
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    assert (tmp_path / "ddp/checkpoints/last.pt").exists()

    single = train(load_config(config, OVERRIDES + ["train.batch_size=4"]), tmp_path / "data",
                   tmp_path / "single", device="cpu", show_progress=False)
    initial = train(load_config(config, OVERRIDES + ["train.max_steps=1"]), tmp_path / "data",
                    tmp_path / "one", stop_after=0, device="cpu", show_progress=False)
    moved = 0
    for name, value in single.simulator.state_dict().items():
        torch.testing.assert_close(rank0[name], value, rtol=1e-4, atol=1e-5, msg=name)
        moved += int(not torch.equal(value, initial.simulator.state_dict()[name]))
    assert moved > 10  # the comparison is between trained parameters, not initial ones

    # rollouts split across ranks equal the single-process rollout (deterministic, no noise)
    rollout = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "eqcg", "rollout", str(tmp_path / "single"), "--data", str(tmp_path / "data"),
               "--systems", "s0", "s1", "s2", "--steps", "3", "--deterministic", "--no-refine",
               "--device", "cpu", "--out", str(tmp_path / "ddp-rollout")]
    done = subprocess.run(rollout, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["rollout", str(tmp_path / "single"), "--data", str(tmp_path / "data"),
                 "--systems", "s0", "s1", "s2", "--steps", "3", "--deterministic", "--no-refine",
                 "--device", "cpu", "--out", str(tmp_path / "one-rollout")]) == 0
    with load_dataset(tmp_path / "ddp-rollout/rollout.h5") as split, \
            load_dataset(tmp_path / "one-rollout/rollout.h5") as whole:
        assert split.names == whole.names == ["s0", "s1", "s2"]
        for a, b in zip(split, whole):
            np.testing.assert_allclose(a.positions[()], b.positions[()], rtol=0, atol=1e-5)
