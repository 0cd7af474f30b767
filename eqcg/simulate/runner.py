"""``eqcg rollout``: load a run, start from reference frames, roll out, write trajectories."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch_geometric.data import Batch

from eqcg.cg.mapping import CGSettings
from eqcg.data.graph import CGSystem, prepare_systems
from eqcg.data.store import load_dataset
from eqcg.data.windows import history_frames
from eqcg.errors import DataError
from eqcg.run_info import write_run_info
from eqcg.simulate.langevin import gaussian_noise
from eqcg.simulate.rollout import Refinement, RolloutFailure, RolloutResult, rollout
from eqcg.simulate.writer import bead_trajectory, write_rollout
from eqcg.train.checkpoint import BEST, load_simulator
from eqcg.train.distributed import DistributedContext, distributed_context


def start_batch(
    systems: list[CGSystem], history: int, dilation: int, start: int, dtype: torch.dtype
) -> Batch:
    """A batch of ``systems`` holding their reference history from frame ``start``."""
    frames = history_frames(start, history, dilation)
    for system in systems:
        if frames[-1] >= system.n_frames:
            raise DataError(
                f"system {system.name!r} has {system.n_frames} frames; a history of {history} "
                f"frames {dilation} apart from frame {start} needs {frames[-1] + 1}"
            )
    return Batch.from_data_list([s.graph(frames, dtype=dtype) for s in systems])


def run_rollout(
    run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    n_steps: int,
    *,
    systems: Sequence[str] | None = None,
    checkpoint: str = BEST,
    deterministic: bool = False,
    refinement: Refinement | None = None,
    save_every: int = 1,
    start_frame: int = 0,
    seed: int = 0,
    device: str = "auto",
    dtype: torch.dtype = torch.float32,
    show_progress: bool = True,
    command: Sequence[str] = (),
) -> Path:
    """Roll the model of ``run`` out on ``systems`` of dataset ``data``; write into ``out``.

    ``systems`` defaults to the run's test split (all systems when the split is empty or the
    dataset is another one). ``refinement`` defaults to the run's score config. Returns the
    output directory. When a system blows up, the frames before it are written and
    :class:`~eqcg.simulate.rollout.RolloutFailure` is raised. Under ``torchrun`` the systems
    are split across ranks (rank ``r`` takes every ``world``-th) and rank 0 writes them all.
    """
    torch_device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    ctx = distributed_context(torch_device)
    try:
        return _run_rollout(
            run, data, Path(out), n_steps, systems, checkpoint, deterministic, refinement,
            save_every, start_frame, seed, ctx, dtype, show_progress, command,
        )
    finally:
        ctx.close()


def _run_rollout(
    run, data, out: Path, n_steps: int, systems, checkpoint: str, deterministic: bool,
    refinement: Refinement | None, save_every: int, start_frame: int, seed: int,
    ctx: DistributedContext, dtype: torch.dtype, show_progress: bool, command: Sequence[str],
) -> Path:
    simulator, config, metadata = load_simulator(run, checkpoint, map_location=ctx.device)
    simulator = simulator.to(device=ctx.device, dtype=dtype)
    dataset = load_dataset(data)
    if systems is None:
        same_data = Path(metadata.get("dataset", "")).resolve() == Path(dataset.path).resolve()
        test = metadata.get("split", {}).get("test", [])
        systems = test if (same_data and test) else dataset.names
    systems = list(systems)
    mine = systems[ctx.rank :: ctx.world]
    if refinement is None:
        refinement = Refinement.from_config(config.score)
    dilation = config.data.dilation
    first = int(history_frames(start_frame, simulator.history, dilation)[-1])
    failure: RolloutFailure | None = None
    wall_seconds = 0.0
    trajectories = []
    if mine:
        settings = CGSettings(config.data.cg_level, config.data.whole_molecule_max_atoms,
                              config.data.cg_seed)
        cg_systems = prepare_systems(dataset, settings, simulator.vocabulary, mine)
        batch = start_batch(cg_systems, simulator.history, dilation, start_frame, dtype)
        batch = batch.to(ctx.device)
        generator = torch.Generator(device=ctx.device)
        generator.manual_seed(seed + ctx.rank)
        try:
            result = rollout(
                simulator, batch, n_steps, deterministic=deterministic, refinement=refinement,
                save_every=save_every, noise=gaussian_noise(generator), system_names=mine,
                show_progress=show_progress and ctx.is_main,
            )
        except RolloutFailure as exc:
            failure, result = exc, exc.result
        wall_seconds = result.wall_seconds
        trajectories = _trajectories(cg_systems, batch, result, first, dilation, config,
                                     deterministic, refinement, metadata.get("val_nll"))
    failures = [str(failure)] if failure else []
    if ctx.world > 1:
        trajectories, failures, wall_seconds = _gather(ctx, trajectories, failures, wall_seconds,
                                                       systems)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_rollout(out, trajectories)
        write_run_info(out, config.to_dict(), seed, command, extra={
            "run": str(run), "data": str(dataset.path), "systems": systems,
            "steps": n_steps, "deterministic": deterministic, "refinement": vars(refinement),
            "wall_seconds": wall_seconds, "ranks": ctx.world, "failed": failures or None,
        })
    if failures:
        raise RolloutFailure("; ".join(failures), result=None)
    return out


def _gather(
    ctx: DistributedContext, trajectories: list, failures: list[str], wall_seconds: float,
    order: list[str],
) -> tuple[list, list[str], float]:
    """Collect every rank's trajectories (in ``order``), failures and the longest wall time."""
    gathered: list = [None] * ctx.world
    dist.all_gather_object(gathered, (trajectories, failures, wall_seconds))
    by_name = {t.name: t for part, _, _ in gathered for t in part}
    return ([by_name[name] for name in order if name in by_name],
            [f for _, part, _ in gathered for f in part],
            max(seconds for _, _, seconds in gathered))


def _trajectories(
    systems: list[CGSystem], batch: Batch, result: RolloutResult, first: int, dilation: int,
    config, deterministic: bool, refinement: Refinement, val_nll: float | None,
) -> list:
    positions = result.positions.double().numpy()
    steps = result.steps.numpy()
    ptr = batch.ptr.tolist()
    trajectories = []
    for i, system in enumerate(systems):
        frame_interval = float(system.time[1] - system.time[0])
        time = system.time[first] + steps * dilation * frame_interval
        trajectories.append(bead_trajectory(
            system, positions[:, ptr[i] : ptr[i + 1]], time, system.box[first], {
                "reference_system": system.name,
                "cg_level": config.data.cg_level,
                "whole_molecule_max_atoms": config.data.whole_molecule_max_atoms,
                "cg_seed": config.data.cg_seed,
                "start_frame": first,
                "dilation": dilation,
                "wall_seconds": result.wall_seconds,
                "model": config.model.variant,
                "deterministic": deterministic,
                "refine": refinement.enabled,
                "val_nll": val_nll,
            },
        ))
    return trajectories


__all__ = ["run_rollout", "start_batch"]
