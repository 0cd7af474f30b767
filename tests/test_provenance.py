"""Where results meet (issue 20): runs, rollouts, reports and comparisons own their
directories, a rollout is evaluated only against the dataset it came from, reports of different
units are not mixed, and broken sources (non-finite weights, time running backwards, an empty
test split) are refused where they enter."""

import errno
import json
import os
import shutil
from pathlib import Path

import h5py
import pytest
import torch

import eqcg.runtime.atomic
from eqcg.commands.cli import main
from eqcg.config import load_config
from eqcg.data.store import load_dataset
from eqcg.errors import ConfigError, DataError, FileSystemError
from eqcg.evaluation import compare, evaluate
from eqcg.models.checkpoint import load_checkpoint
from eqcg.runtime.outputs import claim_output
from eqcg.simulation.new_system import SystemFiles, simulate
from eqcg.simulation.runner import run_rollout
from eqcg.systems.polymer import generate_polymer
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.val_windows=8", "score.n_levels=4",
         "rollout.refine_levels=2"]


def small_config(*overrides):
    return load_config("configs/polymer_baseline.yaml", SMALL + list(overrides))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def results(polymer_data, tmp_path_factory):
    """A 2-step run, a 3-step rollout of its test split and a report of it."""
    root = tmp_path_factory.mktemp("provenance")
    train(small_config("train.max_steps=2", "train.val_every=2"), polymer_data, root / "run",
          show_progress=False)
    run_rollout(root / "run", polymer_data, root / "rollout", 3, show_progress=False)
    evaluate(root / "rollout", polymer_data, root / "report", draw_plots=False,
             calibrate=False)
    return root


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory) -> Path:
    """The same four chain names as ``polymer_data``, from another seed."""
    out = tmp_path_factory.mktemp("other_seed")
    generate_polymer(out, preset="tiny", seed=1, n_systems=4, show_progress=False)
    return out


def test_a_rollout_cannot_overwrite_its_run_or_a_finished_rollout(polymer_data, results,
                                                                   capsys):
    run, rollout = results / "run", results / "rollout"
    before = snapshot(run), snapshot(rollout)
    base = ["rollout", str(run), "--data", str(polymer_data), "--steps", "2"]
    assert main([*base, "--out", str(run)]) == 2
    assert last_error(capsys) == (f"eqcg rollout: error: --out {run}: holds a run, not a "
                                  "rollout; choose another --out")
    assert main([*base, "--out", str(rollout)]) == 2
    assert last_error(capsys) == (
        f"eqcg rollout: error: --out {rollout}: already holds a rollout (rollout.h5); pass "
        "--resume to continue it or --overwrite to replace it, or choose another --out")
    assert (snapshot(run), snapshot(rollout)) == before
    copy = results / "rollout-copy"
    shutil.copytree(rollout, copy)
    assert main([*base, "--out", str(copy), "--overwrite", "--deterministic"]) == 0
    with load_dataset(copy / "rollout.h5") as replaced:
        assert replaced.systems[0].attrs["deterministic"]


def test_train_refuses_a_dataset_directory_and_a_finished_run(polymer_data, results, capsys):
    before = snapshot(polymer_data)
    argv = ["train", "configs/polymer_baseline.yaml", "--data", str(polymer_data), "--out"]
    assert main([*argv, str(polymer_data)]) == 2
    assert last_error(capsys) == (f"eqcg train: error: --out {polymer_data}: holds a dataset, "
                                  "not a run; choose another --out")
    assert main([*argv, str(results / "run")]) == 2
    assert last_error(capsys) == (
        f"eqcg train: error: --out {results / 'run'}: already holds a run "
        "(checkpoints/last.pt); pass --resume to continue it, or choose another --out")
    assert snapshot(polymer_data) == before


@pytest.mark.parametrize("number, reason", [(errno.ENOSPC, "no space left on device"),
                                            (errno.EROFS, "read-only file system")])
def test_a_failed_checkpoint_write_is_named_and_keeps_the_previous_checkpoints(
        polymer_data, results, tmp_path, monkeypatch, number, reason):
    run = tmp_path / "run"
    shutil.copytree(results / "run", run)
    before = snapshot(run / "checkpoints")

    def full(path, data):
        raise OSError(number, os.strerror(number), str(path))
    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(FileSystemError) as caught:
        train(small_config("train.max_steps=4", "train.val_every=2"), polymer_data, run,
              resume=True, show_progress=False)
    assert str(caught.value) in {f"writing the checkpoint {run}/checkpoints/{name}: {reason}"
                                 for name in ("best.pt", "last.pt")}
    assert snapshot(run / "checkpoints") == before


def test_evaluate_refuses_its_rollout_as_out_and_an_unknown_run(polymer_data, results, capsys):
    rollout = results / "rollout"
    before = snapshot(rollout)
    base = ["evaluate", str(rollout), "--reference", str(polymer_data)]
    assert main([*base, "--out", str(rollout)]) == 2
    assert last_error(capsys) == (f"eqcg evaluate: error: --out {rollout}: holds a rollout, "
                                  "not a report; choose another --out")
    assert main([*base, "--out", str(results / "report")]) == 2
    assert last_error(capsys) == (
        f"eqcg evaluate: error: --out {results / 'report'}: already holds a report "
        "(metrics.json); pass --overwrite to replace it, or choose another --out")
    assert main([*base, "--out", str(results / "typo"), "--run", "TYPO"]) == 2
    assert last_error(capsys) == ("eqcg evaluate: error: --run TYPO: no such run directory or "
                                  "checkpoint (the run whose calibration is measured)")
    assert snapshot(rollout) == before and not (results / "typo").exists()
    with pytest.raises(ConfigError, match=r"collision_threshold \(--collision-threshold\) must "
                                          "be a finite number > 0, got -1"):
        evaluate(rollout, polymer_data, results / "typo", collision_threshold=-1)


def test_evaluate_refuses_another_dataset_unless_forced_and_says_so(polymer_data, results,
                                                                   other_seed, tmp_path, capsys):
    rollout, out = results / "rollout", tmp_path / "report"
    recorded = json.loads((rollout / "run.json").read_text())["dataset_hash"]
    with load_dataset(polymer_data) as data, load_dataset(other_seed) as other:
        assert recorded == data.content_hash != other.content_hash
        assert data.names == other.names
        actual = other.content_hash
    assert main(["evaluate", str(rollout), "--reference", str(other_seed), "--out", str(out),
                 "--no-calibration"]) == 2
    assert last_error(capsys) == (
        f"eqcg evaluate: error: the reference {other_seed}/dataset.h5 is not the dataset "
        f"{rollout} was rolled out from ({polymer_data}/dataset.h5): its content hash is "
        f"{actual[:16]}, the rollout's dataset's {recorded[:16]}; evaluate against that dataset, "
        "or pass --force-reference to compare anyway")
    assert not out.exists()
    nudged = tmp_path / "nudged"  # the same systems, one coordinate moved
    shutil.copytree(polymer_data, nudged)
    with h5py.File(nudged / "dataset.h5", "a") as f:
        f["systems/chain000/positions"][0, 0, 0] += 1e-3
        del f.attrs["content_hash"]
    with load_dataset(nudged) as changed:
        actual = changed.content_hash
    metrics = evaluate(rollout, nudged, out, draw_plots=False, calibrate=False,
                       force_reference=True)
    note = (f"forced with --force-reference: the reference {nudged}/dataset.h5 is not the "
            f"dataset {rollout} was rolled out from ({polymer_data}/dataset.h5): its content "
            f"hash is {actual[:16]}, the rollout's dataset's {recorded[:16]}")
    assert metrics["options"]["reference"] == note
    assert (out / "report.md").read_text().endswith(f"**Reference {note}.**\n")


def test_a_reference_whose_time_runs_backwards_is_refused(polymer_data, results, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(polymer_data, reference)
    with h5py.File(reference / "dataset.h5", "a") as f:
        time = f["systems/chain001/time"]
        time[5], time[6] = time[6], time[5]
        stalled = time[6]
    with pytest.raises(DataError) as caught:
        evaluate(results / "rollout", reference, tmp_path / "report", draw_plots=False,
                 calibrate=False, force_reference=True)
    assert str(caught.value) == (
        f"{reference}/dataset.h5: system 'chain001': frame 6: time {stalled} does not advance "
        f"past {time_of(reference, 5)}; a reference trajectory must run forward in time")
    assert not (tmp_path / "report").exists()


def time_of(reference: Path, frame: int) -> float:
    with h5py.File(reference / "dataset.h5", "r") as f:
        return f["systems/chain001/time"][frame]


def test_compare_refuses_reports_of_different_units_unless_asked(results, tmp_path, capsys):
    real = tmp_path / "real-report"
    shutil.copytree(results / "report", real)
    metrics = json.loads((real / "metrics.json").read_text())
    metrics["units"].update(name="real", length="Å", time="ps")
    (real / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "comparison"
    assert main(["compare", str(results / "report"), str(real), "--out", str(out)]) == 2
    assert last_error(capsys) == (
        f"eqcg compare: error: {results / 'report'} is in lj (sigma, tau) units, {real} in "
        "real (Å, ps): one table would mix them; compare reports of one unit system, or pass "
        "--allow-mixed")
    assert not out.exists()
    compare([results / "report", real], out, allow_mixed=True)
    assert main(["compare", str(results / "report"), "--out", str(out)]) == 2
    assert "already holds a comparison (comparison.json); pass --overwrite" in last_error(capsys)
    (real / "metrics.json").write_text(json.dumps(metrics)[:100])
    assert main(["compare", str(real), "--out", str(tmp_path / "c2")]) == 2
    assert last_error(capsys).startswith(
        f"eqcg compare: error: reading the report {real}/metrics.json: not valid JSON (line 1, "
        "column ")


def test_a_checkpoint_with_non_finite_weights_is_refused_when_it_loads(polymer_data, results,
                                                                      tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(results / "run", run)
    state = load_checkpoint(run / "checkpoints/best.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 2)
    state["model"][name].view(-1)[:2] = torch.tensor([float("nan"), float("inf")])
    torch.save(state, run / "checkpoints/best.pt")
    out = tmp_path / "rollout"
    assert main(["rollout", str(run), "--data", str(polymer_data), "--steps", "2", "--out",
                 str(out)]) == 2
    assert last_error(capsys) == (
        f"eqcg rollout: error: {run}/checkpoints/best.pt: weight {name} holds 2 non-finite "
        f"value(s) (NaN or inf) of {state['model'][name].numel()}: the training diverged or the "
        "file is damaged; roll out another checkpoint (--checkpoint last.pt / best.pt) or "
        "retrain")
    assert not out.exists()


def test_no_validation_systems_warns_and_an_empty_test_split_is_not_rolled_out(
        polymer_data, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"no validation systems \(data.split \[1.0, 0.0, 0.0\] "
                                         r"over 4 systems\): best.pt is chosen by the NLL on "
                                         "the training systems, which rewards overfitting"):
        train(small_config("train.max_steps=1", "data.split=[1, 0, 0]"), polymer_data, run,
              show_progress=False)
    out = tmp_path / "rollout"
    assert main(["rollout", str(run), "--data", str(polymer_data), "--steps", "2", "--out",
                 str(out)]) == 2
    assert last_error(capsys) == (
        f"eqcg rollout: error: --systems: the run of {run}/checkpoints/best.pt has no test "
        "systems (data.split [1.0, 0.0, 0.0] over 4 systems), and rolling out the systems it was "
        "trained on would say nothing about held-out ones; name the systems with --systems")
    assert not out.exists()


def test_simulate_warns_when_its_stride_spans_another_time_than_the_learned_step(
        polymer_data, results, tmp_path):
    chain = polymer_data / "lammps" / "chain000"
    files = SystemFiles(topology=chain / "chain.data", trajectories=[chain / "traj.dump"],
                        units="lj", timestep=0.01, stride=2)
    with pytest.warns(UserWarning) as caught:
        simulate(results / "run", files, tmp_path / "rollout", 1, show_progress=False)
    assert [str(w.message) for w in caught if "--stride" in str(w.message)] == [
        f"--stride 2: 2 frames of {chain / 'traj.dump'} span 10 tau, but the model learned "
        "steps of 5 tau; its rollout is labelled 10 tau per step although it moves by what it "
        "learned over one of its own steps"]


def test_a_second_rollout_into_the_same_out_is_refused_while_the_first_writes(
        polymer_data, results, tmp_path, capsys):
    out = tmp_path / "rollout"
    argv = ["rollout", str(results / "run"), "--data", str(polymer_data), "--steps", "2",
            "--out", str(out)]
    with claim_output(out, "rollout"):  # the first writer, still running
        assert main(argv) == 2
        assert last_error(capsys).startswith(
            f"eqcg rollout: error: --out {out}: is being written by process {os.getpid()} on ")
        assert sorted(p.name for p in out.iterdir()) == [".eqcg-lock", ".eqcg-output.json"]
    assert main(argv) == 0


def _fail_atomic_writes(monkeypatch, number: int) -> None:
    """Every write to a file the atomic writers open raises ``OSError(number)``."""
    real_open = open

    class Failing:
        def __init__(self, raw):
            self._raw = raw

        def write(self, data):
            raise OSError(number, os.strerror(number))

        def __getattr__(self, name):
            return getattr(self._raw, name)
    monkeypatch.setattr(eqcg.runtime.atomic, "open",
                        lambda *a, **k: Failing(real_open(*a, **k)), raising=False)


@pytest.mark.parametrize("number, reason", [(errno.ENOSPC, "no space left on device"),
                                            (errno.EROFS, "read-only file system")])
def test_a_failed_write_while_a_rollout_streams_keeps_the_frames_written_before(
        polymer_data, results, tmp_path, monkeypatch, number, reason):
    rollout = tmp_path / "rollout"
    shutil.copytree(results / "rollout", rollout)
    before = snapshot(rollout)
    _fail_atomic_writes(monkeypatch, number)
    with pytest.raises(FileSystemError) as caught:
        run_rollout(results / "run", polymer_data, rollout, 5, resume=True, show_progress=False)
    assert str(caught.value) == f"writing the rollout {rollout}/rollout.h5: {reason}"
    assert snapshot(rollout) == before


@pytest.mark.parametrize("number, reason", [(errno.ENOSPC, "no space left on device"),
                                            (errno.EROFS, "read-only file system")])
def test_a_failed_write_while_a_rollout_overwrites_keeps_the_previous_rollout(
        polymer_data, results, tmp_path, monkeypatch, capsys, number, reason):
    """--overwrite of a finished rollout on a full disk: the previous rollout.h5, run.json and
    viewer files are back, byte for byte, and nothing of the new one is left."""
    rollout = tmp_path / "rollout"
    shutil.copytree(results / "rollout", rollout)
    before = snapshot(rollout)
    _fail_atomic_writes(monkeypatch, number)
    assert main(["rollout", str(results / "run"), "--data", str(polymer_data), "--steps", "4",
                 "--out", str(rollout), "--overwrite", "--device", "cpu"]) == 2
    assert last_error(capsys) == (f"eqcg rollout: error: writing the rollout "
                                  f"{rollout}/rollout.h5: {reason}")
    assert snapshot(rollout) == before
    assert sorted(p.name for p in rollout.iterdir() if p.name.startswith(".")) == [
        ".eqcg-output.json"]  # no lock, no hidden folder left


@pytest.mark.parametrize("number, reason", [(errno.ENOSPC, "no space left on device"),
                                            (errno.EROFS, "read-only file system")])
def test_a_failed_write_while_evaluate_overwrites_keeps_the_previous_report(
        polymer_data, results, tmp_path, monkeypatch, capsys, number, reason):
    report = tmp_path / "report"
    shutil.copytree(results / "report", report)
    before = snapshot(report)
    real_write_text = Path.write_text

    def write_text(path, text, *args, **kwargs):
        if path.name == "metrics.json":
            raise OSError(number, os.strerror(number), str(path))
        return real_write_text(path, text, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert main(["evaluate", str(results / "rollout"), "--reference", str(polymer_data),
                 "--out", str(report), "--overwrite", "--no-calibration"]) == 2
    assert last_error(capsys) == (f"eqcg evaluate: error: writing the report "
                                  f"{report}/metrics.json: {reason}")
    assert snapshot(report) == before  # nothing staged is left, nothing old replaced
    monkeypatch.undo()
    evaluate(results / "rollout", polymer_data, report, draw_plots=False, calibrate=False,
             overwrite=True, collision_threshold=0.4)
    assert json.loads((report / "metrics.json").read_text())["options"][
        "collision_threshold"] == 0.4
    assert sorted(p.name for p in report.iterdir() if p.name.startswith(".")) == [
        ".eqcg-output.json"]
