"""One rollout call's fixed part: its settings, systems and output, and the files it starts.

:class:`RolloutJob` is built once by :func:`eqcg.simulation.runner.execute` and handed to the
code that steps and writes: :mod:`eqcg.simulation.streaming` (one process, resumable) and
:mod:`eqcg.simulation.gathering` (``torchrun`` ranks).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.config import Config, RolloutConfig
from eqcg.data.rollout_file import ROLLOUT_FILE, RolloutAttrs, RolloutHeader
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError
from eqcg.graphs.system import CGSystem
from eqcg.graphs.windows import history_frames
from eqcg.models.run_files import RunMetadata
from eqcg.runtime.arguments import at_least
from eqcg.runtime.run_info import write_run_info
from eqcg.simulation.writer import bead_trajectory


def start_batch(
    systems: list[CGSystem], history: int, dilation: int, start: int, dtype: torch.dtype
) -> Batch:
    """A batch of ``systems`` holding their reference history from frame ``start``."""
    at_least("start_frame (--start-frame)", start, 0)
    frames = history_frames(start, history, dilation)
    for system in systems:
        if frames[-1] >= system.n_frames:
            raise DataError(
                f"system {system.name!r} has {system.n_frames} frames; a history of {history} "
                f"frames {dilation} apart from frame {start} needs {frames[-1] + 1}"
            )
    return Batch.from_data_list([s.graph(frames, dtype=dtype) for s in systems])


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutJob:
    """Everything about one rollout call that does not change while it steps.

    Attributes:
        run: the run directory or checkpoint rolled out (as given).
        out: the output directory.
        n_steps: the last learned step.
        config: the run's config.
        metadata: what the run recorded about its training.
        settings: sampling and refinement (the run's ``rollout`` section with the call's
            changes).
        systems: every system's name, in batch order.
        stride: recorded frames per learned step in the start trajectories.
        start_frame: the first history frame in them.
        save_every: learned steps between saved frames.
        seed: seed of the sampling noise.
        request: JSON-able record of all of the above that shapes the trajectory (stored in
            ``rollout.h5``, compared on resume).
        dataset_hash: content hash of the dataset the systems come from (``None``: none).
        command: the command line recorded in ``run.json``.
        compile: whether the networks were compiled.
        show_progress: draw a progress bar.
        flush_seconds: least wall-clock seconds between two chunks written to ``rollout.h5``.
    """

    run: str
    out: Path
    n_steps: int
    config: Config
    metadata: RunMetadata
    settings: RolloutConfig
    systems: list[str]
    stride: int
    start_frame: int
    save_every: int
    seed: int
    request: dict[str, Any]
    dataset_hash: str | None
    command: tuple[str, ...]
    compile: bool
    show_progress: bool
    flush_seconds: float

    @property
    def path(self) -> Path:
        """The rollout file."""
        return self.out / ROLLOUT_FILE

    def write_info(self, wall_seconds: float, ranks: int, failures: list[str] | None) -> None:
        """Write ``run.json`` of the output directory."""
        write_run_info(self.out, self.config.to_dict(), self.seed, list(self.command),
                       extra={**self.request, "dataset_hash": self.dataset_hash,
                              "run": self.run, "steps": self.n_steps, "compile": self.compile,
                              "wall_seconds": wall_seconds, "ranks": ranks,
                              "failed": failures})

    def trajectories(
        self, systems: list[CGSystem], batch: Batch, positions: np.ndarray, steps: np.ndarray,
    ) -> tuple[list[SystemTrajectory], RolloutHeader]:
        """Each system's bead trajectory of ``positions (n_frames, n_beads, 3)`` (batch order)
        at learned ``steps (n_frames,)``, and the rollout file's header."""
        data = self.config.data
        first = int(history_frames(self.start_frame, batch[keys.POS_HISTORY].shape[1],
                                   self.stride)[-1])
        ptr = batch.ptr.cpu().numpy()
        time_per_step = np.array([self.stride * (s.time[1] - s.time[0]) for s in systems])
        trajectories = []
        for i, system in enumerate(systems):
            attrs = RolloutAttrs(
                reference_system=system.name, cg_level=data.cg_level,
                whole_molecule_max_atoms=data.whole_molecule_max_atoms, cg_seed=data.cg_seed,
                start_frame=first, dilation=self.stride, wall_seconds=0.0,
                model=self.config.model.variant, val_nll=self.metadata.val_nll)
            trajectories.append(bead_trajectory(
                system, positions[:, ptr[i] : ptr[i + 1]],
                system.time[first] + steps * time_per_step[i], system.box[first],
                {**attrs.to_attrs(), "deterministic": self.settings.deterministic,
                 "refine": self.settings.refine}))
        header = RolloutHeader(self.request, [s.name for s in systems], ptr, time_per_step)
        return trajectories, header


__all__ = ["RolloutJob", "start_batch"]
