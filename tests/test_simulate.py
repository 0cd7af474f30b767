"""``eqcg simulate``: roll a run out on a system absent from its dataset (LAMMPS files or a
generated history), and refuse systems the model cannot know."""

import dataclasses
import re

import h5py
import mdtraj
import numpy as np
import pytest

import eqcg
from eqcg.commands.cli import EXIT_BAD_INPUT, main
from eqcg.config import load_config
from eqcg.data.rollout_file import ROLLOUT_FILE, read_rollout_state
from eqcg.errors import DataError
from eqcg.models import checkpoint
from eqcg.systems import polymer
from eqcg.systems.generate import LAMMPS_DIR, run_specs
from eqcg.systems.lammps_runner import LOG_FILE
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.val_windows=16", "train.max_steps=100",
         "train.val_every=100", "train.lr=2e-3"]
SEQUENCE = "AABBBABBAABBABBBABAB"  # 20 beads; the training chains are random sequences
QUICK = ["--steps", "3", "--levels", "2", "--deterministic"]


@pytest.fixture(scope="module")
def run_dir(polymer_data, tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("simulate") / "run"
    train(load_config("configs/polymer_baseline.yaml", SMALL), polymer_data, out,
          show_progress=False)
    return out


@pytest.fixture(scope="module")
def new_chain(tmp_path_factory):
    """A chain no dataset holds, as its LAMMPS data file and a dump of 8 frames 5 tau apart."""
    preset = dataclasses.replace(polymer.get_preset("tiny"), n_frames=8, equil_steps=1000)
    spec = polymer.chain_spec("newchain", SEQUENCE, preset, np.random.default_rng(7))
    out = tmp_path_factory.mktemp("newchain")
    run_specs([spec], out, jobs=1, show_progress=False)
    workdir = out / LAMMPS_DIR / "newchain"
    return workdir / polymer.DATA_FILE, workdir / polymer.DUMP_FILE


def _loads_in_mdtraj(out, name, n_frames):
    traj = mdtraj.load(str(out / f"{name}.dcd"), top=str(out / f"{name}.pdb"))
    assert traj.n_frames == n_frames and traj.n_atoms > 1 and np.isfinite(traj.xyz).all()


@pytest.fixture
def checkpoint_loads(monkeypatch):
    """The checkpoint files read from here on."""
    loads = []
    real_load = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint",
                        lambda path, *a, **k: loads.append(path) or real_load(path, *a, **k))
    return loads


def test_rollout_reads_its_checkpoint_once(run_dir, polymer_data, tmp_path, checkpoint_loads):
    out = tmp_path / "rollout"
    assert main(["rollout", str(run_dir), "--data", str(polymer_data), "--systems",
                 "chain000", "--out", str(out), *QUICK]) == 0
    assert len(checkpoint_loads) == 1
    header, _ = read_rollout_state(out / ROLLOUT_FILE)
    assert header.request["settings"]["refine_levels"] == 2  # --levels changed the run's setting


def test_simulate_lammps_files_of_a_new_system(run_dir, new_chain, tmp_path, checkpoint_loads):
    data, dump = new_chain
    out = tmp_path / "rollout"
    assert main(["simulate", str(run_dir), "--topology", str(data), "--trajectory", str(dump),
                 "--timestep", "0.01", "--out", str(out), *QUICK]) == 0
    assert len(checkpoint_loads) == 1
    _loads_in_mdtraj(out, "chain", 4)  # the data file's stem names the system
    with h5py.File(out / ROLLOUT_FILE) as f:
        assert f["rollout_state"].attrs["status"] == "complete"
    with eqcg.load_dataset(out / ROLLOUT_FILE) as rollout:
        system = rollout["chain"]
        assert system.units == "lj" and system.attrs["dilation"] == 1
        np.testing.assert_allclose(np.diff(system.time), 5.0)  # one learned step = 5 tau
        assert system.attrs["start_frame"] == 4  # the last of k = 5 history frames


def test_simulate_python_api_with_stated_stride(run_dir, new_chain, tmp_path):
    data, dump = new_chain
    files = eqcg.SystemFiles(topology=data, trajectories=[dump], name="mine", stride=1)
    out = eqcg.simulate(run_dir, files, tmp_path / "api", 2, show_progress=False,
                        changes={"deterministic": True, "refine": False})
    _loads_in_mdtraj(out, "mine", 3)


def test_simulate_refuses_an_unknown_atom_type(run_dir, new_chain, tmp_path, capsys):
    data, dump = new_chain
    head, atoms = data.read_text().split("Atoms")
    head = head.replace("2 atom types", "3 atom types").replace("\n2 1.0\n", "\n2 1.0\n3 1.0\n")
    edited = tmp_path / "unknown.data"
    edited.write_text(head + "Atoms" + re.sub(r"^1 1 [12] ", "1 1 3 ", atoms, flags=re.M))
    out = tmp_path / "refused"
    assert main(["simulate", str(run_dir), "--topology", str(edited), "--trajectory", str(dump),
                 "--timestep", "0.01", "--out", str(out), *QUICK]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert str(edited) in error and "atom type '3' was not in the training data" in error
    assert not (out / ROLLOUT_FILE).exists()


def test_simulate_refuses_other_units_and_an_unreachable_step(run_dir, new_chain, tmp_path):
    data, dump = new_chain
    files = eqcg.SystemFiles(topology=data, trajectories=[dump], timestep=0.01)
    with pytest.raises(DataError, match=r"in 'real' units, the run .* trained on 'lj' data"):
        eqcg.simulate(run_dir, dataclasses.replace(files, units="real"), tmp_path / "a", 2)
    with pytest.raises(DataError, match=r"frames are 2 tau apart, and the model's learned step "
                                        r"is 5 tau .*not a whole number of frames"):
        eqcg.simulate(run_dir, dataclasses.replace(files, timestep=None, frame_interval=2.0),
                      tmp_path / "b", 2)
    with pytest.raises(DataError, match=r"has 8 frames; the model needs 5 history frames 2 "
                                        r"apart .*: 9 frames"):
        eqcg.simulate(run_dir, dataclasses.replace(files, stride=2), tmp_path / "c", 2)


def test_simulate_generates_the_history_of_a_builtin_system(run_dir, tmp_path):
    out = tmp_path / "generated"
    assert main(["simulate", str(run_dir), "--generate-history", "polymer", "--history-seed",
                 "3", "--out", str(out), *QUICK]) == 0
    assert (out / "history" / LAMMPS_DIR / "chain_seed3" / LOG_FILE).is_file()
    _loads_in_mdtraj(out, "chain_seed3", 4)
    assert main(["simulate", str(run_dir), "--generate-history", "electrolyte", "--out",
                 str(tmp_path / "other"), *QUICK]) == EXIT_BAD_INPUT
