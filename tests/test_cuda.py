"""What changes on CUDA, checked on every device there is: a resumed rollout continues the
device's noise stream, training under DDP through the device's backend (NCCL on CUDA, gloo on
the CPU) equals training without it, and the equivariant model is equivariant in float32 and
float64. The CPU runs keep these tests from rotting where no GPU is;
``benchmarks/gpu_check.sh`` runs them on a GPU. Data are synthetic: no LAMMPS needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from eqcg import load_dataset, write_dataset
from eqcg.config import ModelConfig, ScoreConfig, load_config
from eqcg.data.rollout_file import COMPLETE, ROLLOUT_FILE, read_rollout_state, rollout_status
from eqcg.models.simulator import Simulator
from eqcg.runtime.interrupt import Interrupted
from eqcg.simulation.equivariance import measure_equivariance
from eqcg.simulation.runner import run_rollout
from eqcg.testing import random_batch, random_system
from eqcg.training.trainer import train

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA absent")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
CONFIG = "configs/electrolyte_baseline.yaml"
OVERRIDES = [  # random systems record no temperature
    "model.temperature_input=false", "model.embed_dim=8", "model.latent_dim=16",
    "model.message_passing_steps=1",
    "model.score_message_passing_steps=1", "model.radius=5.0", "data.cg_level=3",
    "data.whole_molecule_max_atoms=1", "data.split=[1.0, 0.0, 0.0]", "train.max_steps=4",
    "train.val_every=4", "train.val_windows=4", "train.noise_end=0.0", "train.batch_size=4",
]
SYSTEMS = ["s0", "s1"]
pytestmark = pytest.mark.filterwarnings("ignore:no validation systems")
# one process, yet DDP around the loss module: eqcg wraps only when world > 1
RANK_SCRIPT = """
import sys, torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from eqcg.config import load_config
from eqcg.runtime.distributed import DistributedContext
from eqcg.training import trainer

class AlwaysWrapped(DistributedContext):
    def wrap(self, module):
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

def context(device):
    device = torch.device("cuda", 0) if device.type == "cuda" else device
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return AlwaysWrapped(0, 1, device)

trainer.distributed_context = context
config = load_config(sys.argv[1], sys.argv[5:])
result = trainer.train(config, sys.argv[2], sys.argv[3], device=sys.argv[4],
                       show_progress=False)
assert dist.get_backend() == ("nccl" if sys.argv[4] == "cuda" else "gloo")
torch.save(result.simulator.state_dict(), f"{sys.argv[3]}/ddp.pt")
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda") / "data"
    write_dataset(out, [random_system(f"s{i}", n_frames=14, seed=i) for i in range(4)])
    return out


@pytest.fixture(scope="module")
def run_dir(data):
    out = data.parent / "run"
    train(load_config(CONFIG, OVERRIDES), data, out, device="cpu", show_progress=False)
    return out


def frames(path):
    with load_dataset(path) as rollout:
        return {s.name: s.positions[()] for s in rollout}


@pytest.mark.parametrize("device", DEVICES)
def test_resumed_rollout_continues_the_device_noise_stream(
    device, data, run_dir, tmp_path, monkeypatch
):
    options = {"systems": SYSTEMS, "dtype": torch.float64, "show_progress": False,
               "flush_seconds": 0.0, "device": device, "save_every": 2}
    run_rollout(run_dir, data, tmp_path / "straight", 9, **options)
    predict, calls = Simulator.predict, []

    def interrupted_predict(self, *args, **kwargs):  # Ctrl-C during step 6's prediction
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "predict", interrupted_predict)
    split = tmp_path / "split"
    with pytest.raises(Interrupted):
        run_rollout(run_dir, data, split, 9, **options)
    monkeypatch.setattr(Simulator, "predict", predict)
    _, state = read_rollout_state(split / ROLLOUT_FILE)
    fresh = torch.Generator(device=device).manual_seed(0).get_state().numpy()
    assert state.step == 4 and state.rng_state.shape == fresh.shape  # the device's generator
    assert not np.array_equal(state.rng_state, fresh)  # ... after four steps of draws

    run_rollout(run_dir, data, split, 9, resume=True, **options)
    assert rollout_status(split) == COMPLETE
    resumed, straight = frames(split / ROLLOUT_FILE), frames(tmp_path / "straight" / ROLLOUT_FILE)
    assert resumed.keys() == straight.keys()
    for name, positions in straight.items():
        assert positions.shape[0] == 6  # steps 0, 2, 4, 6, 8, 9
        # CUDA's atomic adds need not repeat bit for bit; a wrong noise stream moves beads by ~1
        np.testing.assert_allclose(resumed[name], positions, rtol=0,
                                   atol=0 if device == "cpu" else 1e-8, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_ddp_training_on_the_device_backend_equals_plain_training(device, data, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(RANK_SCRIPT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(script), CONFIG, str(data), str(tmp_path / "ddp"), device, *OVERRIDES]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    wrapped = torch.load(tmp_path / "ddp/ddp.pt", weights_only=True)
    plain = train(load_config(CONFIG, OVERRIDES), data, tmp_path / "plain", device=device,
                  show_progress=False).simulator.state_dict()
    initial = train(load_config(CONFIG, OVERRIDES), data, tmp_path / "initial", stop_after=0,
                    device=device, show_progress=False).simulator.state_dict()
    assert sum(not torch.equal(plain[k], initial[k]) for k in plain) > 10  # trained, not initial
    for name, value in plain.items():
        torch.testing.assert_close(wrapped[name].to(value), value, rtol=1e-4, atol=1e-5,
                                   msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-3), (torch.float64, 1e-9)])
def test_equivariant_model_is_equivariant_on_the_device(device, dtype, tolerance):
    torch.manual_seed(0)
    batch, vocabulary = random_batch(history=4, pbc=True, triclinic=True, dtype=dtype)
    model = ModelConfig(variant="equivariant", covariance="full", radius=5.0, embed_dim=8,
                        latent_dim=16, message_passing_steps=2, score_message_passing_steps=2,
                        options={"equivariant": {"vector_channels": 8, "lmax": 2,
                                                 "radial_basis": 4}})
    sim = Simulator(model, ScoreConfig(sigma_begin=0.5), vocabulary, history=4,
                    velocity_scale=0.7, acceleration_scale=0.05)
    sim = sim.to(device=device, dtype=dtype).eval()
    errors = measure_equivariance(sim, batch.to(device), n_trials=2)
    worst = max(vars(errors).items(), key=lambda item: item[1])
    assert worst[1] < tolerance, (device, dtype, vars(errors))
