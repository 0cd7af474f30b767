"""The on-disk trajectory dataset: one HDF5 file, chunked along time.

Layout of ``DIR/dataset.h5``::

    /                      attrs: format, format_version, units, created, source, content_hash
    /systems/<name>/       attrs: pbc, units, source, frame_interval, attrs_json
        positions          (n_frames, n_atoms, 3) float, unwrapped, chunked along frames
        box                (n_frames, 3, 3) cell vectors as rows
        time               (n_frames,)
        masses             (n_atoms,)
        types              (n_atoms,) index into type_names
        type_names         (n_types,) strings
        bonds              (n_bonds, 2) 0-based atom indices
        bond_types         (n_bonds,)
        charges            (n_atoms,)  (optional)

Any window of frames is read without loading the whole trajectory. Files are written to a
temporary name and renamed into place (:func:`~eqcg.runtime.atomic.atomic_hdf5`), so an
interrupted or failed write never leaves a valid-looking dataset behind and never damages the
one it replaces.
``content_hash`` (:func:`system_digest`) identifies what the systems hold, whatever the file's
layout: a rollout records it, and evaluation checks its reference against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time as _time
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.errors import DataError
from eqcg.runtime.atomic import atomic_hdf5
from eqcg.runtime.boundary import doing
from eqcg.runtime.names import check_name
from eqcg.units import unit_system

DATASET_FILE = "dataset.h5"
FORMAT_NAME = "eqcg-trajectories"
FORMAT_VERSION = 1
_FRAMES_PER_CHUNK = 16
_FRAMES_PER_HASH = 256


def dataset_file(path: str | os.PathLike) -> Path:
    """The HDF5 file of a dataset given its directory or the file itself."""
    path = Path(path)
    return path / DATASET_FILE if path.is_dir() or path.suffix != ".h5" else path


def write_dataset(
    path: str | os.PathLike, systems: Iterable[SystemTrajectory], source: str = ""
) -> Path:
    """Validate ``systems`` and write them atomically as a dataset at ``path`` (a directory).

    ``systems`` may be a lazy iterable: each system is validated and written before the next
    one is read, so a dataset larger than memory can be written. All systems must share one
    unit system. Returns the path of the written HDF5 file; on any error nothing is left.
    """
    target = dataset_file(path)
    digests: dict[str, bytes] = {}
    with doing("writing the dataset", target), atomic_hdf5(target) as out:
        f = out.file
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["created"] = _time.strftime("%Y-%m-%dT%H:%M:%S%z")
        f.attrs["source"] = source
        group = f.create_group("systems")
        for system in systems:
            check_name(system.name, f"{path}: system name", DataError)
            if system.name in group:
                raise DataError(f"{path}: system name {system.name!r} appears twice")
            units = f.attrs.setdefault("units", system.units)
            if system.units != units:
                raise DataError(
                    f"{path}: system {system.name!r} is in {system.units!r} units, the "
                    f"systems before it in {units!r}; use one unit system per dataset"
                )
            system.validate()
            write_system_group(group.create_group(system.name), system)
            digests[system.name] = system_digest(system)
            out.check()
        if not len(group):
            raise DataError(f"{path}: refusing to write a dataset with no systems")
        f.attrs["content_hash"] = combined_hash(digests)
    return target


def system_digest(s: SystemTrajectory) -> bytes:
    """SHA-256 of what system ``s`` holds (name, units, periodicity, frames, cells, times and
    topology, in canonical types), independent of how a file stores it."""
    h = hashlib.sha256(json.dumps([s.name, s.units, bool(s.pbc)]).encode())

    def add(label: str, array: object, dtype: type) -> None:
        data = np.ascontiguousarray(np.asarray(array), dtype=dtype)
        h.update(f"{label}{data.shape}".encode())
        h.update(data.tobytes())

    for start in range(0, s.n_frames, _FRAMES_PER_HASH):
        add("positions", s.positions[start:start + _FRAMES_PER_HASH], np.float64)
    top = s.topology
    for label, array, dtype in (("box", s.box, np.float64), ("time", s.time, np.float64),
                                ("masses", top.masses, np.float64), ("types", top.types, np.int64),
                                ("bonds", top.bonds.reshape(-1, 2), np.int64),
                                ("bond_types", top.bond_types, np.int64)):
        add(label, array, dtype)
    if top.charges is not None:
        add("charges", top.charges, np.float64)
    h.update("\0".join(top.type_names).encode("utf-8", "surrogatepass"))
    return h.digest()


def combined_hash(digests: dict[str, bytes]) -> str:
    """The content hash of a dataset whose systems have these digests (by name)."""
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(digests[name])
    return h.hexdigest()


def write_system_group(g: h5py.Group, s: SystemTrajectory, *, extendable: bool = False) -> None:
    """Write system ``s`` into the empty group ``g`` in this module's layout; with
    ``extendable`` its frame arrays (positions, box, time) can grow (streamed rollouts)."""
    frames = _FRAMES_PER_CHUNK if extendable else min(_FRAMES_PER_CHUNK, s.n_frames)

    def frame_array(name: str, data: np.ndarray, **options: object) -> None:
        data = np.asarray(data, dtype=np.float64)
        g.create_dataset(name, data=data, chunks=(frames, *data.shape[1:]),
                         maxshape=(None, *data.shape[1:]) if extendable else None, **options)

    frame_array("positions", s.positions, compression="gzip", compression_opts=4, shuffle=True)
    frame_array("box", s.box)
    frame_array("time", s.time)
    top = s.topology
    g.create_dataset("masses", data=top.masses)
    g.create_dataset("types", data=top.types)
    g.create_dataset("type_names", data=np.array(top.type_names, dtype=h5py.string_dtype()))
    g.create_dataset("bonds", data=top.bonds.reshape(-1, 2))
    g.create_dataset("bond_types", data=top.bond_types)
    if top.charges is not None:
        g.create_dataset("charges", data=top.charges)
    g.attrs["pbc"] = bool(s.pbc)
    g.attrs["units"] = s.units
    g.attrs["source"] = s.source
    g.attrs["frame_interval"] = s.frame_interval
    g.attrs["attrs_json"] = json.dumps(s.attrs, default=_jsonable)


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in dataset metadata")


class TrajectoryDataset:
    """A dataset on disk, opened read-only; ``systems[i].positions`` is read lazily.

    Use as a context manager or call :meth:`close`. Construct with :func:`load_dataset`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = dataset_file(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no dataset here (expected {DATASET_FILE})")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 dataset ({exc})") from None
        try:
            self._check_format()
            self.units = str(self._file.attrs["units"])
            unit_system(self.units, str(self.path))
            self.source = str(self._file.attrs.get("source", ""))
            self.systems: list[SystemTrajectory] = [
                self._read_system(name, g) for name, g in self._file["systems"].items()
            ]
        except BaseException as exc:
            self._file.close()
            if isinstance(exc, KeyError):
                raise DataError(f"{self.path}: missing field {exc}") from None
            raise

    def _check_format(self) -> None:
        if self._file.attrs.get("format") != FORMAT_NAME:
            raise DataError(f"{self.path}: not an eqcg trajectory dataset")
        version = int(self._file.attrs["format_version"])
        if version > FORMAT_VERSION:
            raise DataError(
                f"{self.path}: dataset format version {version} is newer than this eqcg "
                f"understands ({FORMAT_VERSION}); upgrade eqcg"
            )

    def _read_system(self, name: str, g: h5py.Group) -> SystemTrajectory:
        where = f"{self.path}: system {name!r}"
        try:
            topology = Topology(
                masses=g["masses"][()],
                types=g["types"][()],
                type_names=[t.decode() if isinstance(t, bytes) else t for t in g["type_names"][()]],
                bonds=g["bonds"][()],
                bond_types=g["bond_types"][()],
                charges=g["charges"][()] if "charges" in g else None,
            )
            return SystemTrajectory(
                name=name,
                topology=topology,
                positions=g["positions"],
                box=g["box"][()],
                time=g["time"][()],
                pbc=bool(g.attrs["pbc"]),
                units=str(g.attrs["units"]),
                source=str(g.attrs.get("source", "")),
                attrs=json.loads(g.attrs.get("attrs_json", "{}")),
            )
        except KeyError as exc:
            raise DataError(f"{where}: missing field {exc}") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, bad shapes
            raise DataError(f"{where}: damaged metadata ({exc})") from None

    def __len__(self) -> int:
        return len(self.systems)

    def __iter__(self) -> Iterator[SystemTrajectory]:
        return iter(self.systems)

    def __getitem__(self, key: int | str) -> SystemTrajectory:
        if isinstance(key, str):
            for system in self.systems:
                if system.name == key:
                    return system
            raise KeyError(f"{self.path}: no system named {key!r}")
        return self.systems[key]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.systems]

    @property
    def content_hash(self) -> str:
        """The hash of what the systems hold (see :func:`system_digest`): the one stored when
        the file was written, else computed from the file (reads every frame)."""
        stored = self._file.attrs.get("content_hash")
        if stored is not None:
            return str(stored)
        return combined_hash({s.name: system_digest(s) for s in self.systems})

    def summary(self) -> str:
        """A human-readable table of the systems in this dataset."""
        u = unit_system(self.units)
        lines = [
            f"dataset {self.path}",
            f"  units: {self.units} (length {u.length}, time {u.time}); {len(self)} systems",
            f"  {'system':<24} {'atoms':>7} {'bonds':>7} {'frames':>7} "
            f"{'interval':>9} {'span':>10} {'pbc':>4}",
        ]
        for s in self.systems:
            span = float(s.time[-1] - s.time[0])
            lines.append(
                f"  {s.name:<24} {s.n_atoms:>7d} {s.topology.n_bonds:>7d} {s.n_frames:>7d} "
                f"{s.frame_interval:>9.4g} {span:>10.4g} {'yes' if s.pbc else 'no':>4}"
            )
        return "\n".join(lines)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrajectoryDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_dataset(path: str | os.PathLike) -> TrajectoryDataset:
    """Open the dataset at ``path`` (its directory or its ``dataset.h5``)."""
    return TrajectoryDataset(path)
