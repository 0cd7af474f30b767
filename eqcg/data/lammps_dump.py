"""Read LAMMPS text dumps (``dump custom``/``atom``, plain or gzipped) into unwrapped frames.

:func:`read_lammps_dump` takes the columns in any order and the atoms in any order, puts the atoms
in data-file (sorted id) order and unwraps the positions from whichever columns the dump has
(``xu yu zu``, scaled ``xsu ysu zsu``, ``x y z`` or ``xs ys zs`` with or without image flags
``ix iy iz``). Orthogonal, restricted and general triclinic cells are understood. A truncated
frame, a malformed ``BOX BOUNDS`` item, a missing, repeated or unknown atom id or absurd
coordinates are a :class:`~eqcg.errors.DataError` naming the file, frame, timestep, line and
atom id. Conventions as in :mod:`eqcg.data.lammps_data_file`.

LAMMPS dumps go through this module, never through ASE: ASE's dump reader turns LAMMPS type ids
into chemical elements.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TextIO

import numpy as np

from eqcg.data.lammps_data_file import INT64_LIMIT, cell_rows, check_coordinates, open_text
from eqcg.errors import DataError

PathLike = str | os.PathLike


class _PositionColumns(NamedTuple):
    """One way a dump can hold positions."""

    names: tuple[str, str, str]
    scaled: bool  # fractional coordinates of the cell (xs, xsu)
    images: bool  # needs image flags ix iy iz to unwrap
    wrapped: bool  # still wrapped after reading (no image flags)


# Position columns of a dump in order of preference: unwrapped columns first, then wrapped
# ones with image flags, then wrapped ones alone.
_DUMP_POSITIONS = (
    _PositionColumns(("xu", "yu", "zu"), scaled=False, images=False, wrapped=False),
    _PositionColumns(("xsu", "ysu", "zsu"), scaled=True, images=False, wrapped=False),
    _PositionColumns(("x", "y", "z"), scaled=False, images=True, wrapped=False),
    _PositionColumns(("xs", "ys", "zs"), scaled=True, images=True, wrapped=False),
    _PositionColumns(("x", "y", "z"), scaled=False, images=False, wrapped=True),
    _PositionColumns(("xs", "ys", "zs"), scaled=True, images=False, wrapped=True),
)
_IMAGE_COLUMNS = ("ix", "iy", "iz")
_BOUNDARY_CHARS = set("pfsm")


@dataclass
class LammpsDump:
    """Frames of one LAMMPS dump, atoms in data-file (sorted id) order.

    Read from a text dump (:func:`read_lammps_dump`) or a binary one
    (:func:`~eqcg.data.lammps_binary.read_lammps_binary_dump`).

    Attributes:
        timesteps: ``(n_frames,)`` MD step numbers.
        box: ``(n_frames, 3, 3)`` cell vectors as rows.
        positions: ``(n_frames, n_atoms, 3)`` unwrapped positions, or wrapped ones when
            ``wrapped`` (a periodic dump with neither unwrapped columns nor image flags, or a
            binary dump).
        periodic: periodicity of x, y, z (``pp`` boundaries).
        wrapped: whether ``positions`` are still wrapped into the cell.
    """

    timesteps: np.ndarray
    box: np.ndarray
    positions: np.ndarray
    periodic: tuple[bool, bool, bool]
    wrapped: bool


@dataclass
class _DumpFrame:
    """One frame of a dump: header values and the atom lines, not yet parsed."""

    timestep: int
    box: np.ndarray
    origin: np.ndarray
    periodic: tuple[bool, bool, bool]
    columns: list[str]
    lines: list[str]
    first_line: int  # line number (1-based) of the first atom line in the file


class _Lines:
    """A text file read line by line, counting the lines read (for messages)."""

    def __init__(self, handle: TextIO):
        self._handle = handle
        self.number = 0

    def readline(self) -> str:
        line = self._handle.readline()
        self.number += bool(line)
        return line

    def take(self, n: int) -> list[str]:
        """The next ``n`` lines, fewer at the end of the file."""
        lines = list(itertools.islice(self._handle, n))
        self.number += len(lines)
        return lines


def read_lammps_dump(
    path: PathLike, atom_ids: np.ndarray | None = None, *, allow_wrapped: bool = False
) -> LammpsDump:
    """Read every frame of a LAMMPS text dump (plain or gzipped), atoms sorted by id, positions
    unwrapped.

    Columns may come in any order, atoms in any order. Positions come from, by preference:
    ``xu yu zu``; scaled ``xsu ysu zsu``; ``x y z`` plus ``ix iy iz`` (``x + ix a + iy b +
    iz c``); scaled ``xs ys zs`` plus image flags; plain ``x y z`` or ``xs ys zs``. Orthogonal,
    restricted triclinic (``BOX BOUNDS xy xz yz``, bounds converted as in the LAMMPS "Howto
    triclinic" page) and general triclinic (``BOX BOUNDS abc origin``) cells are understood.

    Args:
        path: the dump file.
        atom_ids: ``(n_atoms,)`` sorted atom ids every frame must hold exactly (the data
            file's :attr:`LammpsData.atom_ids`); by default the ids of the first frame.
        allow_wrapped: accept a periodic dump with neither unwrapped columns nor image flags,
            returning wrapped positions with ``wrapped=True``; otherwise that is a DataError.

    Raises :class:`DataError` naming the file, frame index, timestep, line and atom id for a
    binary file, a truncated frame (also one whose last line lacks its newline or values), a
    malformed ``BOX BOUNDS`` item, an atom count other than ``len(atom_ids)``, a missing,
    repeated, unknown or non-integer atom id, non-integer image flags, coordinates that are
    non-finite or beyond :data:`MAX_COORDINATE`, or a frame without position columns.
    """
    where = str(path)
    with open_text(path, where, "dump") as handle:
        frames = list(_dump_frames(_Lines(handle), where, atom_ids, allow_wrapped))
    if not frames:
        raise DataError(f"{where}: the dump holds no frames")
    periodic = frames[0].periodic
    changed = next((i for i, f in enumerate(frames) if f.periodic != periodic), None)
    if changed is not None:
        raise DataError(f"{where}: frame {changed}: boundary flags differ from frame 0's")
    return LammpsDump(
        timesteps=np.array([f.timestep for f in frames], dtype=np.int64),
        box=np.stack([f.box for f in frames]),
        positions=np.stack([f.positions for f in frames]),
        periodic=periodic,
        wrapped=any(f.wrapped for f in frames),
    )


class _Frame(NamedTuple):
    """One frame of a dump, read: positions ``(n_atoms, 3)`` in data-file order."""

    timestep: int
    box: np.ndarray
    periodic: tuple[bool, bool, bool]
    positions: np.ndarray
    wrapped: bool


def _dump_frames(
    lines: _Lines, where: str, atom_ids: np.ndarray | None, allow_wrapped: bool
) -> Iterator[_Frame]:
    """Each frame of the dump, atoms in ``atom_ids`` order (the first frame's sorted ids when
    ``atom_ids`` is ``None``)."""
    for index in itertools.count():
        frame = _read_dump_frame(lines, where, index)
        if frame is None:
            return
        here = f"{where}: frame {index} (timestep {frame.timestep})"
        ids, positions, wrapped = _dump_positions(frame, here, allow_wrapped)
        if atom_ids is None:
            atom_ids = np.sort(ids)
            repeated = np.flatnonzero(np.diff(atom_ids) == 0)
            if repeated.size:
                raise DataError(f"{here}: atom id {atom_ids[repeated[0]]} appears twice")
        ordered = np.empty((len(atom_ids), 3))
        ordered[_atom_order(ids, atom_ids, here)] = positions
        yield _Frame(frame.timestep, frame.box, frame.periodic, ordered, wrapped)


def _read_dump_frame(lines: _Lines, where: str, index: int) -> _DumpFrame | None:
    """The next frame of the dump, or ``None`` at the end of the file."""
    items = _read_dump_items(lines, where, index)
    if items is None:
        return None
    values, columns = items
    for key in ("TIMESTEP", "NUMBER OF ATOMS"):
        if key not in values:
            raise DataError(f"{where}: frame {index} has no 'ITEM: {key}'")
    timestep = _header_int(values, "TIMESTEP", f"{where}: frame {index}")
    here = f"{where}: frame {index} (timestep {timestep})"
    bounds_key = next((k for k in values if k.startswith("BOX BOUNDS")), None)
    if bounds_key is None:
        raise DataError(f"{here}: no 'ITEM: BOX BOUNDS'")
    box, origin, periodic = _dump_box(bounds_key, values[bounds_key], here)
    n_atoms = _header_int(values, "NUMBER OF ATOMS", here)
    if n_atoms < 1:
        raise DataError(f"{here}: the frame has no atoms")
    first_line = lines.number + 1
    atom_lines = lines.take(n_atoms)
    if len(atom_lines) < n_atoms:
        raise DataError(
            f"{here} is truncated: {len(atom_lines)} of {n_atoms} atom lines before the end of "
            f"the file"
        )
    last = atom_lines[-1]
    if not last.endswith("\n"):
        raise DataError(
            f"{here} is truncated: the file ends inside its last atom line (line {lines.number}: "
            f"{last.strip()[:60]!r}, no newline); remove the incomplete frame"
        )
    if len(last.split()) != len(columns):
        raise DataError(
            f"{here}, line {lines.number}: {len(last.split())} values on an atom line, but "
            f"'ITEM: ATOMS' names {len(columns)} columns (truncated or corrupt file?)"
        )
    return _DumpFrame(timestep, box, origin, periodic, columns, atom_lines, first_line)


def _header_int(values: dict[str, list[str]], key: str, here: str) -> int:
    """The 64-bit integer value of dump item ``key``; DataError when it is not one."""
    try:
        value = int(values[key][0])
    except ValueError:
        value = None
    if value is None or not -INT64_LIMIT <= value < INT64_LIMIT:
        raise DataError(f"{here}: 'ITEM: {key}' value {values[key][0]!r} is not an integer")
    return value


def _read_dump_items(
    lines: _Lines, where: str, index: int
) -> tuple[dict[str, list[str]], list[str]] | None:
    """``ITEM:`` header values of the next frame (by item name) and its atom columns."""
    values: dict[str, list[str]] = {}
    started = False
    while line := lines.readline():
        if not line.strip():
            continue
        started = True
        if not line.startswith("ITEM:"):
            raise DataError(
                f"{where}: frame {index}, line {lines.number}: expected an 'ITEM:' line, found "
                f"{line.strip()[:60]!r}"
            )
        key = line[len("ITEM:") :].strip()
        if key.startswith("ATOMS"):
            return values, key.split()[1:]
        n_lines = 3 if key.startswith("BOX BOUNDS") else 1
        item_lines = [lines.readline() for _ in range(n_lines)]
        if not all(line.strip() for line in item_lines):
            break
        values[key] = [v for line in item_lines for v in line.split()]
    if started:
        raise DataError(f"{where}: frame {index} is truncated: the file ends inside its header")
    return None


def _dump_box(
    key: str, values: list[str], here: str
) -> tuple[np.ndarray, np.ndarray, tuple[bool, bool, bool]]:
    """Cell rows ``(3, 3)``, origin ``(3,)`` and periodicity from a ``BOX BOUNDS`` item.

    Restricted triclinic bounds include the tilt; per LAMMPS' "Howto triclinic":
    ``xlo = xlo_bound - min(0, xy, xz, xy + xz)``, ``xhi = xhi_bound - max(0, xy, xz, xy + xz)``,
    ``ylo = ylo_bound - min(0, yz)``, ``yhi = yhi_bound - max(0, yz)``.
    A dump without boundary flags (very old LAMMPS) is taken as periodic.
    """
    words = key.split()[2:]
    flags = [w for w in words if len(w) == 2 and set(w) <= _BOUNDARY_CHARS]
    periodic = tuple(f == "pp" for f in flags) if len(flags) == 3 else (True, True, True)
    per_line = 4 if "abc" in words else 3 if "xy" in words else 2
    try:
        numbers = np.array(values, dtype=np.float64)
    except ValueError:
        numbers = np.full(0, np.nan)
    if numbers.size != 3 * per_line or not np.isfinite(numbers).all():
        tilt = per_line == 2 and numbers.size == 9
        raise DataError(
            f"{here}: 'ITEM: {key}' needs 3 lines of {per_line} finite numbers, got "
            f"{' '.join(values)[:120]!r}"
            + (" (tilt factors without 'xy xz yz' in the ITEM line?)" if tilt else "")
        )
    if per_line == 4:
        rows = numbers.reshape(3, 4)
        return rows[:, :3], rows[:, 3], periodic
    if per_line == 3:
        (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = numbers.reshape(3, 3)
        xlo = xlo_b - min(0.0, xy, xz, xy + xz)
        xhi = xhi_b - max(0.0, xy, xz, xy + xz)
        ylo = ylo_b - min(0.0, yz)
        yhi = yhi_b - max(0.0, yz)
        lengths = np.array([xhi - xlo, yhi - ylo, zhi - zlo])
        return cell_rows(lengths, xy, xz, yz), np.array([xlo, ylo, zlo]), periodic
    bounds = numbers.reshape(3, 2)
    return cell_rows(bounds[:, 1] - bounds[:, 0], 0.0, 0.0, 0.0), bounds[:, 0], periodic


def _dump_positions(
    frame: _DumpFrame, here: str, allow_wrapped: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Atom ids ``(n_atoms,)`` and positions ``(n_atoms, 3)`` in dump order, and whether the
    positions are still wrapped."""
    kind = _position_columns(frame, here)
    wrapped = kind.wrapped and any(frame.periodic)
    if wrapped and not allow_wrapped:
        raise DataError(
            f"{here}: positions ({' '.join(kind.names)}) are wrapped into the periodic cell and "
            f"the dump has no image flags; dump 'xu yu zu' or add 'ix iy iz' (or "
            f"allow_wrapped=True to unwrap by continuity between frames)"
        )
    images = _IMAGE_COLUMNS if kind.images else ()
    table = _dump_columns(frame, ("id", *kind.names, *images), here)
    ids = _dump_integers(table[:, 0], "atom id", frame, here)
    values = table[:, 1:4]
    if kind.images:
        flags = _dump_integers(table[:, 4:7], "image flags", frame, here)
        values = values + (flags if kind.scaled else flags @ frame.box)
    positions = frame.origin + values @ frame.box if kind.scaled else values
    lines = frame.first_line + np.arange(len(ids))
    check_coordinates(positions, ids, here, lines)
    return ids, positions, wrapped


def _dump_integers(values: np.ndarray, what: str, frame: _DumpFrame, here: str) -> np.ndarray:
    """Float dump columns ``values`` (one row per atom line) as int64; DataError naming the line
    of the first row holding a non-integer."""
    rows = values.reshape(len(values), -1)
    whole = (rows == np.round(rows)) & (np.abs(rows) < 2**53)
    bad = np.flatnonzero(~whole.all(axis=1))
    if bad.size:
        text = " ".join(f"{v:g}" for v in rows[bad[0]])
        raise DataError(f"{here}, line {frame.first_line + bad[0]}: non-integer {what} {text}")
    return values.astype(np.int64)


def _position_columns(frame: _DumpFrame, here: str) -> _PositionColumns:
    """The preferred way this frame holds positions; DataError when it holds none."""
    has_images = all(c in frame.columns for c in _IMAGE_COLUMNS)
    for kind in _DUMP_POSITIONS:
        if all(c in frame.columns for c in kind.names) and (has_images or not kind.images):
            return kind
    raise DataError(
        f"{here}: no position columns (need xu yu zu, xsu ysu zsu, x y z or xs ys zs); "
        f"columns are: {' '.join(frame.columns)}"
    )


def _dump_columns(frame: _DumpFrame, names: Sequence[str], here: str) -> np.ndarray:
    """``(n_atoms, len(names))`` float values of the named columns (numpy's C text parser)."""
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"{here}: no '{missing[0]}' column; columns are: {' '.join(frame.columns)}")
    try:
        table = np.loadtxt(
            frame.lines,
            usecols=[frame.columns.index(c) for c in names],
            dtype=np.float64,
            comments=None,
            ndmin=2,
        )
    except ValueError as exc:
        raise DataError(
            f"{here}: cannot read columns {' '.join(names)} ({exc}); truncated or corrupt file?"
        ) from None
    if len(table) != len(frame.lines):
        raise DataError(f"{here}: blank lines among its {len(frame.lines)} atom lines")
    return table


def _atom_order(ids: np.ndarray, atom_ids: np.ndarray, here: str) -> np.ndarray:
    """Index in ``atom_ids`` of each dump line's atom; every id must appear exactly once."""
    n = len(atom_ids)
    if len(ids) != n:
        raise DataError(f"{here}: {len(ids)} atoms, expected {n} (as in the data file)")
    index = np.minimum(np.searchsorted(atom_ids, ids), n - 1)
    unknown = np.flatnonzero(atom_ids[index] != ids)
    if unknown.size:
        raise DataError(f"{here}: atom id {ids[unknown[0]]} is not in the data file")
    counts = np.bincount(index, minlength=n)
    if (counts != 1).any():
        raise DataError(
            f"{here}: atom id {atom_ids[np.argmin(counts)]} is missing "
            f"(atom id {atom_ids[np.argmax(counts)]} appears {counts.max()} times)"
        )
    return index
