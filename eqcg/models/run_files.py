"""What a run directory holds, and what its checkpoints record about training; torch-free, so
that ``eqcg info`` and the layout checks read runs without loading the model code.

* ``RUN/config.yaml`` — the resolved config (its ``rollout`` section may be edited later).
* ``RUN/checkpoints/last.pt`` and ``best.pt`` — see :mod:`eqcg.models.checkpoint`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eqcg.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
CONFIG_FILE = "config.yaml"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunMetadata:
    """What a run records about its training data and progress in every checkpoint.

    Attributes:
        dataset: the dataset file it was trained on (absolute path).
        units: that dataset's unit system (``real`` or ``lj``).
        frame_interval: time between that dataset's frames (ps or tau).
        train, val, test: the system names of each part of the split.
        step: the training step the checkpoint was written at.
        val_nll: the best validation NLL up to that step.
    """

    dataset: str | None = None
    units: str | None = None
    frame_interval: float | None = None
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    step: int | None = None
    val_nll: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as a checkpoint stores it."""
        return {"dataset": self.dataset, "units": self.units,
                "frame_interval": self.frame_interval,
                "split": {"train": list(self.train), "val": list(self.val),
                          "test": list(self.test)},
                "step": self.step, "val_nll": self.val_nll}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RunMetadata:
        """The metadata stored in a checkpoint (read from ``where``); keys a checkpoint of an
        older eqcg lacks are ``None`` (or empty)."""
        if not isinstance(data, dict) or not isinstance(data.get("split", {}), dict):
            raise CheckpointError(f"{where}: unreadable run metadata {data!r}")
        split = data.get("split", {})
        return cls(dataset=data.get("dataset"), units=data.get("units"),
                   frame_interval=data.get("frame_interval"),
                   train=tuple(split.get("train", ())), val=tuple(split.get("val", ())),
                   test=tuple(split.get("test", ())), step=data.get("step"),
                   val_nll=data.get("val_nll"))
