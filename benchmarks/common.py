"""Helpers shared by the benchmark scripts: devices, interleaved timing, tables, result files.

Run the scripts from the repository root (``python benchmarks/step_cost.py``); they import this
module as ``common`` because Python puts the script's directory on ``sys.path``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, RolloutConfig, load_config
from eqcg.data.store import TrajectoryDataset, load_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.graphs.system import CGSystem, TypeVocabulary, prepare_systems
from eqcg.graphs.windows import history_frames
from eqcg.models.gaussian import gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.simulation.refinement import score_evaluations
from eqcg.simulation.rollout import rollout
from eqcg.systems.electrolyte import generate_electrolyte
from eqcg.systems.polymer import generate_polymer
from eqcg.testing import random_system

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
VARIANTS = ("baseline", "equivariant")
# Untrained models time like trained ones but move beads wildly: an untrained full covariance
# can have a std of ~100 acceleration scales, and an untrained score network's Langevin updates
# can reach an Å each, so a rollout step would blow up or scatter the beads. These two knobs keep
# a step's displacements far below an Å, as a trained model's are, so that neighbour lists and
# refinement see a realistic configuration; the work done per step does not depend on them.
UNTRAINED_ACCELERATION_SCALE = 1e-3  # length per learned step
UNTRAINED_LANGEVIN_STEP_SIZE = 1e-12  # length², at the smallest level (schedules scale it up)
SECONDS_PER_DAY = 86400.0
NO_REFINEMENT = "no refinement"
_LOOP = re.compile(r"Loop time of (\S+) on (\d+) procs for (\d+) steps with (\d+) atoms")
_PERFORMANCE = re.compile(r"Performance: (\S+) (ns|tau)/day")
_CPU_USE = re.compile(r"(\S+)% CPU use")


@dataclass
class LammpsRun:
    """One ``run`` of a LAMMPS log: wall seconds, processes, MD steps, atoms, speed per day
    (``unit``: ``ns/day`` or ``tau/day``) and the % of one CPU it got (``None``: not printed)."""

    loop_seconds: float
    procs: int
    steps: int
    atoms: int
    per_day: float
    unit: str
    cpu_percent: float | None = None


def lammps_runs(log: Path) -> list[LammpsRun]:
    """Every ``run`` of a LAMMPS log that printed a ``Performance:`` line, in order."""
    runs, loop = [], None
    for line in log.read_text().splitlines():
        if match := _LOOP.match(line):
            loop = match
        elif (match := _PERFORMANCE.match(line)) and loop is not None:
            seconds, procs, steps, atoms = loop.groups()
            runs.append(LammpsRun(float(seconds), int(procs), int(steps), int(atoms),
                                  float(match.group(1)), f"{match.group(2)}/day"))
            loop = None
        elif (match := _CPU_USE.match(line)) and runs and runs[-1].cpu_percent is None:
            runs[-1].cpu_percent = float(match.group(1))
    if not runs:
        raise SystemExit(f"{log}: no 'Performance:' line; did LAMMPS finish?")
    return runs


def untrained_simulator(config: Config, vocabulary: TypeVocabulary) -> Simulator:
    """A freshly initialised simulator of ``config`` for timing (weights do not change cost)."""
    return Simulator(config.model, config.score, vocabulary, config.data.history,
                     acceleration_scale=UNTRAINED_ACCELERATION_SCALE)


def untrained_refinement(refinement: RolloutConfig, n_model_levels: int) -> RolloutConfig:
    """``refinement`` as timing-neutral Langevin steps: as many score evaluations (and the same
    excluded-volume pass), each a constant step too small for an untrained score network to move
    beads; the work of one evaluation does not depend on the sampler."""
    return RolloutConfig(refine=refinement.refine, schedule="constant", langevin_steps=1,
                         refine_levels=max(score_evaluations(refinement, n_model_levels), 1),
                         step_size=UNTRAINED_LANGEVIN_STEP_SIZE,
                         excluded_volume=refinement.excluded_volume,
                         keep_com=refinement.keep_com)


def step_refinements(config: Config) -> list[tuple[str, RolloutConfig | None]]:
    """The two steps to time: :data:`NO_REFINEMENT` (``None``) and ``config``'s refinement as
    :func:`untrained_refinement`, labelled by its schedule and score evaluations per step."""
    configured, n_levels = config.rollout, config.score.n_levels
    label = f"{configured.schedule}, {score_evaluations(configured, n_levels)} evaluations"
    return [(NO_REFINEMENT, None), (label, untrained_refinement(configured, n_levels))]


def electrolyte_dataset(data: Path | None, preset: str = "tiny") -> TrajectoryDataset:
    """The dataset at ``data``, or one system of the electrolyte ``preset`` generated with LAMMPS
    into ``benchmarks/results/data/`` (kept for later runs; ``tiny`` takes about a minute)."""
    if data is None:
        data = RESULTS_DIR / "data" / f"electrolyte-{preset}-n1"
        generate_electrolyte(data, preset, seed=0, n_systems=1, show_progress=False)
    return load_dataset(data)


def polymer_dataset(data: Path | None, preset: str, n_chains: int) -> TrajectoryDataset:
    """The dataset at ``data``, or ``n_chains`` chains of the polymer ``preset`` generated with
    LAMMPS one after another (each on a core of its own) into ``benchmarks/results/data/``
    (kept for later runs; ``small``: a few seconds per chain)."""
    if data is None:
        data = RESULTS_DIR / "data" / f"polymer-{preset}-n{n_chains}"
        generate_polymer(data, preset, seed=0, n_systems=n_chains, jobs=1, show_progress=False)
    return load_dataset(data)


def cg_system(
    dataset: TrajectoryDataset, name: str, config: Config
) -> tuple[CGSystem, TypeVocabulary]:
    """System ``name`` of ``dataset`` coarse-grained with ``config``'s CG settings."""
    [system], vocabulary = cg_systems(dataset, [name], config)
    return system, vocabulary


def cg_systems(
    dataset: TrajectoryDataset, names: Sequence[str], config: Config
) -> tuple[list[CGSystem], TypeVocabulary]:
    """Systems ``names`` of ``dataset`` coarse-grained with ``config``'s CG settings, with the
    vocabulary of their types."""
    vocabulary = TypeVocabulary.from_systems([dataset[name] for name in names])
    settings = CGSettings.from_config(config.data)
    return prepare_systems(dataset, settings, vocabulary, list(names)), vocabulary


def trajectory_system(
    trajectory: SystemTrajectory, config: Config
) -> tuple[CGSystem, TypeVocabulary]:
    """``trajectory`` coarse-grained with ``config``'s CG settings, and its own vocabulary."""
    vocabulary = TypeVocabulary.from_systems([trajectory])
    settings = CGSettings.from_config(config.data)
    return CGSystem.from_trajectory(trajectory, settings, vocabulary), vocabulary


def replicated_batch(system: CGSystem, history: int, copies: int, device: torch.device) -> Batch:
    """``copies`` copies of ``system``'s first history (frames one apart) in one batch: the
    graph a rollout of that many systems steps."""
    return cycled_batch([system], history, copies, device)


def cycled_batch(
    systems: Sequence[CGSystem], history: int, copies: int, device: torch.device
) -> Batch:
    """``copies`` systems taken from ``systems`` in turn (each its first history, frames one
    apart) in one batch: a rollout of that many systems in (nearly) equal shares."""
    graphs = [system.graph(history_frames(0, history, 1)) for system in systems]
    return Batch.from_data_list(list(itertools.islice(itertools.cycle(graphs), copies))).to(device)


def synthetic_system(
    n_chains: int, chain_length: int, n_ions: int, box: float, n_frames: int, seed: int
) -> SystemTrajectory:
    """``random_system``'s chains and ions, each molecule moved to a random place in a cubic box.

    Bond lengths and the random-walk motion stay as ``random_system`` makes them; only the
    molecules are spread over a box of edge ``box`` so that the bead density (and with it the
    number of neighbours within the cut-off) is that of a liquid electrolyte.
    """
    base = random_system("synthetic", n_chains, chain_length, n_ions, n_frames, seed=seed)
    molecule = base.topology.molecules()
    offsets = np.random.default_rng(seed).uniform(0.0, box, size=(molecule.max() + 1, 3))
    return dataclasses.replace(
        base,
        positions=base.positions + offsets[molecule],
        box=np.tile(box * np.eye(3), (n_frames, 1, 1)),
    )


def rollout_step_measure(
    simulator: Simulator, batch: Batch, refinement: RolloutConfig | None,
    generator: torch.Generator, steps: int = 1,
) -> Callable[[], float]:
    """``() -> seconds`` per step of a ``steps``-step :func:`~eqcg.simulation.rollout.rollout`
    of ``simulator``, always from ``batch``'s history (the stepping loop's own wall time,
    embedding excluded; the neighbour list's first build shared by the steps)."""

    def measure() -> float:
        return rollout(simulator, batch, steps, refinement, noise=gaussian_noise(generator),
                       show_progress=False).wall_seconds / steps

    return measure


def add_config_arguments(parser: argparse.ArgumentParser, system: str = "electrolyte") -> None:
    """``--baseline-config`` and ``--equivariant-config`` (default: ``configs/<system>_*.yaml``)
    and ``--set KEY=VALUE`` overrides applied to both."""
    for variant in VARIANTS:
        parser.add_argument(f"--{variant}-config", type=Path,
                            default=REPO / f"configs/{system}_{variant}.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override applied to both variants")


def load_variant_configs(args: argparse.Namespace) -> dict[str, Config]:
    """Each variant's config (``--*-config``) with the ``--set`` overrides applied."""
    return {v: load_config(getattr(args, f"{v}_config"), args.overrides) for v in VARIANTS}


def default_device() -> str:
    """``cuda`` when a GPU is visible, ``cpu`` otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` (CUDA when present) and ``--threads`` (CPU threads of torch, default 1).

    One thread by default: on a small machine shared with other jobs, OpenMP threads that wait
    for each other at every operator turn the many small operators of these models into
    scheduler waits (a 0.02 ms operator measured 76 ms with 2 threads on a loaded 2-core box).
    """
    parser.add_argument("--device", default=default_device(), help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1; see benchmarks/common.py)")


def setup_device(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the ``--device``."""
    torch.set_num_threads(args.threads)
    return torch.device(args.device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """A function that runs ``fn`` once and returns its wall time in seconds (device-synced)."""

    def run() -> float:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - start

    return run


def interleaved_times(
    measures: dict[str, Callable[[], float]], repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of ``repeats`` runs of every measure, taken in turns so that noise hits all alike.

    Each measure returns the seconds of one run. ``warmup`` rounds run first and are dropped.
    """
    times: dict[str, list[float]] = {name: [] for name in measures}
    for round_index in range(warmup + repeats):
        for name, measure in measures.items():
            seconds = measure()
            if round_index >= warmup:
                times[name].append(seconds)
    return times


def median(values: Sequence[float]) -> float:
    """Median of ``values``."""
    return float(statistics.median(values))


def count_parameters(module: torch.nn.Module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def match_baseline_width(config: Config, vocabulary: TypeVocabulary, target: int) -> int:
    """The baseline ``latent_dim`` whose parameter count is closest to ``target``.

    The count grows monotonically with the width, so a bisection finds the crossing.
    """

    def params(width: int) -> int:
        model = dataclasses.replace(config.model, latent_dim=width)
        sized = dataclasses.replace(config, model=model)
        return count_parameters(untrained_simulator(sized, vocabulary))

    low, high = 1, 2
    while params(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if params(mid) < target else (low, mid)
    return min((low, high), key=lambda w: abs(params(w) - target))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns; floats keep 4 significant digits."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def environment(device: torch.device) -> dict[str, Any]:
    """Torch version, threads and device name, recorded with every result."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON at ``path`` (creating its directory); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
