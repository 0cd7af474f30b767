"""benchmarks/gpu_check.sh in its CI-sized CPU form: every phase runs and the report says
plainly that CUDA was absent. (On a GPU machine the same script runs at full size.)"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eqcg.config import load_config
from eqcg.models.checkpoint import load_checkpoint, resolve_checkpoint
from eqcg.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
SMALL = ["model.embed_dim=8", "model.latent_dim=16", "model.message_passing_steps=1",
         "model.score_message_passing_steps=1", "train.max_steps=2", "train.val_every=2",
         "train.val_windows=4"]


def load_helper():
    """``benchmarks/gpu_check.py`` as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    # the interpreter running the tests, whether or not its environment is on PATH
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def run_dir(polymer_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "run"
    train(load_config("configs/polymer_baseline.yaml", SMALL), polymer_data, out, device="cpu",
          show_progress=False)
    return out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU form is for machines without CUDA")
def test_cpu_form_runs_every_phase_and_says_cuda_is_absent(polymer_data, run_dir, tmp_path):
    done = gpu_check("--device", "cpu", "--data", str(polymer_data), "--run", str(run_dir),
                     "--steps", "3", "--copies", "1", "--repeats", "1", "--no-compile",
                     "--out", str(tmp_path), "--", "tests/test_rollout_sync.py", "-k", "verlet")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [report_file] = tmp_path.glob("gpu_check-cpu-*.json")
    report = json.loads(report_file.read_text())
    device = report["device"]
    assert device["name"].startswith("CPU: ") and device["asked"] == "cpu"
    assert device["cuda_available"] is False and device["note"].startswith("CUDA absent")
    assert {name: p["status"] for name, p in report["phases"].items()} == {
        "tests": "ok", "benchmark": "ok", "rollout": "ok"}
    assert report["tests"]["passed"] >= 1 and report["tests"]["failed"] == 0
    rows = report["learned_vs_lammps"]["rows"]
    assert {(r["variant"], r["systems"]) for r in rows} == {("baseline", 1), ("equivariant", 1)}
    assert len(rows) == 4 and all(r["seconds_per_step"] > 0 for r in rows)  # +- refinement
    rollout = report["rollout"]
    held_out = load_checkpoint(resolve_checkpoint(run_dir))["metadata"]["split"]["test"]
    assert rollout["status"] == "complete" and rollout["steps_done"] == 3
    assert rollout["neighbor_search"] == "device"  # the sync-free search, as on the GPU
    assert rollout["systems"] == held_out and rollout["peak_memory_bytes"] > 0
    table = report_file.with_suffix(".md").read_text()
    assert table.startswith(f"# GPU check: {device['name']}\n")
    assert "**CUDA absent: torch" in table and "| complete | device | 3 / 3 |" in table
    assert table in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_without_a_gpu_is_refused(tmp_path):
    done = gpu_check("--data", str(tmp_path), "--run", str(tmp_path), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "CUDA absent: --device cuda needs a GPU" in done.stderr
    assert not list(tmp_path.iterdir())


def test_report_marks_timed_out_and_failed_phases(tmp_path):
    helper = load_helper()
    (tmp_path / "phases.tsv").write_text("tests\t1\t3.5\nbenchmark\t124\t150.0\n")
    (tmp_path / "rollout.json").write_text(json.dumps({
        "steps_requested": 10000, "steps_done": 1200, "status": "time limit", "systems": ["a"],
        "neighbor_search": "device",
        "beads": 70, "steps_per_second": 8.0, "peak_memory_bytes": 3 * 2**20,
        "peak_memory_kind": "torch.cuda.max_memory_allocated"}))
    report = helper.build_report(tmp_path, "cpu")
    assert report["phases"] == {
        "tests": {"exit_code": 1, "seconds": 3.5, "status": "failed (1)"},
        "benchmark": {"exit_code": 124, "seconds": 150.0, "status": "timed out"},
        "rollout": {"status": "not run"}}
    assert report["tests"] is None and report["learned_vs_lammps"] is None
    table = helper.markdown(report)
    assert "| benchmark | timed out | 150.0 |" in table
    assert "| time limit | device | 1200 / 10000 | 1 | 70 | 8 | 3 MiB (torch.cuda" in table
