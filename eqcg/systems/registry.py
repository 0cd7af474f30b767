"""Built-in systems by name: each a :class:`SystemKind` that generates reference MD datasets.

A kind is one record: its name (``eqcg generate NAME``, ``eqcg simulate --generate-history
NAME``, an ablation spec's ``data.generate``), the unit system of its data, its presets, and, as
``"module:function"`` paths imported only when used, the function that generates a dataset and
the one that builds the short LAMMPS run of one fresh system's history. Listing the kinds (the
command line's choices and ``--help``) thus imports neither LAMMPS nor the data readers, as long
as a kind's presets live in a light module (as :mod:`eqcg.systems.polymer_presets` does).

The built-in kinds are registered at the end of this module: a new built-in system is its
generator module (with a light presets module) and one :func:`register_system_kind` call there.
A kind defined elsewhere registers itself the same way (e.g. from a test module).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eqcg.errors import ConfigError
from eqcg.systems import electrolyte_presets, polymer_presets
from eqcg.units import UNIT_SYSTEMS

if TYPE_CHECKING:  # eqcg.systems.generate imports the data readers
    from eqcg.systems.generate import SystemSpec

DEFAULT_PRESET = "tiny"  # every kind has it: the preset of a command or spec that names none


class Preset(Protocol):
    """What the presets of every kind tell alike (sizes and physics are each kind's own)."""

    @property
    def timestep(self) -> float:
        """MD time step (in the kind's time unit: tau for ``lj``, ps for ``real``)."""

    @property
    def frame_interval(self) -> float:
        """Time between recorded frames (in the kind's time unit)."""


@dataclass(frozen=True)
class SystemKind:
    """A built-in system: how eqcg generates its reference MD.

    Attributes:
        name: what commands and specs call it (``eqcg generate NAME``).
        description: one line for ``--help``.
        units: unit system of its datasets (``lj`` or ``real``, :mod:`eqcg.units`).
        presets: preset name -> :class:`Preset` (sizes, run lengths, physics); includes
            :data:`DEFAULT_PRESET`.
        generator: ``"module:function"`` of ``(out, *, preset, seed, n_systems, jobs) -> Path``:
            runs the MD of the preset named ``preset`` (``n_systems``: its count of systems
            unless ``None``; ``jobs``: parallel jobs, ``None`` for one per core), writes the
            dataset into the directory ``out`` and returns the dataset file.
        history: ``"module:function"`` of ``(preset, seed, n_frames, frame_interval) ->``
            :class:`~eqcg.systems.generate.SystemSpec`: the LAMMPS run of one fresh system of
            ``preset`` (a :class:`Preset`) drawn from ``seed``, recording ``n_frames`` frames
            ``frame_interval`` apart (a whole number of ``preset.timestep``), whose frames are
            the history of ``eqcg simulate --generate-history``; ``None``: the kind generates
            no history.
    """

    name: str
    description: str
    units: str
    presets: Mapping[str, Preset]
    generator: str
    history: str | None = None

    def preset(self, name: str) -> Preset:
        """The preset called ``name``; :class:`ConfigError` listing this kind's presets
        otherwise."""
        if name not in self.presets:
            raise ConfigError(f"unknown {self.name} preset {name!r}; known: "
                              f"{', '.join(self.presets)}")
        return self.presets[name]

    def generate(
        self,
        out: str | os.PathLike,
        *,
        preset: str = DEFAULT_PRESET,
        seed: int = 0,
        n_systems: int | None = None,
        jobs: int | None = None,
    ) -> Path:
        """Run the MD of the preset named ``preset`` and write its dataset into ``out``; returns
        the dataset file. A preset this kind lacks is a :class:`ConfigError` before any work."""
        self.preset(preset)
        generate = _load(self.generator)
        return generate(out, preset=preset, seed=seed, n_systems=n_systems, jobs=jobs)

    def history_spec(
        self, preset: Preset, seed: int, n_frames: int, frame_interval: float
    ) -> SystemSpec:
        """The LAMMPS run of one fresh system recording ``n_frames`` frames ``frame_interval``
        apart (see :attr:`history`); :class:`ConfigError` when the kind generates none."""
        if self.history is None:
            raise ConfigError(f"the {self.name} system generates no history")
        return _load(self.history)(preset, seed, n_frames, frame_interval)


_KINDS: dict[str, SystemKind] = {}


def register_system_kind(kind: SystemKind) -> SystemKind:
    """Add ``kind`` to the registry (a kind of the same name is replaced)."""
    if kind.units not in UNIT_SYSTEMS:
        raise ValueError(f"system {kind.name!r}: unknown units {kind.units!r}; known: "
                         f"{', '.join(UNIT_SYSTEMS)}")
    if DEFAULT_PRESET not in kind.presets:
        raise ValueError(f"system {kind.name!r}: no {DEFAULT_PRESET!r} preset (the default of "
                         "every command)")
    for path in (kind.generator, kind.history):
        if path is not None and not all(path.partition(":")[::2]):
            raise ValueError(f"system {kind.name!r}: {path!r} is not a 'module:function' path")
    _KINDS[kind.name] = kind
    return kind


def unregister_system_kind(name: str) -> None:
    """Remove the kind called ``name`` (one a test registered, say)."""
    del _KINDS[name]


def system_kinds() -> dict[str, SystemKind]:
    """All registered kinds by name, in the order they were registered."""
    return dict(_KINDS)


def get_system_kind(name: str) -> SystemKind:
    """The kind called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    if not isinstance(name, str) or name not in _KINDS:
        raise ConfigError(f"unknown system {name!r}; known: {', '.join(sorted(_KINDS))}")
    return _KINDS[name]


def _load(path: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` path names (importing its module)."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


register_system_kind(SystemKind(
    name="polymer", description="bead-spring polymer chains in implicit solvent, lj units",
    units="lj", presets=polymer_presets.PRESETS,
    generator="eqcg.systems.polymer:generate_polymer",
    history="eqcg.systems.polymer:history_spec",
))
register_system_kind(SystemKind(
    name="electrolyte", description="PEO/LiTFSI polymer electrolyte boxes, all-atom, real units",
    units="real", presets=electrolyte_presets.PRESETS,
    generator="eqcg.systems.electrolyte:generate_electrolyte",
    history="eqcg.systems.electrolyte:history_spec",
))
