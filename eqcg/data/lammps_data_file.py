"""Read LAMMPS data files: topology (masses, types, bonds, charges), positions, image flags, cell.

:func:`read_lammps_data` reads ``atom_style`` full, molecular, bond, angle, atomic or charge,
plain or gzipped (recognised by the first bytes, whatever the name). Anything malformed — binary
data, a count that disagrees with its section, a non-integer id or type, absurd coordinates —
is a :class:`~eqcg.errors.DataError` naming the file and the line or atom id.

Conventions (shared by the dump readers, :mod:`eqcg.data.lammps_dump` and
:mod:`eqcg.data.lammps_binary`). Atom ids may be unordered and non-contiguous: atom ``i`` of
every array is the ``i``-th smallest id. Atom types keep their LAMMPS numbers as names (``"1"``,
``"2"``, ...) and are 0-based indices (``type - 1``); bond types likewise. Cells are three row
vectors ``a, b, c`` (LAMMPS' restricted triclinic form ``a = (lx, 0, 0)``, ``b = (xy, ly, 0)``,
``c = (xz, yz, lz)``) plus the origin ``(xlo, ylo, zlo)``. Lengths and times are whatever the
LAMMPS ``units`` made them.

The text helpers :func:`open_text` and :func:`check_coordinates` serve the text dump reader too.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from eqcg.data.trajectory import Topology
from eqcg.errors import DataError

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

_GZIP_MAGIC = b"\x1f\x8b"
#: Largest plausible coordinate magnitude (Å or sigma): anything beyond is a corrupt file.
MAX_COORDINATE = 1e8
INT64_LIMIT = 2**63


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
class _Section:
    """One section of a data file: its rows of tokens and their 1-based line numbers."""

    name: str
    comment: str
    start: int  # line number of the section's name
    rows: list[list[str]]
    lines: list[int]


# ----------------------------------------------------------------------------- reading text


@contextlib.contextmanager
def open_text(path: PathLike, where: str, what: str) -> Iterator[TextIO]:
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


def check_coordinates(
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
            else guessed from the number of values per line (7/10: full, 6/9: molecular or
            charge, by the bonds and which columns hold atom types; 5/8: atomic).

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
    style = _atom_style(atoms, atom_style, header, where)
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
    check_coordinates(positions, ids, where, atoms.lines)
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
    with open_text(path, where, "data file") as handle:
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
    if not 0 <= count < INT64_LIMIT:
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


def _atom_style(atoms: _Section, requested: str | None, header: dict[str, list[str]],
                where: str) -> str:
    """The atom style: ``requested``, else the ``Atoms # style`` comment, else by column count
    (6 or 9 values: :func:`_molecular_or_charge`)."""
    named = requested or (atoms.comment.split()[0] if atoms.comment else None)
    if named is not None:
        if named not in ATOM_STYLES:
            raise DataError(
                f"{where}: atom style {named!r} is not supported; supported: "
                f"{', '.join(ATOM_STYLES)} (in Python, atom_style= overrides the file's)"
            )
        return named
    count = len(atoms.rows[0])
    if count not in _STYLE_BY_COUNT:
        raise DataError(
            f"{where}, line {atoms.lines[0]}: cannot tell the atom style from {count} values per "
            f"Atoms line; name it in the file ('Atoms # full'; in Python: atom_style=)"
        )
    if _STYLE_BY_COUNT[count] == "molecular":
        return _molecular_or_charge(atoms, header, where)
    return _STYLE_BY_COUNT[count]


def _molecular_or_charge(atoms: _Section, header: dict[str, list[str]], where: str) -> str:
    """``molecular`` (id mol type x y z) or ``charge`` (id type q x y z), which have as many
    values per line: molecular when the file has bonds (style charge has none) or only its
    columns hold valid types; a :class:`DataError` when both read as valid types."""
    if _header_count(header, "bonds", where) > 0:
        return "molecular"
    n_types = _header_count(header, "atom types", where)

    def holds_types(column: int) -> bool:
        try:
            return all(1 <= int(row[column]) <= n_types for row in atoms.rows)
        except ValueError:
            return False

    molecular, charge = holds_types(2), holds_types(1)
    if charge and not molecular:
        return "charge"
    if molecular and charge:
        raise DataError(
            f"{where}, line {atoms.lines[0]}: {len(atoms.rows[0])} values per Atoms line fit "
            "both atom style 'molecular' (id mol type x y z) and 'charge' (id type q x y z), and "
            "the file has no bonds to tell them apart; name the style in the file ('Atoms # "
            "charge' or 'Atoms # molecular'; in Python: atom_style=)"
        )
    return "molecular"


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
    return cell_rows(bounds[:, 1] - bounds[:, 0], xy, xz, yz), bounds[:, 0]


def cell_rows(lengths: np.ndarray, xy: float, xz: float, yz: float) -> np.ndarray:
    """``(3, 3)`` restricted-triclinic cell rows from edge lengths and tilt factors."""
    return np.array(
        [[lengths[0], 0.0, 0.0], [xy, lengths[1], 0.0], [xz, yz, lengths[2]]], dtype=np.float64
    )
