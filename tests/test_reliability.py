"""Bad input is a named error (exit code 2), resume cannot destroy a run, SIGTERM saves it."""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import eqcg
from eqcg.commands.cli import main
from eqcg.commands.info import describe
from eqcg.config import load_config, save_config
from eqcg.errors import CheckpointError, ConfigError
from eqcg.models.checkpoint import load_checkpoint, load_simulator
from eqcg.runtime.arguments import resolve_device
from eqcg.simulation.rollout import rollout
from eqcg.simulation.runner import _check_systems, run_rollout
from eqcg.systems.generate import LAMMPS_DIR, RECORD_FILE, check_workdir, generation_record
from eqcg.systems.polymer import generate_polymer, get_preset
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.val_windows=8", "train.log_every=1"]
SETS = [arg for override in SMALL for arg in ("--set", override)]


def small_config(*overrides, base="configs/polymer_baseline.yaml"):
    return load_config(base, SMALL + list(overrides))


@pytest.fixture(scope="module")
def run_dir(polymer_data, tmp_path_factory):
    """A 4-step run with best.pt and last.pt."""
    out = tmp_path_factory.mktemp("reliability") / "run"
    train(small_config("train.max_steps=4", "train.val_every=2"), polymer_data, out,
          show_progress=False)
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def error_of(capsys, argv: list[str]) -> str:
    """Run the CLI, require exit code 2 and return its one-line error message."""
    assert main(argv) == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- training arguments -------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, minimum", [("--max-steps", "0", 1),
                                                  ("--max-steps", "-5", 1),
                                                  ("--stop-after", "-1", 0)])
def test_non_positive_step_counts_are_refused_before_anything_is_written(
        polymer_data, tmp_path, capsys, flag, value, minimum):
    out = tmp_path / "run"
    message = error_of(capsys, ["train", "configs/polymer_baseline.yaml", "--data",
                                str(polymer_data), "--out", str(out), flag, value])
    name = flag.removeprefix("--").replace("-", "_")
    assert message == (f"eqcg train: error: argument {flag}: must be an integer >= {minimum}, "
                       f"got {value}")
    assert not out.exists()
    with pytest.raises(ConfigError, match=f"{name} .* got {value}"):
        train(small_config(), polymer_data, out, **{name: int(value)})


def test_stop_after_zero_writes_the_initial_state(polymer_data, tmp_path):
    result = train(small_config("train.max_steps=5"), polymer_data, tmp_path / "run",
                   stop_after=0, show_progress=False)  # (it used to train all 5 steps)
    assert result.step == 0 == load_checkpoint(tmp_path / "run/checkpoints/last.pt")["step"]


def test_cg_level_larger_than_every_molecule_warns(polymer_data, tmp_path):
    config = small_config("train.max_steps=1", "data.cg_level=100")
    with pytest.warns(UserWarning, match=r"data.cg_level=100 turns every molecule into a single "
                                         r"bead: the training systems' molecules have \d+-\d+ "
                                         "atoms"):
        train(config, polymer_data, tmp_path / "run", show_progress=False)


# --- devices ------------------------------------------------------------------------------

def test_unavailable_cuda_is_named_by_train_and_rollout(polymer_data, run_dir, tmp_path,
                                                        capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cuda: CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="'gpu': not a device"):
        resolve_device("gpu")
    assert resolve_device("auto") == torch.device("cpu")
    message = error_of(capsys, ["train", "configs/polymer_baseline.yaml", "--data",
                                str(polymer_data), "--out", str(tmp_path / "t"), "--device",
                                "cuda"])
    assert message.startswith("eqcg train: error: --device cuda: CUDA is not available")
    message = error_of(capsys, ["rollout", str(run_dir), "--data", str(polymer_data),
                                "--steps", "2", "--out", str(tmp_path / "r"), "--device",
                                "cuda:1"])
    assert message.startswith("eqcg rollout: error: --device cuda:1: CUDA is not available")
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


# --- rollout arguments --------------------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
    (["--steps", "-5"], "argument --steps: must be an integer >= 1, got -5"),
    (["--steps", "3", "--save-every", "0"],
     "argument --save-every: must be an integer >= 1, got 0"),
    (["--steps", "3", "--start-frame", "-3"],
     "argument --start-frame: must be an integer >= 0, got -3"),
])
def test_bad_rollout_counts_are_named(polymer_data, run_dir, tmp_path, capsys, args, expected):
    out = tmp_path / "r"
    message = error_of(capsys, ["rollout", str(run_dir), "--data", str(polymer_data),
                                "--out", str(out), *args])
    assert message == f"eqcg rollout: error: {expected}"
    assert not out.exists()


def test_rollout_python_api_refuses_bad_counts(polymer_data, run_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"start_frame \(--start-frame\) must be .* got -3"):
        run_rollout(run_dir, polymer_data, tmp_path / "r", 3, start_frame=-3)
    simulator, _, _ = load_simulator(run_dir)
    with pytest.raises(ConfigError, match="save_every must be an integer >= 1, got 0"):
        rollout(simulator, None, 3, save_every=0)
    with pytest.raises(ConfigError, match="n_steps must be an integer >= 1, got 0"):
        rollout(simulator, None, 0)


def test_unknown_system_is_named_with_the_known_ones(polymer_data, run_dir, tmp_path, capsys):
    message = error_of(capsys, ["rollout", str(run_dir), "--data", str(polymer_data),
                                "--steps", "2", "--out", str(tmp_path / "r"),
                                "--systems", "chain000", "chain999"])
    assert message == (f"eqcg rollout: error: --systems: no system 'chain999' in "
                       f"{polymer_data / 'dataset.h5'}; its 4 systems are chain000, chain001, "
                       "chain002, chain003")
    many = SimpleNamespace(names=[f"s{i}" for i in range(20)], path="d.h5")
    with pytest.raises(ConfigError, match=r"its 20 systems are s0, s1, .*, s7 and 12 more$"):
        _check_systems(["x"], many)


def test_rollout_into_an_existing_file_fails_before_any_work(polymer_data, run_dir, tmp_path,
                                                             capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    message = error_of(capsys, ["rollout", str(run_dir), "--data", str(polymer_data),
                                "--steps", "2", "--out", str(target)])
    assert message == (f"eqcg rollout: error: --out {target}: it is an existing file, not a "
                       "directory for the rollout")
    assert target.read_text() == "keep me"


# --- resume -------------------------------------------------------------------------------

def test_resume_with_another_architecture_is_refused_and_writes_nothing(polymer_data, run_dir,
                                                                        capsys):
    before = snapshot(run_dir)
    message = error_of(capsys, ["train", "--data", str(polymer_data), "--out", str(run_dir),
                                "--resume", "--set", "model.latent_dim=16"])
    assert "differs from" in message and "in model.latent_dim: 32 -> 16 (only " \
        "train.max_steps, train.val_every, train.log_every, train.checkpoint_every, " \
        "train.val_windows may change)" in message
    equivariant = small_config(base="configs/polymer_equivariant.yaml")
    with pytest.raises(ConfigError, match=r"last.pt holds a 'baseline' model, the config of "
                                          r"--resume asks for 'equivariant'"):
        train(equivariant, polymer_data, run_dir, resume=True, show_progress=False)
    assert snapshot(run_dir) == before  # nothing in the run directory changed


def test_resume_on_other_data_needs_force_data(polymer_data, run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(polymer_data / "dataset.h5", other / "dataset.h5")
    before = snapshot(run)
    message = error_of(capsys, ["train", "--data", str(other), "--out", str(run), "--resume"])
    assert message == (f"eqcg train: error: --resume: {run} was trained on "
                       f"{(polymer_data / 'dataset.h5').resolve()}, not "
                       f"{(other / 'dataset.h5').resolve()}; pass --force-data "
                       "(force_data=True) to continue training on other data")
    assert snapshot(run) == before
    # budget keys may change; --force-data lets it continue on the copy
    assert main(["train", "--data", str(other), "--out", str(run), "--resume", "--force-data",
                 "--max-steps", "6", "--set", "train.log_every=3"]) == 0
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 6


def test_rollout_refuses_a_checkpoint_of_another_variant(polymer_data, run_dir, tmp_path,
                                                         capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    save_config(small_config(base="configs/polymer_equivariant.yaml"), run / "config.yaml")
    with pytest.raises(CheckpointError, match="best.pt holds a 'baseline' model, "
                                              ".*config.yaml asks for 'equivariant'"):
        load_simulator(run)
    message = error_of(capsys, ["rollout", str(run), "--data", str(polymer_data), "--steps",
                                "2", "--out", str(tmp_path / "r")])
    assert "holds a 'baseline' model" in message and "model.variant: 'baseline' -> " \
        "'equivariant'" in message


# --- checkpoints --------------------------------------------------------------------------

def test_info_and_rollout_without_a_usable_best_checkpoint(polymer_data, run_dir, tmp_path,
                                                           capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    best = run / "checkpoints/best.pt"
    best.write_bytes(best.read_bytes()[:500])
    text = describe(run)
    assert f"checkpoint {best}: unusable: {best}: corrupt or unreadable checkpoint" in text
    assert f"checkpoint {run / 'checkpoints/last.pt'}\n  variant: baseline" in text
    assert "step 4, best validation NLL" in text
    best.unlink()
    assert f"checkpoint {best}: missing" in describe(run)
    message = error_of(capsys, ["rollout", str(run), "--data", str(polymer_data), "--steps",
                                "2", "--out", str(tmp_path / "r")])
    assert message == (f"eqcg rollout: error: {best}: checkpoint not found (the run has written "
                       "no best.pt yet: it does so at validations); roll out its latest state "
                       "with --checkpoint last.pt")
    code = main(["rollout", str(run), "--data", str(polymer_data), "--steps", "2", "--out",
                 str(tmp_path / "r"), "--checkpoint", "last.pt", "--deterministic",
                 "--no-refine"])
    assert code in (0, 1) and (tmp_path / "r/rollout.h5").exists()  # 1: a 4-step model blew up


def test_pickled_objects_are_refused_as_untrusted(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "eqcg-checkpoint", "payload": SimpleNamespace(a=1)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == (
        f"{path}: holds pickled Python objects (types.SimpleNamespace), not just tensors and "
        "numbers; eqcg refuses to unpickle untrusted objects (unpickling can run arbitrary "
        "code), so this is not a checkpoint eqcg can load")
    assert "weights_only" not in str(caught.value)


# --- generation ---------------------------------------------------------------------------

def test_generation_records_and_refuses_another_seed(polymer_data, tmp_path, capsys):
    record = json.loads((polymer_data / LAMMPS_DIR / "chain000" / RECORD_FILE).read_text())
    settings = hashlib.sha256(json.dumps(asdict(get_preset("tiny")), sort_keys=True).encode())
    assert record == {"preset": "tiny", "settings": settings.hexdigest()[:12], "seed": 0,
                      "n_systems": 4}
    out = tmp_path / "data"
    for name in ("chain000", "chain001"):  # a seed-0 generation that was interrupted
        (out / LAMMPS_DIR / name).mkdir(parents=True)
        (out / LAMMPS_DIR / name / RECORD_FILE).write_text(json.dumps(record))
    message = error_of(capsys, ["generate", "polymer", "--preset", "tiny", "--seed", "7",
                                "--n-systems", "4", "--out", str(out)])
    tiny = f"preset 'tiny', settings {record['settings']!r}"
    assert message == (f"eqcg generate: error: {out / LAMMPS_DIR / 'chain000'} holds a run of "
                       f"{tiny}, seed 0, n_systems 4; this generation asks for {tiny}, seed 7, "
                       "n_systems 4: use another --out (or delete that directory)")
    assert not (out / LAMMPS_DIR / "chain002").exists()  # refused before anything was written
    changed = replace(get_preset("tiny"), equil_steps=get_preset("tiny").equil_steps + 1)
    with pytest.raises(ConfigError, match="holds a run of preset 'tiny', settings '[0-9a-f]{12}'"
                                          ", seed 0, n_systems 4; this generation asks for "
                                          "preset 'tiny', settings '[0-9a-f]{12}'"):
        check_workdir(polymer_data / LAMMPS_DIR / "chain000",
                      generation_record("tiny", changed, seed=0, n_systems=4))
    unknown = tmp_path / "unknown"
    (unknown / LAMMPS_DIR / "chain000").mkdir(parents=True)
    (unknown / LAMMPS_DIR / "chain000" / "log.lammps").write_text("")
    with pytest.raises(ConfigError, match=f"chain000 holds files without {RECORD_FILE}, so its "
                                          "preset and seed are unknown"):
        generate_polymer(unknown, "tiny", seed=0, n_systems=4, show_progress=False)


# --- SIGTERM ------------------------------------------------------------------------------

def test_sigterm_during_training_writes_last_and_resume_continues(polymer_data, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "eqcg", "train", "configs/polymer_baseline.yaml",
               "--data", str(polymer_data), "--out", str(out), *SETS,
               "--set", "train.val_every=10000", "--set", "train.checkpoint_every=10000",
               "--max-steps", "10000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    logged = 0
    deadline = time.monotonic() + 120
    while logged < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if (out / "metrics.csv").exists():
            logged = (out / "metrics.csv").read_text().count(",train,")
    assert logged >= 3, process.communicate()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    step = load_checkpoint(out / "checkpoints/last.pt")["step"]
    assert step >= logged
    assert stderr.strip().splitlines()[-1] == (
        f"eqcg train: terminated by SIGTERM at step {step} of 10000; {out}/checkpoints/last.pt "
        "holds that step: continue with --resume")
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    assert main(["train", "--data", str(polymer_data), "--out", str(out), "--resume",
                 "--stop-after", str(step + 2)]) == 0
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert load_checkpoint(out / "checkpoints/last.pt")["step"] == step + 2


# --- public API ---------------------------------------------------------------------------

def test_every_public_name_stays_usable_in_any_order(polymer_data, tmp_path):
    script = textwrap.dedent(f"""
        import importlib, sys
        from pathlib import Path
        import eqcg
        from eqcg.config import load_config
        config = load_config("configs/polymer_baseline.yaml",
                             {SMALL!r} + ["train.max_steps=2", "train.val_every=2"])
        first = eqcg.train(config, {str(polymer_data)!r}, {str(tmp_path / 'a')!r},
                           show_progress=False)
        eqcg.load_simulator({str(tmp_path / 'a')!r})
        import eqcg.training.trainer, eqcg.evaluation.report
        second = eqcg.train(config, {str(polymer_data)!r}, {str(tmp_path / 'b')!r},
                            show_progress=False)
        assert first.step == second.step == 2
        root = Path(eqcg.__file__).parent
        for path in sorted(root.rglob("*.py")):  # every module, namespace packages included
            name = ".".join(("eqcg",) + path.relative_to(root).with_suffix("").parts)
            if not name.endswith("__main__"):  # (that one runs the command line)
                importlib.import_module(name.removesuffix(".__init__"))
        assert "eqcg.models.checkpoint" in sys.modules and "eqcg.simulation.runner" in sys.modules
        for name in eqcg.__all__:
            assert callable(getattr(eqcg, name)), name
        assert eqcg.evaluate is eqcg.evaluation.report.evaluate
        assert eqcg.train is eqcg.training.trainer.train
        eqcg.train(config, {str(polymer_data)!r}, {str(tmp_path / 'c')!r}, show_progress=False)
        from eqcg import evaluate, train
        assert callable(train) and callable(evaluate)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
    assert yaml.safe_load((tmp_path / "c/config.yaml").read_text())["train"]["max_steps"] == 2
    assert set(eqcg.__all__) >= {"train", "evaluate", "run_rollout", "load_simulator"}
