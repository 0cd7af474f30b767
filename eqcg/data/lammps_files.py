"""Read LAMMPS data files and text dumps into a :class:`SystemTrajectory` with unwrapped positions.

* :func:`read_lammps_data` — topology (masses, types, bonds, charges), positions, image flags
  and cell of a data file (``atom_style`` full, molecular, bond, angle, atomic or charge).
* :func:`read_lammps_dump` — the frames of a text dump (``dump custom``/``atom``), atoms put
  in data-file order and unwrapped from whichever columns the dump has.
* :func:`read_lammps` — one data file plus dumps joined in time: the reader the generators and
  ``eqcg ingest`` use.

Both files may be gzipped (recognised by their first bytes, whatever their names). Anything
malformed — binary data, a truncated frame, a non-integer count or id, absurd coordinates — is
a :class:`~eqcg.errors.DataError` naming the file and the line, frame or atom id.

Conventions. Atom ids may be unordered and non-contiguous: atom ``i`` of every array is the
``i``-th smallest id. Atom types keep their LAMMPS numbers as names (``"1"``, ``"2"``, ...) and
are 0-based indices (``type - 1``); bond types likewise. Cells are three row vectors ``a, b, c``
(LAMMPS' restricted triclinic form ``a = (lx, 0, 0)``, ``b = (xy, ly, 0)``,
``c = (xz, yz, lz)``) plus the origin ``(xlo, ylo, zlo)``. Lengths and times are whatever the
LAMMPS ``units`` made them; :func:`read_lammps` is told which (``real``: Å, ``lj``: sigma).

LAMMPS dumps go through this module, never through ASE: ASE's dump reader turns LAMMPS type ids
into chemical elements.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TextIO

import numpy as np

from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.data.unwrap import unwrap_trajectory
from eqcg.errors import DataError
from eqcg.units import unit_system

PathLike = str | os.PathLike

#: Columns of one ``Atoms`` line per atom style (image flags ``ix iy iz`` may follow).
ATOM_STYLES: dict[str, tuple[str, ...]] = {
    "full": ("id", "mol", "type", "q", "x", "y", "z"),
    "molecular": ("id", "mol", "type", "x", "y", "z"),
    "bond": ("id", "mol", "type", "x", "y", "z"),
    "angle": ("id", "mol", "type", "x", "y", "z"),
    "atomic": ("id", "type", "x", "y", "z"),
    "charge": ("id", "type", "q", "x", "y", "z"),
}
# Style guessed from the number of values on an Atoms line when the section does not name it
# ("charge" has as many columns as "molecular", so it must be named).
_STYLE_BY_COUNT = {5: "atomic", 6: "molecular", 7: "full", 8: "atomic", 9: "molecular", 10: "full"}


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
_GZIP_MAGIC = b"\x1f\x8b"
#: Largest plausible coordinate magnitude (Å or sigma): anything beyond is a corrupt file.
MAX_COORDINATE = 1e8
_INT64_LIMIT = 2**63


@dataclass
class LammpsData:
    """Contents of a LAMMPS data file, atoms sorted by id.

    Attributes:
        topology: masses, types (``type - 1``), bonds, bond types, charges (style full/charge).
        atom_ids: ``(n_atoms,)`` sorted LAMMPS atom ids; atom ``i`` is ``atom_ids[i]``.
        molecule_ids: ``(n_atoms,)`` LAMMPS molecule ids, or ``None`` for styles without them.
        positions: ``(n_atoms, 3)`` coordinates as written (Å or sigma).
        images: ``(n_atoms, 3)`` integer image flags, or ``None`` when the file has none.
        box: ``(3, 3)`` cell vectors as rows.
        origin: ``(3,)`` cell origin ``(xlo, ylo, zlo)``.
        atom_style: the atom style the ``Atoms`` section was read with.
    """

    topology: Topology
    atom_ids: np.ndarray
    molecule_ids: np.ndarray | None
    positions: np.ndarray
    images: np.ndarray | None
    box: np.ndarray
    origin: np.ndarray
    atom_style: str


@dataclass
class LammpsDump:
    """Frames of one LAMMPS text dump, atoms in data-file (sorted id) order.

    Attributes:
        timesteps: ``(n_frames,)`` MD step numbers.
        box: ``(n_frames, 3, 3)`` cell vectors as rows.
        positions: ``(n_frames, n_atoms, 3)`` unwrapped positions, or wrapped ones when
            ``wrapped`` (a periodic dump with neither unwrapped columns nor image flags).
        periodic: periodicity of x, y, z (``pp`` boundaries).
        wrapped: whether ``positions`` are still wrapped into the cell.
    """

    timesteps: np.ndarray
    box: np.ndarray
    positions: np.ndarray
    periodic: tuple[bool, bool, bool]
    wrapped: bool


@dataclass
class _Section:
    """One section of a data file: its rows of tokens and their 1-based line numbers."""

    name: str
    comment: str
    start: int  # line number of the section's name
    rows: list[list[str]]
    lines: list[int]


# ----------------------------------------------------------------------------- reading text


@contextlib.contextmanager
def _open_text(path: PathLike, where: str, what: str) -> Iterator[TextIO]:
    """``path`` opened as UTF-8 text, decompressed when it starts with the gzip magic bytes.

    A file that cannot be read, holds binary data or is a corrupt gzip stream raises
    :class:`DataError` naming it as a LAMMPS ``what`` (``"dump"``, ``"data file"``), also when
    the problem shows only while the caller reads.
    """
    binary = DataError(f"{where}: a binary file, not a LAMMPS text {what} (plain or gzipped)")
    try:
        with open(path, "rb") as raw:
            head = raw.read(4096)
    except OSError as exc:
        raise DataError(f"{where}: cannot read the {what} ({exc.strerror})") from None
    gzipped = head.startswith(_GZIP_MAGIC)
    if b"\0" in head and not gzipped:
        raise binary
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield handle
    except UnicodeDecodeError:
        raise binary from None
    except (OSError, EOFError, zlib.error) as exc:
        problem = "corrupt or truncated gzip file" if gzipped else f"cannot read the {what}"
        raise DataError(f"{where}: {problem} ({getattr(exc, 'strerror', None) or exc})") from None


def _check_coordinates(
    positions: np.ndarray, ids: np.ndarray, where: str, lines: Sequence[int]
) -> None:
    """DataError naming the line and atom id of the first atom whose coordinates
    ``positions[i]`` are non-finite or beyond :data:`MAX_COORDINATE`."""
    bad = np.flatnonzero(~(np.abs(positions) <= MAX_COORDINATE).all(axis=1))
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{where}, line {lines[i]}: atom id {ids[i]} has coordinates {positions[i].tolist()}, "
            f"non-finite or beyond ±{MAX_COORDINATE:g} (corrupt file?)"
        )


# ----------------------------------------------------------------------------- data files


def read_lammps_data(path: PathLike, atom_style: str | None = None) -> LammpsData:
    """Read a LAMMPS data file (plain text or gzipped).

    Args:
        path: the data file (as written by ``write_data`` or by hand).
        atom_style: one of :data:`ATOM_STYLES`; by default the style named after ``Atoms #``,
            else guessed from the number of values per line (7/10: full, 6/9: molecular,
            5/8: atomic).

    Raises :class:`DataError` naming the file and line (or atom id) for: a binary file, a
    header count that is not a whole number, a section whose line count differs from its header
    count (``atoms``, ``bonds``, ``atom types`` for Masses) or that has no count, a missing
    ``Atoms`` or ``Masses`` section, a non-integer id or type, an atom type out of range or
    whose mass is not positive, a repeated atom id, a bond naming an unknown atom id or joining
    an atom to itself, absurd coordinates, a missing ``xlo xhi`` line, or a general-triclinic
    cell (``avec``).
    """
    where = str(path)
    header, sections = _split_data_file(path, where)
    atoms = _counted_section(header, sections, "Atoms", "atoms", where)
    if atoms is None:
        raise DataError(f"{where}: the data file declares no atoms")
    style = _atom_style(atoms, atom_style, where)
    columns = ATOM_STYLES[style]
    ids, table, images = _sorted_atoms(atoms, columns, style, where)
    n_types = _header_count(header, "atom types", where)
    if n_types == 0:
        raise DataError(f"{where}: the header has no 'N atom types' line")
    lammps_types = _convert(table[:, columns.index("type")], np.int64, atoms, where, "atom type")
    _check_type_range(lammps_types, n_types, ids, where)
    masses = _masses(header, sections, lammps_types, ids, where)
    bonds, bond_types = _bonds(header, sections, ids, where)
    charges = (
        _convert(table[:, columns.index("q")], np.float64, atoms, where, "charge")
        if "q" in columns
        else None
    )
    molecule_ids = (
        _convert(table[:, columns.index("mol")], np.int64, atoms, where, "molecule id")
        if "mol" in columns
        else None
    )
    xyz = [columns.index(c) for c in "xyz"]
    positions = _convert(table[:, xyz], np.float64, atoms, where, "coordinate")
    _check_coordinates(positions, ids, where, atoms.lines)
    box, origin = _data_box(header, where)
    topology = Topology(
        masses=masses,
        types=lammps_types - 1,
        type_names=[str(t) for t in range(1, n_types + 1)],
        bonds=bonds,
        bond_types=bond_types,
        charges=charges,
    )
    topology.validate(where)
    return LammpsData(
        topology=topology,
        atom_ids=ids,
        molecule_ids=molecule_ids,
        positions=positions,
        images=images,
        box=box,
        origin=origin,
        atom_style=style,
    )


def _sorted_atoms(
    atoms: _Section, columns: tuple[str, ...], style: str, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Atom ids ``(n_atoms,)``, string table ``(n_atoms, n_columns)`` and image flags
    ``(n_atoms, 3)`` (or ``None``), sorted by id; ``atoms.lines`` is reordered to match."""
    table, images = _atoms_table(atoms, len(columns), style, where)
    ids = _convert(table[:, columns.index("id")], np.int64, atoms, where, "atom id")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    repeated = np.flatnonzero(np.diff(ids) == 0)
    if repeated.size:
        raise DataError(f"{where}: atom id {ids[repeated[0]]} appears twice in the Atoms section")
    atoms.lines = [atoms.lines[i] for i in order]
    return ids, table[order], None if images is None else images[order]


def _split_data_file(
    path: PathLike, where: str
) -> tuple[dict[str, list[str]], dict[str, _Section]]:
    """Header keywords -> their values, and sections by name (comments stripped).

    A line whose first token is not a number starts a section; numeric lines before the first
    section are header lines (``10 atoms``, ``0 10 xlo xhi``), keyed by their words.
    """
    with _open_text(path, where, "data file") as handle:
        text = handle.read()
    header: dict[str, list[str]] = {}
    sections: dict[str, _Section] = {}
    current: _Section | None = None
    for number, raw in enumerate(text.splitlines()[1:], start=2):
        content, _, comment = raw.partition("#")
        tokens = content.split()
        if not tokens:
            continue
        if not _is_number(tokens[0]):
            name = " ".join(tokens)
            if name in sections:
                raise DataError(f"{where}, line {number}: second '{name}' section")
            current = sections[name] = _Section(name, comment.strip(), number, [], [])
        elif current is None:
            words = " ".join(t for t in tokens if not _is_number(t))
            header[words] = [t for t in tokens if _is_number(t)]
        else:
            current.rows.append(tokens)
            current.lines.append(number)
    return header, sections


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _header_count(header: dict[str, list[str]], key: str, where: str) -> int:
    """The whole number ``N`` of header line ``N key`` (``atoms``, ``atom types``), 0 if absent."""
    values = header.get(key)
    if values is None:
        return 0
    try:
        count = int(values[0])
    except ValueError:
        count = -1
    if not 0 <= count < _INT64_LIMIT:
        raise DataError(
            f"{where}: header line '{' '.join(values)} {key}' does not give a whole number of {key}"
        )
    return count


def _header_numbers(
    header: dict[str, list[str]],
    key: str,
    n: int,
    where: str,
    default: tuple[float, ...] | None = None,
) -> np.ndarray:
    """The ``n`` finite numbers of header line ``key`` (``xlo xhi``); ``default`` when the
    header lacks the line, else DataError."""
    values = header.get(key)
    if values is None:
        if default is None:
            raise DataError(f"{where}: the header has no '{key}' line")
        return np.array(default, dtype=np.float64)
    numbers = np.array([float(v) for v in values])
    if len(numbers) != n or not np.isfinite(numbers).all():
        raise DataError(
            f"{where}: header line '{' '.join(values)} {key}' needs {n} finite numbers"
        )
    return numbers


def _counted_section(
    header: dict[str, list[str]], sections: dict[str, _Section], name: str, key: str, where: str
) -> _Section | None:
    """Section ``name``, checked to have the ``N key`` lines the header declares; ``None`` when
    the file has neither the section nor a count above 0."""
    count = _header_count(header, key, where)
    section = sections.get(name)
    if section is None:
        if count:
            raise DataError(
                f"{where}: the header declares {count} {key} but there is no {name} section"
            )
        return None
    if count == 0:
        raise DataError(
            f"{where}, line {section.start}: a {name} section, but the header declares no {key} "
            f"(add '{len(section.rows)} {key}' to the header)"
        )
    if len(section.rows) != count:
        raise DataError(
            f"{where}: the {name} section has {len(section.rows)} lines but the header "
            f"declares {count} {key} (truncated file?)"
        )
    return section


def _atom_style(atoms: _Section, requested: str | None, where: str) -> str:
    """The atom style: ``requested``, else the ``Atoms # style`` comment, else by column count."""
    named = requested or (atoms.comment.split()[0] if atoms.comment else None)
    if named is not None:
        if named not in ATOM_STYLES:
            raise DataError(
                f"{where}: atom style {named!r} is not supported; supported: "
                f"{', '.join(ATOM_STYLES)} (pass atom_style= to override)"
            )
        return named
    count = len(atoms.rows[0])
    if count not in _STYLE_BY_COUNT:
        raise DataError(
            f"{where}, line {atoms.lines[0]}: cannot tell the atom style from {count} values per "
            f"Atoms line; name it ('Atoms # full') or pass atom_style="
        )
    return _STYLE_BY_COUNT[count]


def _atoms_table(
    atoms: _Section, n_columns: int, style: str, where: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(n_atoms, n_columns)`` string table of the Atoms section and ``(n_atoms, 3)`` images.

    Lines carry ``n_columns`` values, or three more for image flags; lines without flags get
    zeros when others have them. Images are ``None`` when no line has them.
    """
    counts = np.array([len(row) for row in atoms.rows])
    bad = np.flatnonzero((counts != n_columns) & (counts != n_columns + 3))
    if bad.size:
        raise DataError(
            f"{where}, line {atoms.lines[bad[0]]}: {counts[bad[0]]} values on an Atoms line; "
            f"atom style {style!r} has {n_columns} (+3 image flags)"
        )
    if not (counts > n_columns).any():
        return np.array(atoms.rows, dtype=str), None
    rows = [row if len(row) > n_columns else [*row, "0", "0", "0"] for row in atoms.rows]
    table = np.array(rows, dtype=str)
    images = _convert(table[:, n_columns:], np.int64, atoms, where, "image flag")
    return table[:, :n_columns], images


def _convert(
    values: np.ndarray, dtype: type, section: _Section, where: str, what: str
) -> np.ndarray:
    """``values`` (strings, one row per section line) as ``dtype``; DataError names the line."""
    try:
        return values.astype(dtype)
    except (ValueError, OverflowError):
        for row, line in zip(values.reshape(len(values), -1), section.lines):
            try:
                row.astype(dtype)
            except (ValueError, OverflowError):
                kind = "an integer" if dtype is np.int64 else "a number"
                hint = (
                    " (type labels are not supported; write numeric types)"
                    if what.endswith("type")
                    else ""
                )
                raise DataError(
                    f"{where}, line {line}: {what} in {section.name} is not {kind}: "
                    f"{' '.join(row)}{hint}"
                ) from None
        raise


def _check_type_range(types: np.ndarray, n_types: int, ids: np.ndarray, where: str) -> None:
    bad = np.flatnonzero((types < 1) | (types > n_types))
    if bad.size:
        raise DataError(
            f"{where}: atom id {ids[bad[0]]} has type {types[bad[0]]}, outside 1..{n_types}"
        )


def _masses(
    header: dict[str, list[str]],
    sections: dict[str, _Section],
    types: np.ndarray,
    ids: np.ndarray,
    where: str,
) -> np.ndarray:
    """``(n_atoms,)`` mass of each atom of LAMMPS type ``types`` from the Masses section, which
    has one line per atom type."""
    if "Masses" not in sections:
        raise DataError(
            f"{where}: no Masses section (masses set with the 'mass' command in an input script "
            f"cannot be read; add a Masses section)"
        )
    section = _counted_section(header, sections, "Masses", "atom types", where)
    n_types = len(section.rows)
    table = _first_columns(section, 2, where)
    mass_types = _convert(table[:, 0], np.int64, section, where, "atom type")
    bad = np.flatnonzero((mass_types < 1) | (mass_types > n_types))
    if bad.size:
        raise DataError(
            f"{where}, line {section.lines[bad[0]]}: mass given for type {mass_types[bad[0]]}, "
            f"outside 1..{n_types}"
        )
    first = np.unique(mass_types, return_index=True)[1]
    if len(first) < n_types:
        row = np.setdiff1d(np.arange(n_types), first)[0]
        raise DataError(
            f"{where}, line {section.lines[row]}: a second mass for atom type {mass_types[row]}"
        )
    by_type = np.empty(n_types)
    by_type[mass_types - 1] = _convert(table[:, 1], np.float64, section, where, "mass")
    masses = by_type[types - 1]
    bad = np.flatnonzero(~(np.isfinite(masses) & (masses > 0)))
    if bad.size:
        i = bad[0]
        line = section.lines[np.flatnonzero(mass_types == types[i])[0]]
        raise DataError(
            f"{where}, line {line}: atom id {ids[i]} has type {types[i]}, whose mass "
            f"{masses[i]} is not a positive number"
        )
    return masses


def _first_columns(section: _Section, n: int, where: str) -> np.ndarray:
    """``(n_rows, n)`` strings: the first ``n`` values of each line of ``section``."""
    short = [i for i, row in enumerate(section.rows) if len(row) < n]
    if short:
        raise DataError(
            f"{where}, line {section.lines[short[0]]}: {section.name} line has "
            f"{len(section.rows[short[0]])} values, expected {n}"
        )
    return np.array([row[:n] for row in section.rows], dtype=str).reshape(-1, n)


def _bonds(
    header: dict[str, list[str]], sections: dict[str, _Section], ids: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_bonds, 2)`` 0-based atom indices and ``(n_bonds,)`` 0-based bond types."""
    section = _counted_section(header, sections, "Bonds", "bonds", where)
    if section is None:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    table = _first_columns(section, 4, where)
    bond_types = _convert(table[:, 1], np.int64, section, where, "bond type")
    n_bond_types = _header_count(header, "bond types", where) or int(bond_types.max())
    bad = np.flatnonzero((bond_types < 1) | (bond_types > n_bond_types))
    if bad.size:
        raise DataError(
            f"{where}, line {section.lines[bad[0]]}: bond type {bond_types[bad[0]]} outside "
            f"1..{n_bond_types}"
        )
    atom_ids = _convert(table[:, 2:4], np.int64, section, where, "atom id")
    index = np.minimum(np.searchsorted(ids, atom_ids), len(ids) - 1)
    unknown = np.argwhere(ids[index] != atom_ids)
    if unknown.size:
        row, col = unknown[0]
        raise DataError(
            f"{where}, line {section.lines[row]}: bond {table[row, 0]} names atom id "
            f"{atom_ids[row, col]}, which is not in the Atoms section"
        )
    loops = np.flatnonzero(atom_ids[:, 0] == atom_ids[:, 1])
    if loops.size:
        row = loops[0]
        raise DataError(
            f"{where}, line {section.lines[row]}: bond {table[row, 0]} joins atom id "
            f"{atom_ids[row, 0]} to itself"
        )
    return index, bond_types - 1


def _data_box(header: dict[str, list[str]], where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(3, 3)`` cell rows and ``(3,)`` origin from ``xlo xhi``... and ``xy xz yz``."""
    if any(key in header for key in ("avec", "bvec", "cvec", "abc origin")):
        raise DataError(
            f"{where}: general triclinic cells (avec/bvec/cvec) are not supported; write the "
            f"data file in LAMMPS' restricted triclinic form"
        )
    bounds = np.array([_header_numbers(header, f"{a}lo {a}hi", 2, where) for a in "xyz"])
    xy, xz, yz = _header_numbers(header, "xy xz yz", 3, where, default=(0.0, 0.0, 0.0))
    return _cell_rows(bounds[:, 1] - bounds[:, 0], xy, xz, yz), bounds[:, 0]


def _cell_rows(lengths: np.ndarray, xy: float, xz: float, yz: float) -> np.ndarray:
    """``(3, 3)`` restricted-triclinic cell rows from edge lengths and tilt factors."""
    return np.array(
        [[lengths[0], 0.0, 0.0], [xy, lengths[1], 0.0], [xz, yz, lengths[2]]], dtype=np.float64
    )


# ----------------------------------------------------------------------------- dumps


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
    with _open_text(path, where, "dump") as handle:
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
    if value is None or not -_INT64_LIMIT <= value < _INT64_LIMIT:
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
        return _cell_rows(lengths, xy, xz, yz), np.array([xlo, ylo, zlo]), periodic
    bounds = numbers.reshape(3, 2)
    return _cell_rows(bounds[:, 1] - bounds[:, 0], 0.0, 0.0, 0.0), bounds[:, 0], periodic


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
    _check_coordinates(positions, ids, here, lines)
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


# ----------------------------------------------------------------------------- both


def read_lammps(
    data_file: PathLike,
    dump_files: Sequence[PathLike] | PathLike,
    *,
    units: str,
    name: str,
    timestep: float | None = None,
    frame_interval: float | None = None,
    atom_style: str | None = None,
    allow_wrapped: bool = False,
) -> SystemTrajectory:
    """Read a LAMMPS data file and its dumps as one unwrapped trajectory.

    Args:
        data_file: the data file giving the topology (see :func:`read_lammps_data`).
        dump_files: text dumps of the same atoms, in time order (see :func:`read_lammps_dump`).
            Frames whose timestep does not pass the previous dump's last one (a restart
            writing them again) are dropped, as in
            :func:`~eqcg.data.trajectory.concatenate_in_time`.
        units: the dataset unit system, ``"real"`` (Å, ps) or ``"lj"`` (sigma, tau).
        name: name of the system in the dataset.
        timestep: MD step length **in the dataset's time unit**; frame time = timestep number
            times this. LAMMPS ``units real`` steps are in fs: a 2 fs step is ``0.002`` (ps).
        frame_interval: time between consecutive kept frames (ps or tau), used instead of
            ``timestep``: frame time = frame index times this. Give exactly one of the two.
        atom_style: overrides the data file's atom style.
        allow_wrapped: accept dumps with wrapped positions and no image flags; they are
            unwrapped by continuity between frames (:func:`eqcg.data.unwrap.unwrap_trajectory`,
            which assumes atoms move less than half a cell between frames).

    The system is periodic when the dumps' boundaries are ``pp pp pp``; with non-periodic
    boundaries (``f``, ``s``, ``m`` in all directions) the box is stored as zeros. Mixed
    boundaries are a DataError.
    """
    paths = [dump_files] if isinstance(dump_files, (str, os.PathLike)) else list(dump_files)
    where = f"{data_file} + {', '.join(str(p) for p in paths)}"
    unit_system(units, where)
    if not paths:
        raise DataError(f"{data_file}: no dump files given")
    _check_time_axis(timestep, frame_interval, where)
    data = read_lammps_data(data_file, atom_style=atom_style)
    dumps = [read_lammps_dump(p, data.atom_ids, allow_wrapped=allow_wrapped) for p in paths]
    keep = _frames_to_keep(dumps, paths)
    positions = np.concatenate([d.positions[k] for d, k in zip(dumps, keep)])
    box = np.concatenate([d.box[k] for d, k in zip(dumps, keep)])
    steps = np.concatenate([d.timesteps[k] for d, k in zip(dumps, keep)])
    pbc = _periodicity(dumps, paths)
    if pbc and any(d.wrapped for d in dumps):
        positions = unwrap_trajectory(positions, box, data.topology.bonds, where)
    time = steps * timestep if timestep is not None else np.arange(len(steps)) * frame_interval
    return SystemTrajectory(
        name=name,
        topology=data.topology,
        positions=positions,
        box=box if pbc else np.zeros_like(box),
        time=time.astype(np.float64),
        pbc=pbc,
        units=units,
        source=f"LAMMPS data {data_file}; dumps {', '.join(str(p) for p in paths)}",
    )


def _check_time_axis(timestep: float | None, frame_interval: float | None, where: str) -> None:
    if (timestep is None) == (frame_interval is None):
        raise DataError(
            f"{where}: give exactly one of timestep (MD step length, e.g. 0.002 ps for a 2 fs "
            f"LAMMPS real-units step) or frame_interval (time between frames)"
        )
    value = timestep if timestep is not None else frame_interval
    if not (np.isfinite(value) and value > 0):
        raise DataError(f"{where}: timestep / frame_interval must be positive, got {value}")


def _frames_to_keep(dumps: list[LammpsDump], paths: list[PathLike]) -> list[np.ndarray]:
    """Per dump, ``(n_frames,)`` mask of frames past every earlier dump's last timestep."""
    keep, last = [], None
    for dump, path in zip(dumps, paths):
        steps = dump.timesteps
        back = np.flatnonzero(np.diff(steps) <= 0)
        if back.size:
            raise DataError(
                f"{path}: frame {back[0] + 1}: timestep {steps[back[0] + 1]} does not advance "
                f"past {steps[back[0]]} (reset_timestep or appended runs in one dump?)"
            )
        mask = steps > last if last is not None else np.ones(len(steps), dtype=bool)
        if not mask.any():
            raise DataError(
                f"{path}: every timestep ({steps[0]}..{steps[-1]}) repeats an earlier dump's "
                f"(which ended at {last}); give the dumps of one run in time order"
            )
        keep.append(mask)
        last = steps[-1]
    return keep


def _periodicity(dumps: list[LammpsDump], paths: list[PathLike]) -> bool:
    """Whether the dumps are periodic in all directions; DataError for mixed boundaries."""
    for dump, path in zip(dumps, paths):
        if dump.periodic != dumps[0].periodic:
            raise DataError(f"{path}: boundary flags differ from those of {paths[0]}")
    periodic = dumps[0].periodic
    if any(periodic) and not all(periodic):
        raise DataError(
            f"{paths[0]}: mixed periodic and non-periodic boundaries {periodic} are not "
            f"supported; a system is periodic in all three directions or in none"
        )
    return all(periodic)
