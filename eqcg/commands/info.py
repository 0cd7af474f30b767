"""``eqcg info``: a summary of a dataset, a run directory, a checkpoint or a rollout (torch is
loaded only to read a checkpoint)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from eqcg.data.rollout_file import ROLLOUT_FILE, RUNNING, read_rollout_state
from eqcg.data.store import DATASET_FILE, load_dataset
from eqcg.errors import CheckpointError, DataError
from eqcg.models.run_files import BEST, CHECKPOINT_DIR, LAST, RunMetadata


def _describe_checkpoint(path: Path) -> str:
    from eqcg.models.checkpoint import load_checkpoint  # torch: only for a checkpoint

    state = load_checkpoint(path)
    config = state["config"]
    n_params = sum(t.numel() for t in state["model"].values() if t.dtype.is_floating_point)
    lines = [
        f"checkpoint {path}",
        f"  variant: {config['model']['variant']} (covariance {config['model']['covariance']}), "
        f"{n_params:,} weights",
        f"  history k={state['history']}, dilation d={config['data']['dilation']}, "
        f"cg_level={config['data']['cg_level']}, radius={config['model']['radius']}",
        f"  atom types: {', '.join(state['vocabulary']['atom_types'])}",
    ]
    if "step" in state:
        lines.append(f"  step {state['step']}, best validation NLL {state['best_val_nll']:.4f}")
    metadata = RunMetadata.from_dict(state.get("metadata", {}), str(path))
    if metadata.train or metadata.val or metadata.test:
        lines.append(f"  split: train {len(metadata.train)}, val {len(metadata.val)}, "
                     f"test {len(metadata.test)}")
    return "\n".join(lines)


def _rollout_status(path: Path) -> str:
    """A line on how far a streamed rollout got ("" for files written before streaming)."""
    try:
        _, state = read_rollout_state(path)
    except DataError:
        return ""
    line = f"\n  status: {state.status} at step {state.step}"
    if state.status == RUNNING:
        line += " (continue with eqcg rollout ... --resume)"
    return line + (f": {state.message}" if state.message else "")


def describe(path: str | os.PathLike) -> str:
    """A human-readable summary of whatever eqcg file or directory ``path`` is."""
    path = Path(path)
    if path.is_file() and path.suffix == ".pt":
        return _describe_checkpoint(path)
    if (path / CHECKPOINT_DIR).is_dir():
        parts = [f"run {path}"]
        for name in (BEST, LAST):
            file = path / CHECKPOINT_DIR / name
            if not file.exists():
                parts.append(f"checkpoint {file}: missing")
                continue
            try:
                parts.append(_describe_checkpoint(file))
            except CheckpointError as exc:  # the other checkpoint may still be fine
                parts.append(f"checkpoint {file}: unusable: {exc}")
        return "\n".join(parts)
    for candidate in (path / ROLLOUT_FILE, path / DATASET_FILE, path):
        if candidate.is_file() and candidate.suffix == ".h5":
            with load_dataset(candidate) as dataset:
                text = dataset.summary()
            if candidate.name == ROLLOUT_FILE:
                text += _rollout_status(candidate)
            info = path / "run.json"
            if candidate.name == ROLLOUT_FILE and info.exists():
                run = json.loads(info.read_text())
                text += (f"\n  rollout of {run.get('run')}: {run.get('steps')} steps, "
                         f"{run.get('wall_seconds', 0):.1f} s wall")
            return text
    raise DataError(f"{path}: not a dataset, run directory, checkpoint or rollout")
