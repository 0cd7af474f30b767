"""Turn trajectory files a user already has into an eqcg dataset (``eqcg ingest``).

The reader is chosen from the file names (``fmt`` overrides):

* ``lammps`` — data file ``.data``/``.lmp``/``.lammps`` (or ``data.*``) with text dumps
  ``.lammpstrj``/``.dump`` (or ``dump.*``) and/or binary dumps ``.dcd``/``.xtc``/``.trr``
  (``dump dcd``, ``dump xtc``): :func:`~eqcg.data.lammps_files.read_lammps`. Types, masses and
  bonds come from the data file. ``units`` is required (LAMMPS files do not say which they use).
* ``mdtraj`` — topology ``.pdb``/``.psf``/``.prmtop``/``.parm7``/``.h5``/``.gro`` with
  trajectories ``.dcd``/``.xtc``/``.trr``/``.nc``/``.h5`` (or none: the topology holds the
  frames): :func:`~eqcg.data.mdtraj_reader.read_mdtraj`.
* ``ase`` — one ``.extxyz``/``.xyz``/``.traj`` file, given as the topology or as the single
  trajectory: :func:`~eqcg.data.ase_reader.read_ase`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eqcg.data.ase_reader import read_ase
from eqcg.data.lammps_files import read_lammps
from eqcg.data.mdtraj_reader import read_mdtraj
from eqcg.data.store import write_dataset
from eqcg.data.trajectory import TEMPERATURE_ATTRS, SystemTrajectory
from eqcg.errors import DataError
from eqcg.runtime.atomic import atomic_path, sync
from eqcg.runtime.boundary import doing
from eqcg.runtime.interrupt import interruptible
from eqcg.runtime.names import check_name
from eqcg.runtime.outputs import claim_output
from eqcg.runtime.run_info import RUN_INFO_FILE, run_info_text

PathLike = str | os.PathLike


@dataclass(frozen=True)
class _Options:
    """What the user said about one system beyond its files."""

    name: str
    units: str | None
    timestep: float | None
    frame_interval: float | None


def _read_lammps(topology: Path, trajectories: list[Path], o: _Options) -> SystemTrajectory:
    if o.units is None:
        raise DataError(f"{topology}: LAMMPS files do not record their units; pass --units real|lj")
    return read_lammps(
        topology,
        trajectories,
        units=o.units,
        name=o.name,
        timestep=o.timestep,
        frame_interval=o.frame_interval,
    )


def _read_mdtraj(topology: Path, trajectories: list[Path], o: _Options) -> SystemTrajectory:
    _reject_timestep(topology, o)
    return read_mdtraj(
        topology,
        trajectories,
        name=o.name,
        units=o.units or "real",
        frame_interval=o.frame_interval,
    )


def _read_ase(topology: Path, trajectories: list[Path], o: _Options) -> SystemTrajectory:
    _reject_timestep(topology, o)
    files = trajectories or [topology]
    if len(files) != 1:
        raise DataError(f"{topology}: the ASE reader takes one trajectory file, got {len(files)}")
    return read_ase(files[0], name=o.name, units=o.units or "real", frame_interval=o.frame_interval)


def _reject_timestep(topology: Path, o: _Options) -> None:
    if o.timestep is not None:
        raise DataError(f"{topology}: timestep applies to LAMMPS dumps only; use frame_interval")


@dataclass(frozen=True)
class FileFormat:
    """File names one reader accepts, and the reader.

    Attributes:
        topology_suffixes: suffixes of the topology file (lower case, with the dot).
        trajectory_suffixes: suffixes of the trajectory files.
        topology_prefix: a name prefix that also marks a topology file (``data.``), or ``""``.
        trajectory_prefix: a name prefix that also marks a trajectory file (``dump.``).
        read: reads ``(topology, trajectories, options)`` as one system.
    """

    topology_suffixes: frozenset[str]
    trajectory_suffixes: frozenset[str]
    topology_prefix: str
    trajectory_prefix: str
    read: Callable[[Path, list[Path], _Options], SystemTrajectory]

    def accepts(self, topology: Path, trajectories: list[Path]) -> bool:
        """Whether every file name fits this format."""
        return _matches(topology, self.topology_suffixes, self.topology_prefix) and all(
            _matches(p, self.trajectory_suffixes, self.trajectory_prefix) for p in trajectories
        )


def _matches(path: Path, suffixes: frozenset[str], prefix: str) -> bool:
    return path.suffix.lower() in suffixes or bool(prefix and path.name.startswith(prefix))


_ASE_SUFFIXES = frozenset({".extxyz", ".xyz", ".traj"})

#: The readers ``ingest`` chooses from, by name (the ``fmt`` argument), tried in this order: a
#: LAMMPS data file with DCD/XTC/TRR trajectories is ``lammps``, any other topology with them
#: ``mdtraj``.
FORMATS: dict[str, FileFormat] = {
    "lammps": FileFormat(
        frozenset({".data", ".lmp", ".lammps"}),
        frozenset({".lammpstrj", ".dump", ".dcd", ".xtc", ".trr"}),
        "data.",
        "dump.",
        _read_lammps,
    ),
    "mdtraj": FileFormat(
        frozenset({".pdb", ".psf", ".prmtop", ".parm7", ".h5", ".gro"}),
        frozenset({".dcd", ".xtc", ".trr", ".nc", ".h5"}),
        "",
        "",
        _read_mdtraj,
    ),
    "ase": FileFormat(_ASE_SUFFIXES, _ASE_SUFFIXES, "", "", _read_ase),
}


def ingest(
    topology: PathLike,
    trajectories: Sequence[PathLike],
    out: PathLike,
    *,
    fmt: str | None = None,
    name: str | None = None,
    units: str | None = None,
    timestep: float | None = None,
    frame_interval: float | None = None,
    temperature: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Read one system's files and write them as the dataset ``out/dataset.h5``.

    Args:
        topology: the file with atoms and bonds (LAMMPS data file, PDB/PSF/prmtop, extxyz).
        trajectories: the trajectory files in time order (may be empty for mdtraj and ASE when
            ``topology`` holds the frames).
        out: dataset directory.
        fmt: ``"lammps"``, ``"mdtraj"`` or ``"ase"`` (the CLI's ``--format``); by default
            chosen from the file names (:func:`detect_format`).
        name: system name; by default the topology file's stem.
        units: ``"real"`` or ``"lj"``; required for LAMMPS, ``"real"`` by default otherwise.
        timestep: LAMMPS only: MD step length in the dataset time unit (ps or tau).
        frame_interval: time between frames (ps or tau); see each reader.
        temperature: the thermostat temperature the trajectory was run at (K, or epsilon/k_B
            in LJ units), stored as the system's attribute ``temperature`` (models with
            ``model.temperature_input`` read it).
        overwrite: replace the dataset ``out`` holds (refused otherwise).

    Returns the path of the written dataset file. ``out`` is claimed as a dataset
    (:func:`~eqcg.runtime.outputs.claim_output`) before any file is read: an existing file, another
    kind of output, another writer, or a dataset without ``overwrite`` is an error. The dataset
    and its ``run.json`` replace the old ones only once both are written; Ctrl-C or SIGTERM
    leave the old ones as they were.
    """
    top, paths = Path(topology), [Path(p) for p in trajectories]
    fmt = fmt or detect_format(top, paths)
    with interruptible(), claim_output(out, "dataset", overwrite=overwrite) as directory:
        system = read_system(top, paths, fmt=fmt, name=name, units=units, timestep=timestep,
                             frame_interval=frame_interval, temperature=temperature)
        files = [str(p) for p in [top, *paths]]
        with atomic_path(directory / RUN_INFO_FILE) as info:
            with doing("writing the run record", directory / RUN_INFO_FILE):
                info.write_text(run_info_text(None, None, [], extra={
                    "format": fmt, "files": files, "units": system.units}), encoding="utf-8")
                sync(info)  # on disk before the dataset replaces the old one
            return write_dataset(directory, [system],
                                 source=f"eqcg ingest ({fmt}): {', '.join(files)}")


def read_system(
    topology: PathLike,
    trajectories: Sequence[PathLike],
    *,
    fmt: str | None = None,
    name: str | None = None,
    units: str | None = None,
    timestep: float | None = None,
    frame_interval: float | None = None,
    temperature: float | None = None,
) -> SystemTrajectory:
    """Read one system's files as :func:`ingest` does (same arguments), without writing it."""
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise DataError(f"--temperature must be a finite number > 0 (K, or epsilon/k_B in LJ "
                        f"units), got {temperature}")
    top, paths = Path(topology), [Path(p) for p in trajectories]
    name = check_name(name or top.stem, "system name (--name)", DataError)
    fmt = fmt or detect_format(top, paths)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    system = FORMATS[fmt].read(top, paths, _Options(name, units, timestep, frame_interval))
    if temperature is None:
        return system
    return dataclasses.replace(system, attrs={**system.attrs,
                                              TEMPERATURE_ATTRS[0]: float(temperature)})


def detect_format(topology: Path, trajectories: list[Path]) -> str:
    """The name of the first format in :data:`FORMATS` accepting these file names.

    Raises :class:`DataError` listing the supported names when none does.
    """
    for fmt, file_format in FORMATS.items():
        if file_format.accepts(topology, trajectories):
            return fmt
    supported = "; ".join(
        f"{fmt}: topology {'/'.join(sorted(f.topology_suffixes))} with trajectories "
        f"{'/'.join(sorted(f.trajectory_suffixes))}"
        for fmt, f in FORMATS.items()
    )
    files = ", ".join(str(p) for p in [topology, *trajectories])
    raise DataError(
        f"cannot tell the format of {files}; supported: {supported} "
        f"(choose one with --format lammps|mdtraj|ase)"
    )
