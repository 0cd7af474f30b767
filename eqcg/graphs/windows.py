"""Training windows: ``k`` history frames ``d`` frames apart, and the frame ``d`` after them.

With dilation ``d`` one learned step spans ``d`` recorded frames. Window ``(system, t0)`` has
history frames ``t0, t0 + d, ..., t0 + (k - 1) d`` and target frame ``t0 + k d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from eqcg.config import DataConfig
from eqcg.errors import DataError
from eqcg.graphs.system import CGGraph, CGSystem


def history_frames(start: int, history: int, dilation: int) -> np.ndarray:
    """``(history,)`` frame indices of a window starting at ``start``."""
    return start + dilation * np.arange(history)


class WindowDataset(Dataset):
    """All windows of a list of CG systems, as :class:`CGGraph` items.

    Args:
        systems: coarse-grained systems.
        history: ``k``, number of history frames.
        dilation: ``d``, recorded frames per learned step.
        stride: frames between the starts of consecutive windows.
        dtype: float dtype of positions.
    """

    def __init__(
        self,
        systems: list[CGSystem],
        history: int,
        dilation: int = 1,
        stride: int = 1,
        dtype: torch.dtype = torch.float32,
    ):
        if history < 2:
            raise DataError(f"history must be >= 2 frames (velocities need two), got {history}")
        if dilation < 1 or stride < 1:
            raise DataError(f"dilation and stride must be >= 1, got {dilation} and {stride}")
        self.systems = systems
        self.history = history
        self.dilation = dilation
        self.dtype = dtype
        span = history * dilation
        index = []
        for i, system in enumerate(systems):
            starts = np.arange(0, system.n_frames - span, stride)
            index.append(np.stack([np.full_like(starts, i), starts], axis=1))
        self.index = np.concatenate(index) if index else np.zeros((0, 2), dtype=np.int64)
        if len(self.index) == 0:
            longest = max((s.n_frames for s in systems), default=0)
            raise DataError(
                f"no training windows: a window spans {span + 1} frames (history {history} x "
                f"dilation {dilation} + 1) but the longest trajectory has {longest}"
            )

    @property
    def beads(self) -> np.ndarray:
        """``(n_windows,)`` beads of each window's system."""
        return np.array([s.n_beads for s in self.systems], dtype=np.int64)[self.index[:, 0]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> CGGraph:
        system_index, start = self.index[item]
        frames = history_frames(int(start), self.history, self.dilation)
        target = int(frames[-1] + self.dilation)
        return self.systems[system_index].graph(frames, target, dtype=self.dtype)


def split_systems(
    names: list[str], fractions: tuple[float, float, float], seed: int,
    n_atoms: list[int] | None = None, test_min_atoms: int = 0,
    val_systems: Sequence[str] = (), test_systems: Sequence[str] = (),
) -> tuple[list[str], list[str], list[str]]:
    """Split system names (never frames) into train/validation/test by ``fractions``.

    ``val_systems`` / ``test_systems`` name the systems of a split outright (e.g. one held-out
    box per temperature and salt); the other systems are shuffled and shared, by ``fractions``
    renormalised, among the splits left unnamed, training taking the rest. With
    ``test_min_atoms > 0``, every other system of at least that many atoms (``n_atoms``, one
    per name) is held out for testing too, so the model is tested on sizes it never saw. Every
    non-empty fraction gets at least one system when there are enough systems; the training
    split always gets at least one.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise DataError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    named = _named_splits(names, val_systems, test_systems)
    unseen_sizes: list[str] = []
    if test_min_atoms > 0:
        if n_atoms is None or len(n_atoms) != len(names):
            raise DataError("test_min_atoms needs the atom count of every system")
        unseen_sizes = [name for name, n in zip(names, n_atoms)
                        if n >= test_min_atoms and name not in named]
    taken = named | set(unseen_sizes)
    rest = [name for name in names if name not in taken]
    val_share = 0.0 if val_systems else fractions[1]
    test_share = 0.0 if test_systems else fractions[2]
    total = fractions[0] + val_share + test_share if named else 1.0
    n_val, n_test = (_split_counts(len(rest), val_share / total, test_share / total)
                     if total > 0 else (0, 0))
    n_train = len(rest) - n_val - n_test
    if n_train < 1:
        what = (f"{len(rest)} systems below test_min_atoms={test_min_atoms}" if test_min_atoms > 0
                else f"{len(rest)} systems" + (" besides the named ones" if named else ""))
        raise DataError(f"{what} are too few for split {fractions}: no training system left")
    order = np.random.default_rng(seed).permutation(len(rest))
    picked = [rest[i] for i in order]
    return (picked[:n_train], list(val_systems) or picked[n_train : n_train + n_val],
            (list(test_systems) or picked[n_train + n_val :]) + unseen_sizes)


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Validation and test counts of ``n`` shuffled systems; a non-empty fraction gets at least
    one system when there are enough."""
    n_val = int(round(val_fraction * n))
    n_test = int(round(test_fraction * n))
    if val_fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    if test_fraction > 0 and n_test == 0 and n - n_val >= 2:
        n_test = 1
    return n_val, n_test


def _named_splits(
    names: list[str], val_systems: Sequence[str], test_systems: Sequence[str]
) -> set[str]:
    """The systems ``data.val_systems`` and ``data.test_systems`` name, checked: each must be
    a system of the dataset, and none in both."""
    for key, chosen in (("data.val_systems", val_systems), ("data.test_systems", test_systems)):
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise DataError(f"{key} names systems the dataset does not hold: {unknown} "
                            f"(it holds {len(names)}: {sorted(names)})")
        if len(set(chosen)) != len(chosen):
            raise DataError(f"{key} names a system twice: {list(chosen)}")
    both = sorted(set(val_systems) & set(test_systems))
    if both:
        raise DataError(f"data.val_systems and data.test_systems both name {both}")
    return set(val_systems) | set(test_systems)


def split_of(
    names: list[str], n_atoms: list[int], data: DataConfig
) -> tuple[list[str], list[str], list[str]]:
    """:func:`split_systems` of a dataset's ``names`` (with their atom counts) as ``data``
    (the run config's ``data`` section) asks."""
    return split_systems(names, data.split, data.split_seed, n_atoms=n_atoms,
                         test_min_atoms=data.test_min_atoms, val_systems=data.val_systems,
                         test_systems=data.test_systems)
