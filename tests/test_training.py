"""Training on real (tiny) LAMMPS data: it learns, resumes exactly, and its rollouts load."""

import csv
import subprocess
import sys

import mdtraj
import numpy as np
import pytest
import torch

from eqcg import load_dataset
from eqcg.commands.cli import main
from eqcg.config import load_config
from eqcg.data.rollout_file import ROLLOUT_FILE
from eqcg.errors import CheckpointError, OutputError
from eqcg.models.checkpoint import load_checkpoint, load_simulator
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.log_every=10", "train.val_windows=32"]


def polymer_config(*overrides):
    return load_config("configs/polymer_baseline.yaml", SMALL + list(overrides))


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained_polymer(polymer_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "poly"
    config = polymer_config("train.max_steps=300", "train.val_every=300", "train.lr=2e-3")
    result = train(config, polymer_data, run_dir, show_progress=False)
    return run_dir, result


def test_training_lowers_validation_nll_and_beats_constant_velocity(trained_polymer):
    run_dir, result = trained_polymer
    val = [row for row in read_metrics(run_dir) if row["split"] == "val"]
    first, last = float(val[0]["nll"]), float(val[-1]["nll"])
    assert val[0]["step"] == "0" and val[-1]["step"] == "300"
    assert last < first - 0.5, (first, last)
    # the predicted mean beats constant velocity (zero acceleration) on held-out systems
    assert result.last_val["mse"] < 0.9 * result.last_val["mse_zero"]
    for name in ("config.yaml", "run.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run_dir / name).exists()
    assert list((run_dir / "tensorboard").iterdir())


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(polymer_data, tmp_path):
    overrides = ("train.max_steps=12", "train.val_every=6", "train.checkpoint_every=6",
                 "train.noise_end=0.05")
    train(polymer_config(*overrides), polymer_data, tmp_path / "straight", show_progress=False)
    train(polymer_config(*overrides), polymer_data, tmp_path / "split", stop_after=6,
          show_progress=False)
    with pytest.raises(OutputError, match="already holds a run"):
        train(polymer_config(*overrides), polymer_data, tmp_path / "split", show_progress=False)
    train(polymer_config(*overrides), polymer_data, tmp_path / "split", resume=True,
          show_progress=False)
    straight = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")
    resumed = load_checkpoint(tmp_path / "split/checkpoints/last.pt")
    assert straight["step"] == resumed["step"] == 12
    for name, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=0, atol=0, msg=name)
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "split") if r["split"] == "val"]
    assert steps == [0, 6, 12]  # the log holds no duplicate rows after resuming


def test_corrupt_checkpoint_is_a_clear_error(trained_polymer, tmp_path):
    run_dir, _ = trained_polymer
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run_dir / "checkpoints/best.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.pt: corrupt or unreadable"):
        load_simulator(broken)


@pytest.mark.parametrize("refine", [True, False])
def test_rollout_writes_trajectories_mdtraj_loads(trained_polymer, polymer_data, tmp_path, refine):
    run_dir, _ = trained_polymer
    out = tmp_path / "rollout"
    args = ["rollout", str(run_dir), "--data", str(polymer_data), "--steps", "6",
            "--save-every", "2", "--out", str(out), "--levels", "2", "--langevin-steps", "2"]
    assert main(args + ([] if refine else ["--no-refine"])) == 0
    with load_dataset(out / ROLLOUT_FILE) as rollout, load_dataset(polymer_data) as reference:
        system = rollout.systems[0]
        assert system.n_frames == 4  # start + steps 2, 4, 6
        assert system.attrs["refine"] is refine
        interval = reference[system.name].frame_interval
        np.testing.assert_allclose(np.diff(system.time), 2 * interval)
        traj = mdtraj.load(str(out / f"{system.name}.dcd"), top=str(out / f"{system.name}.pdb"))
        assert traj.n_frames == 4 and traj.n_atoms == system.n_atoms
        assert traj.topology.n_bonds == system.topology.n_bonds
        np.testing.assert_allclose(traj.xyz * 10, system.positions[()], atol=1e-3)
    if refine:  # the example script reads the same rollout into mdtraj and ASE
        done = subprocess.run([sys.executable, "examples/load_rollout.py", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"mdtraj sees 4 frames of {system.n_atoms} beads" in done.stdout
        assert (out / f"{system.name}.extxyz").exists()


def test_rollout_on_electrolyte_data(electrolyte_data, tmp_path):
    config = load_config("configs/electrolyte_baseline.yaml",
                         SMALL + ["train.max_steps=4", "train.val_every=4",
                                  "data.split=[0.5, 0.5, 0.0]"])
    train(config, electrolyte_data, tmp_path / "run", show_progress=False)
    out = tmp_path / "rollout"
    with load_dataset(electrolyte_data) as data:  # (no test split: name both boxes)
        names = data.names
    for refine in (["--levels", "1", "--langevin-steps", "1"], ["--no-refine", "--overwrite"]):
        assert main(["rollout", str(tmp_path / "run"), "--data", str(electrolyte_data),
                     "--steps", "3", "--out", str(out), "--deterministic", "--systems", *names,
                     *refine]) == 0
        with load_dataset(out / ROLLOUT_FILE) as rollout:
            assert len(rollout) == 2 and all(s.n_frames == 4 and s.pbc for s in rollout)
            name = rollout.names[0]
            traj = mdtraj.load(str(out / f"{name}.dcd"), top=str(out / f"{name}.pdb"))
            assert traj.n_frames == 4 and traj.unitcell_vectors is not None


def test_bead_budget_keeps_the_longest_prefix_within_it_and_at_least_one_window():
    from eqcg.training.trainer import within_bead_budget

    beads = np.array([100, 40, 40, 3000, 10, 60])
    drawn = np.array([1, 2, 5, 0, 4])
    for budget in range(0, 400, 7):
        kept = within_bead_budget(drawn, beads, budget)
        if budget == 0:
            assert kept.tolist() == drawn.tolist()
            continue
        expected = 1  # brute force: the largest n whose first n windows fit, at least 1
        for n in range(1, len(drawn) + 1):
            if beads[drawn[:n]].sum() <= budget:
                expected = n
        assert kept.tolist() == drawn[:expected].tolist()
    assert within_bead_budget(np.array([3]), beads, 10).tolist() == [3]  # too big: alone
