"""``eqcg ablate --jobs N``: the variants of an ablation in up to N processes at once.

Each job is one trained run and the variants that roll it out (:func:`variant_groups`): it
trains the run, then rolls out and evaluates each of its variants, in a spawned process whose
output goes to ``out/logs/<run>.log`` and whose torch uses ``cores / N`` threads. The parent only
schedules: it starts a job whenever fewer than N run, shows how many are done, and on Ctrl-C or
SIGTERM stops every job the way the command line stops (each saves what it has, so the next
``eqcg ablate`` continues) before the interruption propagates. A job that fails stops the
others and raises :class:`~eqcg.errors.SimulationError` naming its variants and log.

Everything a job writes is a stage :func:`~eqcg.commands.ablation.run_ablation` reuses, so the
ablation afterwards passes over the variants once more in order, skipping every finished
stage, and writes ``variants.json`` and the comparison as a one-process run does.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from tqdm import tqdm

from eqcg.errors import SimulationError
from eqcg.runtime.interrupt import interruptible, signal_of

LOG_DIR = "logs"
_STOP_SECONDS = 120.0  # a stopped job's time to save its state before it is killed


def variant_groups(runs: dict[str, str]) -> dict[str, list[str]]:
    """Trained run -> the variants that roll it out, in spec order (``runs``: variant -> its
    run, as :func:`~eqcg.commands.ablation.training_runs` gives it)."""
    groups: dict[str, list[str]] = {}
    for name, run in runs.items():
        groups.setdefault(run, []).append(name)
    return groups


def threads_per_job(jobs: int) -> int:
    """Torch threads of each of ``jobs`` processes: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)


def run_variant_jobs(
    spec_path: Path, runs: dict[str, str], out: Path, data: Path, device: str, jobs: int
) -> None:
    """Train, roll out and evaluate every variant of the spec at ``spec_path`` (``runs``:
    variant -> its trained run) in up to ``jobs`` processes (the module docstring says how)."""
    groups = variant_groups(runs)
    logs = out / LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    pending = deque(groups.items())
    running: dict[object, tuple[multiprocessing.Process, list[str], Path]] = {}
    failed: list[str] = []
    bar = tqdm(total=len(groups), desc=f"variants ({jobs} jobs)", unit="run",
               dynamic_ncols=True)
    try:
        while (pending or running) and not failed:
            while pending and len(running) < jobs:
                run, names = pending.popleft()
                log = logs / f"{run}.log"
                process = context.Process(
                    target=_job, name=f"eqcg-ablate-{run}",
                    args=(str(spec_path), str(out), str(data), device, run, names, str(log),
                          threads_per_job(jobs)))
                process.start()
                running[process.sentinel] = (process, names, log)
                bar.write(f"started {', '.join(names)} (log: {log})")
            for sentinel in wait(list(running)):
                process, names, log = running.pop(sentinel)
                process.join()
                if process.exitcode != 0:
                    failed.append(f"{', '.join(names)} exited with code {process.exitcode} "
                                  f"(see {log})")
                bar.update()
    finally:
        bar.close()
        _stop([process for process, _, _ in running.values()])
    if failed:
        raise SimulationError(f"{out}: variant job failed: {'; '.join(failed)}; the finished "
                              "stages are kept: run the same command to continue")


def _stop(processes: list[multiprocessing.Process]) -> None:
    """SIGTERM ``processes`` (each saves its state and exits), SIGKILL any still running
    :data:`_STOP_SECONDS` later."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(_STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _job(spec_path: str, out: str, data: str, device: str, run: str, names: list[str],
         log: str, threads: int) -> None:
    """One job, in its own process: the stages of ``names``, the variants that roll out the
    trained ``run`` (training it first), its output into ``log``."""
    import torch

    from eqcg.commands.ablation import load_spec, run_variant_stages

    with open(log, "a", buffering=1) as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
        sys.stdout = sys.stderr = stream
        torch.set_num_threads(threads)
        spec = load_spec(spec_path)
        try:
            with interruptible():
                for name in names:
                    run_variant_stages(spec, Path(out), Path(data), name, run, device)
        except KeyboardInterrupt as exc:
            print(f"{', '.join(names)}: {exc}; the finished stages are kept", flush=True)
            raise SystemExit(128 + signal_of(exc)) from None
