"""A rollout under ``torchrun``: every rank rolls out its share of the systems, rank 0 gathers
them and writes ``rollout.h5`` once at the end (not resumable)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch_geometric.data import Batch

from eqcg.data.rollout_file import (
    COMPLETE,
    FAILED,
    RolloutHeader,
    RolloutState,
    create_rollout_file,
)
from eqcg.data.trajectory import SystemTrajectory
from eqcg.graphs.system import CGSystem
from eqcg.models.gaussian import gaussian_noise
from eqcg.models.simulator import Simulator
from eqcg.runtime.distributed import DistributedContext
from eqcg.simulation.job import RolloutJob
from eqcg.simulation.rollout import RolloutFailure, rollout
from eqcg.simulation.streaming import finish


def roll_out_ranks(
    job: RolloutJob, simulator: Simulator, systems: list[CGSystem], batch: Batch | None,
    generator: torch.Generator, ctx: DistributedContext,
) -> None:
    """Roll this rank's systems out; rank 0 gathers them all and writes them at the end."""
    failure: RolloutFailure | None = None
    trajectories: list[SystemTrajectory] = []
    wall_seconds = 0.0
    if batch is not None:
        try:
            result = rollout(simulator, batch, job.n_steps, job.settings,
                             save_every=job.save_every, noise=gaussian_noise(generator),
                             system_names=[s.name for s in systems],
                             show_progress=job.show_progress and ctx.is_main)
        except RolloutFailure as exc:
            failure, result = exc, exc.result
        wall_seconds = result.wall_seconds
        trajectories, _ = job.trajectories(systems, batch, result.positions.double().numpy(),
                                           result.steps.numpy())
    failures = [str(failure)] if failure else []
    blown_up = failure.blown_up if failure else {}
    trajectories, failures, blown_up, wall_seconds = _gather(
        ctx, trajectories, failures, blown_up, wall_seconds, job.systems)
    if ctx.is_main:
        for trajectory in trajectories:
            trajectory.attrs["wall_seconds"] = wall_seconds
        status, message = (FAILED, "; ".join(failures)) if failures else (COMPLETE, "")
        header = RolloutHeader(job.request, [t.name for t in trajectories],
                               np.zeros(1, dtype=np.int64), np.zeros(0))
        create_rollout_file(job.path, trajectories, header, RolloutState(
            job.n_steps, np.zeros((0, 0, 3)), np.zeros(0, np.uint8), wall_seconds, status,
            message, blown_up))
        job.write_info(wall_seconds, ctx.world, failures or None)
        finish(job)
    if failures:
        raise RolloutFailure("; ".join(failures), result=None, blown_up=blown_up)


def _gather(
    ctx: DistributedContext, trajectories: list[SystemTrajectory], failures: list[str],
    blown_up: dict[str, int], wall_seconds: float, order: list[str],
) -> tuple[list[SystemTrajectory], list[str], dict[str, int], float]:
    """Collect every rank's trajectories (in ``order``), failures, blown-up systems and the
    longest wall time."""
    gathered: list = [None] * ctx.world
    dist.all_gather_object(gathered, (trajectories, failures, blown_up, wall_seconds))
    by_name = {t.name: t for part, _, _, _ in gathered for t in part}
    return ([by_name[name] for name in order if name in by_name],
            [f for _, part, _, _ in gathered for f in part],
            {name: step for _, _, part, _ in gathered for name, step in part.items()},
            max(seconds for _, _, _, seconds in gathered))


__all__ = ["roll_out_ranks"]
