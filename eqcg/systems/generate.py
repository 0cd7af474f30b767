"""Drive reference-MD generation: one LAMMPS job per system, run in parallel, then one dataset.

A generator module (``polymer``, ``electrolyte``) turns a preset into a list of
:class:`SystemSpec`. Each spec writes its LAMMPS inputs into its own directory
``OUT/lammps/<name>/`` (kept beside the dataset so a user can rerun or inspect them), LAMMPS runs
there, and the spec reads the result back as a :class:`~eqcg.data.trajectory.SystemTrajectory`.
Systems whose LAMMPS run already finished are not run again, so an interrupted generation
resumes where it stopped; a spec that can continue an interrupted run from its last restart
file (``continue_inputs``) continues it instead of starting it over. Each system's directory
records what generated it
(``eqcg-system.json``: preset, seed, number of systems), and a generation with other settings
refuses to reuse it. The dataset file is written once, atomically, at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eqcg.data.store import write_dataset
from eqcg.data.trajectory import LAMMPS_WALL_SECONDS, SystemTrajectory
from eqcg.errors import ConfigError
from eqcg.runtime.atomic import write_text_atomic
from eqcg.runtime.interrupt import Interrupted, signal_of
from eqcg.runtime.run_info import write_run_info
from eqcg.systems.lammps_runner import (
    LOG_FILE,
    LammpsProcesses,
    lammps_finished,
    lammps_wall_seconds,
    run_lammps,
)

LAMMPS_DIR = "lammps"
RECORD_FILE = "eqcg-system.json"  # in each system's LAMMPS directory: what generated it


@dataclass
class LammpsJob:
    """What LAMMPS must run for one system.

    Attributes:
        input_file: the input script, relative to the system's directory.
        total_steps: MD steps of the whole simulation.
        done_steps: steps done before this script starts (a continued run).
        log_file: the log LAMMPS opens; ``None`` for a script that opens it itself (a
            continuation appending to the log of the run it continues).
    """

    input_file: str
    total_steps: int
    done_steps: int = 0
    log_file: str | None = LOG_FILE


@dataclass
class SystemSpec:
    """One system to simulate.

    Attributes:
        name: unique system name (also its directory under ``OUT/lammps``).
        write_inputs: writes the LAMMPS input files into the given directory.
        read_output: reads the finished run in the given directory as a trajectory.
        continue_inputs: writes the inputs that continue an interrupted run in the given
            directory from its last restart file; returns ``None`` when there is none (the run
            then starts over with ``write_inputs``). ``None``: runs always start over.
    """

    name: str
    write_inputs: Callable[[Path], LammpsJob]
    read_output: Callable[[Path], SystemTrajectory]
    continue_inputs: Callable[[Path], LammpsJob | None] | None = None


def generation_record(name: str, preset: Any, seed: int, n_systems: int) -> dict[str, Any]:
    """What a generation writes into every system directory (and must find there to reuse a
    finished run): the preset's ``name``, a short hash of all the settings of ``preset`` (its
    dataclass; so a preset whose parameters changed is not mistaken for the one that made the
    run), seed and system count."""
    settings = json.dumps(asdict(preset), sort_keys=True)
    return {"preset": name, "settings": hashlib.sha256(settings.encode()).hexdigest()[:12],
            "seed": seed, "n_systems": n_systems}


def _describe(record: dict) -> str:
    return ", ".join(f"{key} {value!r}" for key, value in record.items())


def check_workdir(workdir: Path, record: dict) -> bool:
    """Whether ``workdir`` still needs ``record`` written; a :class:`ConfigError` naming the
    directory and both settings when it holds a run made with other settings, or files of
    unknown origin."""
    path = workdir / RECORD_FILE
    if path.is_file():
        existing = json.loads(path.read_text())
        if existing != record:
            raise ConfigError(
                f"{workdir} holds a run of {_describe(existing)}; this generation asks for "
                f"{_describe(record)}: use another --out (or delete that directory)"
            )
        return False
    if workdir.is_dir() and any(workdir.iterdir()):
        raise ConfigError(
            f"{workdir} holds files without {RECORD_FILE}, so its preset and seed are unknown; "
            f"this generation asks for {_describe(record)}: use another --out (or delete that "
            "directory)"
        )
    return True


def _write_record(workdir: Path, record: dict) -> None:
    write_text_atomic(workdir / RECORD_FILE, json.dumps(record))


def _with_wall_time(system: SystemTrajectory, workdir: Path) -> SystemTrajectory:
    """``system`` with the wall time of its finished LAMMPS run in ``workdir`` (seconds) in its
    attrs."""
    wall = lammps_wall_seconds(workdir)
    return replace(system, attrs={**system.attrs, LAMMPS_WALL_SECONDS: wall})


def prepare_job(spec: SystemSpec, workdir: Path) -> LammpsJob:
    """The LAMMPS job of an unfinished system: its continuation from the last restart file
    when the spec can continue one and there is one, else a fresh start."""
    workdir.mkdir(parents=True, exist_ok=True)
    if spec.continue_inputs is not None and (job := spec.continue_inputs(workdir)) is not None:
        return job
    return spec.write_inputs(workdir)


def _overall_bar(jobs: dict[str, LammpsJob], n_systems: int, show: bool) -> tqdm:
    """A bar over all systems, in systems (fractions of a running one count), starting at what
    is already done; its ETA is for the whole generation."""
    done = n_systems - len(jobs) + sum(job.done_steps / job.total_steps for job in jobs.values())
    return tqdm(total=n_systems, initial=done, desc="systems", unit="system", disable=not show,
                position=0, bar_format="{l_bar}{bar}| {n:.2f}/{total} [{elapsed}<{remaining}]")


def _stopped_message(exc: KeyboardInterrupt, stopped: list[Path]) -> str:
    return (f"{str(exc) or 'interrupted'}; stopped LAMMPS in {', '.join(map(str, stopped))}: "
            "the same command runs those systems again (continuing from their last restart "
            "file where there is one) and keeps the finished ones")


def run_specs(
    specs: list[SystemSpec],
    out: str | os.PathLike,
    *,
    jobs: int | None = None,
    threads_per_job: int = 1,
    source: str = "",
    record: dict | None = None,
    show_progress: bool = True,
) -> Path:
    """Run every spec's LAMMPS job (``jobs`` at a time) and write the dataset into ``out``.

    ``record`` (JSON-able: preset, seed, ...) is what generates these specs; it is written into
    every system's directory and must match what an earlier generation there recorded, so runs
    of other settings are never reused. Finished systems are skipped and interrupted ones
    continued where their spec can (:func:`prepare_job`). Progress: one bar per running system
    and one over all systems, each with its ETA. Returns the path of the dataset file.

    Ctrl-C or SIGTERM (a :class:`KeyboardInterrupt`) starts no further system and terminates
    the running LAMMPS processes and what they started (SIGTERM, then SIGKILL after a few
    seconds) instead of waiting for them; the :class:`~eqcg.runtime.interrupt.Interrupted`
    raised names the systems it stopped.
    """
    out = Path(out)
    jobs = jobs or max(1, (os.cpu_count() or 1) // threads_per_job)
    workdirs = {spec.name: out / LAMMPS_DIR / spec.name for spec in specs}
    if record is not None:  # every directory is checked before any is written
        for workdir in [w for w in workdirs.values() if check_workdir(w, record)]:
            _write_record(workdir, record)
    pending = {spec.name: prepare_job(spec, workdirs[spec.name]) for spec in specs
               if not lammps_finished(workdirs[spec.name])}

    free_lines: queue.SimpleQueue[int] = queue.SimpleQueue()
    for line in range(1, jobs + 1):  # one progress-bar line per running job, below the total
        free_lines.put(line)
    overall = _overall_bar(pending, len(specs), show_progress)
    overall_lock = threading.Lock()
    processes = LammpsProcesses()

    def advance(job: LammpsJob, steps: int) -> None:
        with overall_lock:  # fractions of many jobs must not sum past the total
            overall.update(min(steps / job.total_steps, overall.total - overall.n))

    def simulate(name: str, job: LammpsJob) -> None:
        line = free_lines.get()
        try:
            run_lammps(
                job.input_file,
                workdirs[name],
                total_steps=job.total_steps,
                done_steps=job.done_steps,
                log_file=job.log_file,
                description=name,
                threads=threads_per_job,
                show_progress=show_progress,
                position=line,
                on_progress=lambda steps: advance(job, steps),
                processes=processes,
            )
        finally:
            free_lines.put(line)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(simulate, n, j) for n, j in pending.items()]
        try:
            for future in as_completed(futures):
                future.result()
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: start no further system
            pool.shutdown(wait=False, cancel_futures=True)
            stopped = processes.stop()
            if not stopped:
                raise
            raise Interrupted(_stopped_message(exc, stopped), signal_of(exc)) from None
    overall.close()
    systems = (_with_wall_time(spec.read_output(workdirs[spec.name]), workdirs[spec.name])
               for spec in specs)  # one at a time
    path = write_dataset(out, systems, source=source)
    write_run_info(out, None, None, [], extra={"source": source,
                                               "systems": [spec.name for spec in specs]})
    return path
