"""eqcg ablate end to end on tiny LAMMPS data: shared runs, per-variant refinement, groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from eqcg.commands.ablation import VARIANTS_FILE, run_ablation
from eqcg.errors import SimulationError
from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["model.latent_dim=8", "model.embed_dim=8", "model.message_passing_steps=1",
         "model.score_message_passing_steps=1", "train.max_steps=2", "train.val_every=2",
         "train.batch_size=2", "train.val_windows=4", "data.history=3"]
EQUIVARIANT = ["model.variant=equivariant", "model.covariance=isotropic",
               "model.equivariant.vector_channels=2", "model.equivariant.radial_basis=2"]


def write_spec(path: Path, data: Path, variants: dict[str, list[str]], steps: int = 2,
               shared: tuple[str, ...] = (), **sections: object) -> Path:
    """An ablation spec on the polymer baseline config with the tiny model of :data:`SMALL`."""
    path.write_text(yaml.safe_dump({
        "data": {"path": str(data)}, "config": str(CONFIGS / "polymer_baseline.yaml"),
        "set": [*SMALL, *shared], "rollout": {"steps": steps}, "variants": variants,
        **sections}))
    return path


THREE_VARIANTS = {"baseline": [], "equivariant": EQUIVARIANT,
                  "equivariant-no-refinement": [*EQUIVARIANT, "rollout.refine=false"]}


def test_ablation_shares_runs_refines_per_variant_and_groups_systems(polymer_data, tmp_path,
                                                                     single_thread):
    spec = write_spec(tmp_path / "spec.yaml", polymer_data, THREE_VARIANTS, steps=3,
                      evaluate={"group_by": "length_group"})
    out = tmp_path / "ablation"
    comparison = run_ablation(spec, out, device="cpu")

    assert sorted(p.name for p in (out / "runs").iterdir()) == ["baseline", "equivariant"]
    variants = json.loads((out / VARIANTS_FILE).read_text())
    assert variants["equivariant-no-refinement"]["run"] == variants["equivariant"]["run"]
    assert variants["equivariant-no-refinement"]["parameters"] == \
        variants["equivariant"]["parameters"] != variants["baseline"]["parameters"]
    assert variants["equivariant"]["score_evaluations_per_step"] == 10
    assert variants["equivariant-no-refinement"]["score_evaluations_per_step"] == 0
    for name, refine in (("equivariant", True), ("equivariant-no-refinement", False)):
        recorded = json.loads((out / "rollouts" / name / "run.json").read_text())
        assert recorded["settings"]["refine"] is refine, name

    rows = json.loads((comparison / "comparison.json").read_text())["rows"]
    assert [row["label"] for row in rows] == [
        "baseline", "baseline [trained]", "equivariant", "equivariant [trained]",
        "equivariant-no-refinement", "equivariant-no-refinement [trained]"]

    last = out / "runs" / "equivariant" / CHECKPOINT_DIR / LAST
    before = last.stat().st_mtime_ns
    run_ablation(spec, out, device="cpu")  # everything done: nothing is redone
    assert last.stat().st_mtime_ns == before


def test_ablation_in_two_jobs_trains_each_run_once_and_compares_as_one_process(
        polymer_data, tmp_path, single_thread):
    spec = write_spec(tmp_path / "spec.yaml", polymer_data, THREE_VARIANTS)
    out = tmp_path / "ablation"
    comparison = run_ablation(spec, out, device="cpu", jobs=2)

    # one job per trained run, the rollout-only variant inside its run's job
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["baseline.log",
                                                               "equivariant.log"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["baseline", "equivariant"]
    for name in ("baseline", "equivariant", "equivariant-no-refinement"):
        assert (out / "reports" / name / "metrics.json").exists(), name
    variants = json.loads((out / VARIANTS_FILE).read_text())
    assert list(variants) == ["baseline", "equivariant", "equivariant-no-refinement"]
    rows = json.loads((comparison / "comparison.json").read_text())["rows"]
    assert [row["label"] for row in rows] == list(variants)
    last = out / "runs" / "baseline" / CHECKPOINT_DIR / LAST
    before = last.stat().st_mtime_ns
    run_ablation(spec, out, device="cpu", jobs=2)  # everything done: nothing is redone
    assert last.stat().st_mtime_ns == before


def test_a_failing_variant_job_stops_the_ablation_naming_its_log(polymer_data, tmp_path,
                                                                  single_thread):
    spec = write_spec(tmp_path / "spec.yaml", polymer_data,
                      {"baseline": [], "equivariant": EQUIVARIANT})
    out = tmp_path / "ablation"
    # a file where the baseline's run directory goes: its job cannot train
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "baseline").write_text("not a directory")
    with pytest.raises(SimulationError, match=r"baseline exited with code 1 \(see .*baseline\.log"):
        run_ablation(spec, out, device="cpu", jobs=2)
    assert "not a directory" in (out / "runs" / "baseline").read_text()


def _ablate_until(command: list[str], ready) -> str:
    """Run ``command`` until ``ready()``, then SIGTERM it; its output (it must stop as
    interrupted, every process it started with it)."""
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 300
    while not ready() and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
    children = psutil.Process(parent.pid).children()  # the two jobs (and spawn's helper)
    parent.send_signal(signal.SIGTERM)
    output = parent.communicate(timeout=300)[0].decode()
    assert parent.returncode == 128 + signal.SIGTERM, output
    assert "keeps the finished stages" in output
    _, alive = psutil.wait_procs(children, timeout=30)
    assert len(children) >= 2 and not alive  # every job stopped with it
    return output


def test_sigterm_stops_every_variant_job_and_the_same_command_continues(polymer_data, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", polymer_data,
                      {"baseline": [], "equivariant": EQUIVARIANT},
                      shared=("train.max_steps=1000000", "train.val_every=20"))
    out = tmp_path / "ablation"
    command = [sys.executable, "-m", "eqcg", "ablate", str(spec), "--out", str(out),
               "--jobs", "2", "--device", "cpu"]
    checkpoints = [out / "runs" / name / CHECKPOINT_DIR / LAST
                   for name in ("baseline", "equivariant")]

    def steps() -> list[int]:
        return [load_checkpoint(c)["step"] if c.exists() else 0 for c in checkpoints]

    _ablate_until(command, lambda: all(c.exists() for c in checkpoints))
    stopped = steps()
    assert all(step > 0 for step in stopped), stopped
    # the same command continues both runs from their checkpoints
    _ablate_until(command, lambda: all(now > then for now, then in zip(steps(), stopped)))
    assert all(now > then for now, then in zip(steps(), stopped))
    for name in ("baseline", "equivariant"):
        assert "resum" in (out / "logs" / f"{name}.log").read_text().lower(), name
