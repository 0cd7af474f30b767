"""Roll a trained simulator out: predict, Euler step, refine, append to history, repeat.

Many systems run batched in one graph. The loop keeps everything on the model's device: a
system whose positions turn non-finite or jump farther than ``max_displacement`` in one step is
frozen at its last good positions and its first bad step is recorded on the device; the host
looks at that record at save points and every ``GUARD_EVERY`` steps, then stops with an error
naming system and step. Frames saved before the failure are returned with the error, so nothing
is lost. Between those checks the loop makes no host sync of its own. With the default
``rollout.neighbor_search: verlet`` each network evaluation reads one edge count from its
neighbour list, which decides on rebuilds in that same read, and a rebuild syncs as vesin's
search does (:class:`~eqcg.graphs.neighbors.VerletList`); with ``device`` the edges come in
fixed slots from a search on the device and nothing reads the device between the loop's checks,
the networks included (:class:`~eqcg.graphs.neighbors.DeviceNeighbors`;
``tests/test_rollout_sync.py`` counts both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.profiler import record_function
from torch_geometric.data import Batch
from torch_geometric.utils import scatter
from tqdm.auto import tqdm

from eqcg import keys
from eqcg.config import RolloutConfig
from eqcg.errors import SimulationError
from eqcg.graphs.neighbors import DeviceNeighbors, VerletList, cg_edges
from eqcg.models.gaussian import NoiseFunction, gaussian_noise
from eqcg.models.integrator import append_frame, euler_step
from eqcg.models.simulator import Prediction, Simulator
from eqcg.runtime.arguments import at_least
from eqcg.runtime.profiling import EXCLUDED_VOLUME, GUARDS, INTEGRATOR, REFINEMENT, SAVE
from eqcg.simulation.refinement import (
    keep_molecule_centres,
    noise_ladder,
    push_apart,
    refine_sample,
)

# Verlet skin of the rollout's neighbour list, as a fraction of the model's cut-off radius
NEIGHBOR_SKIN = 0.1
# the host looks at the blow-up record every this many steps between save points (one read per
# check), so a rollout saved rarely stops within this many steps of a failure
GUARD_EVERY = 10
# called at every save point as on_save(step, saved positions (n_beads, 3), history after step)
SaveCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass
class RolloutResult:
    """Saved frames of a rollout.

    Attributes:
        positions: ``(n_saved, n_beads, 3)`` bead positions on the CPU; frame 0 is the last
            history frame (the starting state, at step ``start_step``). A rollout that does not
            keep its frames (``keep_frames=False``) holds only the last saved one.
        steps: ``(n_saved,)`` learned-step index of each saved frame.
        wall_seconds: wall-clock time of the stepping loop.
    """

    positions: torch.Tensor
    steps: torch.Tensor
    wall_seconds: float


class RolloutFailure(SimulationError):
    """A rollout that went non-finite or exploded; carries the frames saved before it (``None``
    once they are written to disk) and ``blown_up``: system name -> the step it blew up at."""

    def __init__(self, message: str, result: RolloutResult | None,
                 blown_up: dict[str, int] | None = None):
        super().__init__(message)
        self.result = result
        self.blown_up = dict(blown_up or {})


@torch.no_grad()
def rollout(
    simulator: Simulator,
    batch: Batch,
    n_steps: int,
    settings: RolloutConfig | None = None,
    *,
    save_every: int = 1,
    max_displacement: float | None = None,
    noise: NoiseFunction | None = None,
    system_names: list[str] | None = None,
    show_progress: bool = True,
    start_step: int = 0,
    on_save: SaveCallback | None = None,
    keep_frames: bool = True,
) -> RolloutResult:
    """Run learned steps ``start_step + 1`` to ``n_steps`` from ``batch``'s position history.

    Args:
        simulator: trained model (its device and dtype are used).
        batch: batched CG graphs with ``pos_history``.
        n_steps: the last learned step (``n_steps - start_step`` steps are taken).
        settings: how to step: sampling or the mean acceleration, and score refinement
            (a run's ``rollout`` section; ``None``: sample every step, no refinement).
        save_every: keep every ``save_every``-th step.
        max_displacement: a bead moving farther in one step marks its system exploded
            (default: twice the cut-off radius).
        noise: source of the standard normal noise for sampling and Langevin steps, called with
            a ``(n_beads, 3)`` tensor to match (default: :func:`gaussian_noise` unseeded).
            Rotating what it returns rotates the whole rollout (equivariance checks).
        system_names: names used in error messages (default ``system <i>``).
        show_progress: draw a progress bar with steps/s.
        start_step: the step ``batch``'s history is at (a resumed rollout: its noise source
            must be in the state it had after that step).
        on_save: called at every save point once the step is known to be good (a resumable
            state: nothing of the step is left to do).
        keep_frames: keep every saved frame in memory for the result; ``False`` (with an
            ``on_save`` that stores them) keeps only the latest, so that memory stays flat
            however many steps are taken.

    One neighbour list serves the dynamics prediction and every score evaluation of the rollout
    (``settings.neighbor_search``): a Verlet list (skin ``NEIGHBOR_SKIN`` x radius) rebuilt only
    when a bead has moved more than half the skin, or the device search; the edges are those a
    fresh search would find.

    Raises :class:`RolloutFailure` (with the frames saved so far, or the last of them with
    ``keep_frames=False``) when a system blows up.
    """
    at_least("save_every", save_every, 1)
    at_least("n_steps", n_steps, at_least("start_step", start_step, 0) + 1)
    noise = noise or gaussian_noise()
    limit = max_displacement if max_displacement is not None else 2.0 * simulator.radius
    n_graphs = batch.num_graphs
    graph_of_bead = batch.batch
    history = batch[keys.POS_HISTORY].clone()
    features = simulator.embed(batch)
    settings = settings or RolloutConfig(refine=False)
    neighbors = (DeviceNeighbors(simulator.radius) if settings.neighbor_search == "device"
                 else VerletList(simulator.radius, NEIGHBOR_SKIN * simulator.radius))
    first_bad = torch.full((n_graphs,), -1, dtype=torch.long, device=history.device)
    overflow_at = torch.full((), -1, dtype=torch.long, device=history.device)
    saved, saved_steps = [history[:, -1].clone()], [start_step]
    started = time.perf_counter()
    bar = tqdm(total=n_steps, initial=start_step, desc="rollout", unit="step",
               disable=not show_progress, dynamic_ncols=True)
    try:
        for step in range(start_step + 1, n_steps + 1):
            last = history[:, -1]
            prediction = simulator.predict(batch, history, features, neighbors)
            with record_function(INTEGRATOR):
                accel = prediction.acceleration
                if settings.deterministic:
                    acceleration = accel.mean
                else:
                    acceleration = accel.draw(noise)
                next_pos = euler_step(history, acceleration)
            if settings.refine:
                next_pos = _refine(simulator, batch, next_pos, last, features, prediction,
                                   settings, noise, neighbors)
            with record_function(GUARDS):
                bead_ok = (torch.isfinite(next_pos).all(-1)
                           & ((next_pos - last).norm(dim=-1) < limit))
                graph_bad = scatter((~bead_ok).to(torch.long), graph_of_bead, dim=0,
                                    dim_size=n_graphs, reduce="max").bool()
                first_bad = torch.where(graph_bad & (first_bad < 0), step, first_bad)
                frozen = (first_bad >= 0)[graph_of_bead]
                next_pos = torch.where(frozen[:, None], last, next_pos)
                if isinstance(neighbors, DeviceNeighbors):
                    overflow_at = torch.where((overflow_at < 0) & neighbors.overflow, step,
                                              overflow_at)
            with record_function(INTEGRATOR):
                history = append_frame(history, next_pos)
            if step % GUARD_EVERY == 0 and step % save_every:
                _check(first_bad, overflow_at, neighbors, system_names, saved, saved_steps,
                       started, step)
            if step % save_every == 0 or step == n_steps:
                with record_function(SAVE):
                    if not keep_frames:
                        del saved[:-1], saved_steps[:-1]
                    saved.append(next_pos.clone())
                    saved_steps.append(step)
                    _check(first_bad, overflow_at, neighbors, system_names, saved[:-1],
                           saved_steps[:-1], started, step)
                    if on_save is not None:
                        on_save(step, saved[-1], history)
            bar.update()
    finally:
        bar.close()
    return _result(saved, saved_steps, started)


def _refine(
    simulator: Simulator, batch: Batch, next_pos: torch.Tensor, last: torch.Tensor,
    features: torch.Tensor, prediction: Prediction, settings: RolloutConfig,
    noise: NoiseFunction, neighbors: VerletList | DeviceNeighbors,
) -> torch.Tensor:
    """Refine ``next_pos`` with the simulator's score network (:mod:`eqcg.simulation.refinement`):
    the sampler of ``settings`` down its noise ladder, then the optional excluded-volume pass
    and centre-of-mass correction."""

    def score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return simulator.score(batch, x, last, sigma, features, prediction.latent, neighbors)

    with record_function(REFINEMENT):
        sigmas = noise_ladder(settings, simulator.sigmas,
                              prediction.acceleration.marginal_covariance(),
                              batch.batch, batch.num_graphs)
        refined = refine_sample(settings, score, next_pos, sigmas, noise)
    if settings.excluded_volume > 0:
        with record_function(EXCLUDED_VOLUME):
            edge_index, edge_vec, _, edge_mask = cg_edges(
                refined, batch[keys.BOX], batch[keys.PBC], batch.batch, batch.ptr,
                batch[keys.CG_BOND_INDEX], simulator.radius, neighbors,
            )
            refined = push_apart(refined, edge_index, edge_vec, settings.excluded_volume,
                                 edge_mask)
    if settings.keep_com:
        refined = keep_molecule_centres(refined, next_pos, batch[keys.BEAD_MASSES],
                                        batch[keys.BEAD_MOLECULE])
    return refined


def _result(saved: list[torch.Tensor], steps: list[int], started: float) -> RolloutResult:
    return RolloutResult(
        positions=torch.stack(saved).cpu(),
        steps=torch.tensor(steps),
        wall_seconds=time.perf_counter() - started,
    )


def _check(
    first_bad: torch.Tensor, overflow_at: torch.Tensor, neighbors: VerletList | DeviceNeighbors,
    names: list[str] | None, saved: list[torch.Tensor], steps: list[int], started: float,
    detected: int,
) -> None:
    """Raise :class:`RolloutFailure` (with the frames ``saved`` at ``steps``) when a system has
    blown up or the device neighbour search ran out of slots; one host read."""
    blown_up, overflowed = torch.stack([(first_bad >= 0).any(), overflow_at >= 0]).tolist()
    if blown_up:
        raise _failure(first_bad, names, saved, steps, started, detected)
    if overflowed:
        raise RolloutFailure(
            f"device neighbour search: more pairs within the cut-off than its "
            f"{neighbors.capacity} slots ({neighbors.capacity_factor:g} x the count at the "
            f"first step) at step {int(overflow_at)} (noticed at step {detected}); the frames "
            f"saved up to step {steps[-1]} were kept; roll out with "
            "rollout.neighbor_search: verlet",
            _result(saved, steps, started))


def _failure(
    first_bad: torch.Tensor, names: list[str] | None, saved: list[torch.Tensor],
    steps: list[int], started: float, detected: int,
) -> RolloutFailure:
    blown_up = {names[i] if names else f"system {i}": int(s)
                for i, s in enumerate(first_bad.tolist()) if s >= 0}
    described = ", ".join(f"{name} at step {s}" for name, s in blown_up.items())
    return RolloutFailure(
        f"rollout blew up (non-finite positions or a bead jumping farther than the limit): "
        f"{described} (noticed at step {detected}); the frames saved up to step {steps[-1]} "
        f"were kept",
        _result(saved, steps, started),
        blown_up,
    )
