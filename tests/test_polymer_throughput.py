"""benchmarks/polymer_throughput.py end to end at CI size: 2 tiny chains, 2 and 3 copies batched,
its JSON checked against the LAMMPS logs and the break-even formula recomputed from its timings."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from eqcg.systems.generate import LAMMPS_DIR
from eqcg.systems.lammps_runner import LOG_FILE

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "polymer_throughput.py"
CORES = 2


def log_tau_per_second(log: Path) -> float:
    """Tau per wall second of the last ``Performance:`` line of a LAMMPS log."""
    lines = re.findall(r"^Performance: (\S+) tau/day", log.read_text(), flags=re.MULTILINE)
    return float(lines[-1]) / 86400.0


@pytest.fixture(scope="module")
def report(polymer_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("polymer_throughput") / "throughput.json"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(polymer_data), "--chains", "2",
         "--copies", "2", "3", "--repeats", "1", "--warmup", "0", "--cores", str(CORES),
         "--device", "cpu", "--threads", "1", "--neighbor-search", "verlet", "device",
         "--steps", "2", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "break-even step (tau)" in done.stdout
    assert out.with_suffix(".png").is_file()
    return {**json.loads(out.read_text()), "data_dir": polymer_data}


def test_lammps_speed_is_the_logs_production_speed(report):
    assert report["benchmark"] == "polymer_throughput" and report["preset"] == "tiny"
    chains = report["chains"]
    assert len(chains) == 2
    rates = []
    for chain in chains:
        log = report["data_dir"] / LAMMPS_DIR / chain["name"] / LOG_FILE
        assert chain["lammps_tau_per_second"] == pytest.approx(log_tau_per_second(log))
        rates.append(chain["lammps_tau_per_second"])
    per_core = len(rates) / sum(1 / r for r in rates)  # equal shares of each chain on one core
    lammps = report["lammps"]
    assert lammps["cores"] == CORES
    assert lammps["chain_tau_per_second_per_core"] == pytest.approx(per_core)
    assert lammps["chain_tau_per_second"] == pytest.approx(CORES * per_core)


def test_break_even_step_from_the_reports_own_timings(report):
    assert report["frame_interval_tau"] == pytest.approx(5.0)
    assert report["trained_step_tau"] == {"baseline": 5.0, "equivariant": 5.0}  # dilation 1
    cg = [chain["cg_beads"] for chain in report["chains"]]
    rows = report["results"].values()
    assert {(r["variant"], r["refinement"] == "no refinement", r["chains"]) for r in rows} == {
        (v, bare, n) for v in ("baseline", "equivariant") for bare in (True, False) for n in (2, 3)}
    searches = [r["refinement"].rsplit(", ", 1)[-1] for r in rows
                if r["refinement"] != "no refinement"]
    assert sorted(set(searches)) == ["device search", "verlet search"]
    assert searches.count("device search") == searches.count("verlet search") == 4
    rate = report["lammps"]["chain_tau_per_second"]
    for row in rows:
        n = row["chains"]
        assert row["beads"] == sum(cg[i % len(cg)] for i in range(n))  # chains in turn
        seconds = statistics.median(row["runs_s"])
        assert row["seconds_per_step"] == pytest.approx(seconds) and seconds > 0
        assert row["chain_steps_per_second"] == pytest.approx(n / seconds)
        break_even = seconds * rate / n  # chains * dt / seconds == LAMMPS' chain·tau/s
        assert row["break_even_step_tau"] == pytest.approx(break_even)
        assert row["speedup_at_trained_step"] == pytest.approx(5.0 / break_even)
