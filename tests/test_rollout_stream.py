"""Rollouts stream into rollout.h5 and survive interruption: resumed equals uninterrupted."""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from eqcg import load_dataset
from eqcg.commands.cli import main
from eqcg.config import load_config
from eqcg.data.rollout_file import (
    COMPLETE,
    FAILED,
    ROLLOUT_FILE,
    RUNNING,
    RolloutAttrs,
    read_rollout_state,
    rollout_status,
)
from eqcg.errors import ConfigError
from eqcg.evaluation.report import evaluate
from eqcg.models.simulator import Simulator
from eqcg.runtime.interrupt import Interrupted
from eqcg.simulation.rollout import RolloutFailure
from eqcg.simulation.runner import run_rollout
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.val_windows=32"]
SYSTEMS = ["chain000", "chain001", "chain002", "chain003"]
# float64, a noise draw at every step (sampling and Langevin), a chunk at every save point
OPTIONS = {"systems": SYSTEMS, "dtype": torch.float64, "show_progress": False,
           "flush_seconds": 0.0}


@pytest.fixture(scope="module")
def run_dir(polymer_data, tmp_path_factory):
    """A run trained well enough to roll out tens of steps without blowing up."""
    out = tmp_path_factory.mktemp("stream") / "run"
    config = load_config("configs/polymer_baseline.yaml",
                         SMALL + ["train.max_steps=300", "train.val_every=300", "train.lr=2e-3"])
    train(config, polymer_data, out, show_progress=False)
    return out


def frames(path):
    """``{system: (positions, time)}`` of a rollout file."""
    with load_dataset(path) as rollout:
        return {s.name: (s.positions[()], s.time.copy()) for s in rollout}


def assert_same_frames(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=name)
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=name)


def test_interrupted_rollout_resumes_bit_for_bit(run_dir, polymer_data, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run_rollout(run_dir, polymer_data, straight, 15, save_every=2, **OPTIONS)

    predict, calls = Simulator.predict, []

    def interrupted_predict(self, *args, **kwargs):  # Ctrl-C during step 8's prediction
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Simulator, "predict", interrupted_predict)
    split = tmp_path / "split"
    with pytest.raises(Interrupted) as caught:
        run_rollout(run_dir, polymer_data, split, 15, save_every=2, **OPTIONS)
    assert caught.value.exit_code == 130
    assert str(caught.value) == (f"interrupted at step 6 of 15; {split / ROLLOUT_FILE} holds "
                                 "the frames up to there: continue with --resume")
    kept = frames(split / ROLLOUT_FILE)  # steps 0, 2, 4, 6: whole frames only
    assert all(len(positions) == 4 for positions, _ in kept.values())
    assert rollout_status(split) == RUNNING
    monkeypatch.setattr(Simulator, "predict", predict)

    run_rollout(run_dir, polymer_data, split, 15, save_every=2, resume=True, **OPTIONS)
    assert rollout_status(split) == COMPLETE
    assert_same_frames(frames(split / ROLLOUT_FILE), frames(straight / ROLLOUT_FILE))
    # the streamed file is what evaluation reads
    metrics = evaluate(split, polymer_data, tmp_path / "report", draw_plots=False)
    assert set(metrics["systems"]) == set(SYSTEMS)


def test_finished_rollout_extends_as_one_long_rollout(run_dir, polymer_data, tmp_path):
    long, extended = tmp_path / "long", tmp_path / "extended"
    run_rollout(run_dir, polymer_data, long, 12, **OPTIONS)
    run_rollout(run_dir, polymer_data, extended, 7, **OPTIONS)
    assert main(["rollout", str(run_dir), "--data", str(polymer_data), "--steps", "12",
                 "--out", str(extended), "--systems", *SYSTEMS, "--dtype", "float64",
                 "--resume"]) == 0
    assert_same_frames(frames(extended / ROLLOUT_FILE), frames(long / ROLLOUT_FILE))
    with pytest.raises(ConfigError, match=r"started with other settings \(save_every: 1 -> 3; "
                                          r"seed: 0 -> 1\); resume with the same ones"):
        run_rollout(run_dir, polymer_data, extended, 20, seed=1, save_every=3, resume=True,
                    **OPTIONS)
    with pytest.raises(ConfigError, match="already holds 12 steps, more than --steps 10"):
        run_rollout(run_dir, polymer_data, extended, 10, resume=True, **OPTIONS)
    with pytest.raises(ConfigError, match="--resume: no rollout to resume at"):
        run_rollout(run_dir, polymer_data, tmp_path / "none", 10, resume=True, **OPTIONS)


def _start_and_wait(command, path, min_frames):
    """Start ``command``; return it once ``path`` holds at least ``min_frames`` frames."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if path.exists() and read_rollout_state(path)[1].step >= min_frames:
            return process
    process.kill()
    pytest.fail(f"no frames appeared: {process.communicate()}")


def test_killed_rollout_keeps_whole_frames_and_resumes(run_dir, polymer_data, tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import torch
        from eqcg.simulation.runner import run_rollout
        run_rollout({str(run_dir)!r}, {str(polymer_data)!r}, {str(out)!r}, 100000,
                    systems={SYSTEMS!r}, dtype=torch.float64, show_progress=False,
                    flush_seconds=0.0)
    """)
    process = _start_and_wait([sys.executable, "-c", script], out / ROLLOUT_FILE, 3)
    process.kill()  # SIGKILL: no handler runs
    process.communicate()
    _, state = read_rollout_state(out / ROLLOUT_FILE)
    kept = frames(out / ROLLOUT_FILE)
    assert all(len(p) == state.step + 1 and np.isfinite(p).all() for p, _ in kept.values())
    target = state.step + 3
    run_rollout(run_dir, polymer_data, out, target, resume=True, **OPTIONS)
    run_rollout(run_dir, polymer_data, tmp_path / "straight", target, **OPTIONS)
    assert_same_frames(frames(out / ROLLOUT_FILE), frames(tmp_path / "straight" / ROLLOUT_FILE))


def test_sigterm_stops_a_rollout_with_exit_code_143(run_dir, polymer_data, tmp_path):
    out = tmp_path / "terminated"
    command = [sys.executable, "-m", "eqcg", "rollout", str(run_dir), "--data",
               str(polymer_data), "--steps", "100000", "--out", str(out), "--systems",
               "chain000"]
    process = _start_and_wait(command, out / ROLLOUT_FILE, 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    _, state = read_rollout_state(out / ROLLOUT_FILE)
    assert stderr.strip().splitlines()[-1] == (
        f"eqcg rollout: terminated by SIGTERM at step {state.step} of 100000; "
        f"{out / ROLLOUT_FILE} holds the frames up to there: continue with --resume")
    assert state.status == RUNNING
    assert len(frames(out / ROLLOUT_FILE)["chain000"][0]) == state.step + 1
    assert main(["rollout", str(run_dir), "--data", str(polymer_data), "--steps",
                 str(state.step + 2), "--out", str(out), "--systems", "chain000",
                 "--resume"]) == 0
    assert len(frames(out / ROLLOUT_FILE)["chain000"][0]) == state.step + 3
    assert (out / "chain000.dcd").exists()


def test_a_blown_up_system_is_recorded_and_evaluated_as_not_stable(
        run_dir, polymer_data, tmp_path, monkeypatch):
    """One system going non-finite at step 8 stops the rollout: the file records which system
    at which step (state and that system's attributes), and evaluation counts it as neither
    finite nor stable, the others as they are, and says so in the report."""
    predict, calls = Simulator.predict, []

    def exploding_predict(self, *args, **kwargs):  # the last bead (of chain003) at step 8
        prediction = predict(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 8:
            prediction.acceleration.mean[-1] = float("nan")
        return prediction

    monkeypatch.setattr(Simulator, "predict", exploding_predict)
    out = tmp_path / "blown"
    with pytest.raises(RolloutFailure, match="chain003 at step 8") as failure:
        run_rollout(run_dir, polymer_data, out, 15, **OPTIONS)
    assert failure.value.blown_up == {"chain003": 8}
    _, state = read_rollout_state(out / ROLLOUT_FILE)
    assert (state.status, state.blown_up) == (FAILED, {"chain003": 8})
    with load_dataset(out / ROLLOUT_FILE) as rollout:
        attrs = {s.name: RolloutAttrs.from_attrs(s.attrs, s.name) for s in rollout}
    assert {name: a.blew_up_at_step for name, a in attrs.items()} == {
        "chain000": None, "chain001": None, "chain002": None, "chain003": 8}

    metrics = evaluate(out, polymer_data, tmp_path / "report", draw_plots=False)
    model = {name: s["stability"]["model"] for name, s in metrics["systems"].items()}
    assert [model[name]["finite"] for name in SYSTEMS] == [True, True, True, False]
    assert not model["chain003"]["stable"] and model["chain003"]["blew_up_at_step"] == 8
    stability = metrics["aggregate"]["stability"]
    assert stability["finite_fraction"] == 0.75
    assert stability["stable_fraction"] <= 0.75
    assert stability["blown_up"] == {"chain003": 8}
    assert "**The rollout blew up**: `chain003` at step 8" in (
        tmp_path / "report" / "report.md").read_text()
