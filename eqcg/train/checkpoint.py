"""Checkpoints: a full training state to resume, and a smaller model artifact to roll out.

Both are plain dictionaries of tensors, numbers, strings and lists, written atomically
(temporary file, fsync, rename) and read back with ``torch.load(weights_only=True)``, so
loading never executes pickled code.

* ``RUN/checkpoints/last.pt`` — model, optimizer, scheduler, step: ``eqcg train --resume``.
* ``RUN/checkpoints/best.pt`` — model only (lowest validation NLL): what ``eqcg rollout`` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from eqcg.config import Config, config_from_dict
from eqcg.data.graph import TypeVocabulary
from eqcg.errors import CheckpointError
from eqcg.models.simulator import Simulator

FORMAT_NAME = "eqcg-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely; :class:`CheckpointError` names the file when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an eqcg checkpoint")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} is newer than this eqcg "
            f"({FORMAT_VERSION}); upgrade eqcg"
        )
    return state


def model_state(simulator: Simulator, config: Config, metadata: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild ``simulator`` without the training data."""
    return {
        "config": config.to_dict(),
        "vocabulary": {
            "atom_types": list(simulator.vocabulary.atom_types),
            "bond_types": list(simulator.vocabulary.bond_types),
        },
        "history": simulator.history,
        "model": simulator.state_dict(),
        "metadata": metadata,
    }


def build_simulator(state: dict[str, Any], where: str) -> tuple[Simulator, Config]:
    """Rebuild the simulator stored in a checkpoint ``state`` (read from ``where``)."""
    config = config_from_dict(state["config"], where=where)
    vocabulary = TypeVocabulary(
        tuple(state["vocabulary"]["atom_types"]), tuple(state["vocabulary"]["bond_types"])
    )
    simulator = Simulator(config.model, config.score, vocabulary, state["history"])
    try:
        simulator.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not fit the stored config ({exc})") from None
    return simulator, config


def resolve_checkpoint(path: str | os.PathLike, which: str = BEST) -> Path:
    """The checkpoint file for a run directory (``which``: best.pt or last.pt) or a file path."""
    path = Path(path)
    if path.is_dir():
        return path / CHECKPOINT_DIR / which
    return path


def load_simulator(
    path: str | os.PathLike, which: str = BEST, map_location: str | torch.device = "cpu"
) -> tuple[Simulator, Config, dict[str, Any]]:
    """Load a trained simulator from a run directory or checkpoint file.

    Returns the simulator (eval mode), its config and the metadata stored with it.
    """
    file = resolve_checkpoint(path, which)
    state = load_checkpoint(file, map_location)
    simulator, config = build_simulator(state, str(file))
    simulator.eval()
    return simulator, config, state.get("metadata", {})
