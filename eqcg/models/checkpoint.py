"""Checkpoints: a full training state to resume, and a smaller model artifact to roll out.

Both are plain dictionaries of tensors, numbers, strings and lists, written atomically
(temporary file, fsync, rename) and read back with ``torch.load(weights_only=True)``, so
loading never executes pickled code.

* ``RUN/checkpoints/last.pt`` — model, optimizer, scheduler, step: ``eqcg train --resume``.
* ``RUN/checkpoints/best.pt`` — model only (lowest validation NLL): what ``eqcg rollout`` reads.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from eqcg.config import Config, config_from_dict
from eqcg.errors import CheckpointError, ConfigError, EqcgError
from eqcg.graphs.system import TypeVocabulary
from eqcg.models.run_files import BEST, CHECKPOINT_DIR, CONFIG_FILE, LAST, RunMetadata
from eqcg.models.simulator import Simulator
from eqcg.runtime.atomic import atomic_path
from eqcg.runtime.boundary import doing

FORMAT_NAME = "eqcg-checkpoint"
FORMAT_VERSION = 1
# what a resumed run may change: its budget and how often it logs, validates and checkpoints
RESUMABLE_KEYS = ("train.max_steps", "train.val_every", "train.log_every",
                  "train.checkpoint_every", "train.val_windows")
# sections that do not describe the trained model: a run's config.yaml may change them
UNTRAINED_SECTIONS = ("rollout",)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically to ``path`` (serialised in memory first, so that a full disk
    is an OSError from Python's write, named by :func:`~eqcg.runtime.boundary.doing`)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **state}, buffer)
    with doing("writing the checkpoint", path), atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely; :class:`CheckpointError` names the file when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path}: holds pickled Python objects{what}, not just tensors and numbers; eqcg "
            "refuses to unpickle untrusted objects (unpickling can run arbitrary code), so this "
            "is not a checkpoint eqcg can load"
        ) from None
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


def model_state(simulator: Simulator, config: Config, metadata: RunMetadata) -> dict[str, Any]:
    """Everything needed to rebuild ``simulator`` without the training data."""
    return {
        "config": config.to_dict(),
        "vocabulary": {
            "atom_types": list(simulator.vocabulary.atom_types),
            "bond_types": list(simulator.vocabulary.bond_types),
        },
        "history": simulator.history,
        "model": simulator.state_dict(),
        "metadata": metadata.to_dict(),
    }


def build_simulator(state: dict[str, Any], where: str) -> tuple[Simulator, Config]:
    """Rebuild the simulator stored in a checkpoint ``state`` (read from ``where``)."""
    config = config_from_dict(state["config"], where=where)
    vocabulary = TypeVocabulary(
        tuple(state["vocabulary"]["atom_types"]), tuple(state["vocabulary"]["bond_types"])
    )
    simulator = Simulator(config.model, config.score, vocabulary, state["history"])
    _check_finite(state["model"], where)
    try:
        simulator.load_state_dict(_without_e3nn_constants(state["model"], simulator))
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not fit the stored config ({exc})") from None
    return simulator, config


def _check_finite(weights: dict[str, torch.Tensor], where: str) -> None:
    """:class:`CheckpointError` naming the first weight that holds NaN or inf."""
    for key, value in weights.items():
        if torch.is_tensor(value) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise CheckpointError(
                    f"{where}: weight {key} holds {bad} non-finite value(s) (NaN or inf) of "
                    f"{value.numel()}: the training diverged or the file is damaged; roll out "
                    "another checkpoint (--checkpoint last.pt / best.pt) or retrain")


def _without_e3nn_constants(weights: dict[str, torch.Tensor], simulator: Simulator
                            ) -> dict[str, torch.Tensor]:
    """``weights`` less the constant buffers e3nn's ``Linear`` and ``Gate`` modules stored
    (``output_mask``, empty ``weight``/``bias``) that the fused equivariant layers, which
    replaced them, do not have: checkpoints written before still load."""
    expected = simulator.state_dict()
    return {
        key: value for key, value in weights.items()
        if key in expected or not (key.endswith(".output_mask") or value.numel() == 0)
    }


def config_changes(stored: Config, requested: Config, allowed: tuple[str, ...] = ()) -> list[str]:
    """``key: stored -> requested`` for every config value of the trained model that differs
    (not :data:`UNTRAINED_SECTIONS`), except ``allowed``."""
    old, new = stored.to_dict(), requested.to_dict()
    return [
        f"{section}.{key}: {old[section].get(key)!r} -> {new[section].get(key)!r}"
        for section in old if section not in UNTRAINED_SECTIONS
        for key in {**old[section], **new[section]}
        if old[section].get(key) != new[section].get(key) and f"{section}.{key}" not in allowed
    ]


def check_same_run(stored: Config, requested: Config, stored_where: str, requested_where: str,
                   advice: str, error: type[EqcgError] = ConfigError) -> None:
    """Refuse (``error``) a ``requested`` config that differs from the ``stored`` one in more
    than :data:`RESUMABLE_KEYS`, naming the keys and both variants."""
    changes = config_changes(stored, requested, RESUMABLE_KEYS)
    if not changes:
        return
    variants = (f"{stored_where} holds a {stored.model.variant!r} model, {requested_where} "
                f"asks for {requested.model.variant!r}; "
                if stored.model.variant != requested.model.variant else "")
    raise error(
        f"{variants}{requested_where} differs from {stored_where} in {'; '.join(changes)} "
        f"(only {', '.join(RESUMABLE_KEYS)} may change); {advice}"
    )


def resolve_checkpoint(path: str | os.PathLike, which: str = BEST) -> Path:
    """The checkpoint file for a run directory (``which``: best.pt or last.pt) or a file path.

    A run without ``best.pt`` yet (no validation has improved on the start) but with
    ``last.pt`` is a :class:`CheckpointError` suggesting ``--checkpoint last.pt``.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    file = path / CHECKPOINT_DIR / which
    last = path / CHECKPOINT_DIR / LAST
    if which == BEST and not file.exists() and last.exists():
        raise CheckpointError(
            f"{file}: checkpoint not found (the run has written no best.pt yet: it does so at "
            f"validations); roll out its latest state with --checkpoint last.pt"
        )
    return file


def _run_config(run_dir: Path, config: Config, file: Path) -> Config:
    """``config`` (the checkpoint's) with the rollout settings of the run's ``config.yaml``;
    a checkpoint that is not of the run ``config.yaml`` describes is refused."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return config
    try:
        labelled = config_from_dict(yaml.safe_load(path.read_text()), where=str(path))
    except (yaml.YAMLError, ConfigError) as exc:
        raise CheckpointError(f"{path}: unreadable run config ({exc})") from None
    check_same_run(config, labelled, str(file), str(path),
                   "the checkpoint is not of this run: replace it or the config", CheckpointError)
    return dataclasses.replace(config, rollout=labelled.rollout)


def load_simulator(
    path: str | os.PathLike, which: str = BEST, map_location: str | torch.device = "cpu"
) -> tuple[Simulator, Config, RunMetadata]:
    """Load a trained simulator from a run directory or checkpoint file.

    Returns the simulator (eval mode), its config (with the rollout settings of the run's
    ``config.yaml`` when ``path`` is a run directory) and the metadata stored with it.
    """
    file = resolve_checkpoint(path, which)
    state = load_checkpoint(file, map_location)
    simulator, config = build_simulator(state, str(file))
    if Path(path).is_dir():
        config = _run_config(Path(path), config, file)
    simulator.eval()
    return simulator, config, RunMetadata.from_dict(state.get("metadata", {}), str(file))
