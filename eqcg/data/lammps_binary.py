"""Read LAMMPS binary dumps (``dump dcd``, ``dump xtc``; TRR too) with mdtraj's coordinate readers.

A binary dump holds coordinates and the cell only: types, masses, bonds and molecules come from
the data file (:func:`~eqcg.data.lammps_files.read_lammps` joins the two). mdtraj's low-level
readers (``mdtraj.formats.DCDTrajectoryFile``, ``XTCTrajectoryFile``, ``TRRTrajectoryFile``)
need no topology and return the numbers as written in the file.

Units. ``dump dcd`` writes coordinates as LAMMPS holds them (Å for ``units real``, sigma for
``lj``): kept as read. ``dump xtc`` converts ``units real`` coordinates to GROMACS' nm (times
0.1) and writes ``lj`` ones unscaled: XTC and TRR numbers are multiplied by 10 for ``real`` and
kept for ``lj``. (A ``dump_modify sfactor`` other than LAMMPS' default is not detected.)

Atoms. LAMMPS writes DCD and XTC atoms sorted by id, so atom ``i`` of every frame is the
``i``-th atom of the data file; the dump must be of group ``all`` (any other atom count is a
:class:`~eqcg.errors.DataError`).

Cell. DCD frames carry lengths and angles, turned into LAMMPS' restricted triclinic rows
(``a`` along x, ``b`` in the xy plane); XTC/TRR frames carry the vectors. Binary dumps do not
record LAMMPS' ``boundary``: a file whose frames have a cell is taken as periodic in all three
directions, one without a cell (zero lengths) as non-periodic. Positions are taken as wrapped
(``dump_modify unwrap yes`` output is already continuous and passes unwrapping unchanged).

Steps. XTC/TRR frames record their MD step. A DCD header records the first step and the
interval (``START``, ``SKIP``): frame ``i`` is step ``START + i * SKIP``.

Checks. A DCD or XTC file cut short (a run stopped while writing) or with a corrupt frame
header is a :class:`~eqcg.errors.DataError` naming the frame, raised before mdtraj decodes it;
corrupt bytes inside XTC's compressed coordinates are not detected (and can crash mdtraj's
decoder).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import mdtraj.formats
import mdtraj.utils
import numpy as np

from eqcg.data.lammps_data_file import MAX_COORDINATE
from eqcg.data.lammps_dump import LammpsDump
from eqcg.errors import DataError

PathLike = str | os.PathLike

#: Suffixes (lower case) of the binary dumps :func:`read_lammps_binary_dump` reads.
BINARY_SUFFIXES = frozenset({".dcd", ".xtc", ".trr"})
#: Binary formats whose numbers are nm for ``units real`` (GROMACS' convention).
_NM_SUFFIXES = frozenset({".xtc", ".trr"})
_DCD_MARKER = 84  # length of the first Fortran record of a DCD file
# First record: marker, "CORD", ICNTRL[0..19] (NFILE, START, SKIP, ..., DELTA at 9, cell flag at
# 10, 4th dimension at 11, version at 19), marker; then the title and atom-count records.
_DCD_HEADER = "i4s9if10ii"
_XTC_MAGIC = 1995
_XTC_HEADER = struct.Struct(">3i10fi")  # magic, natoms, step, time, box (9), natoms again
_XTC_COORDS = struct.Struct(">f6i2i")  # precision, minint, maxint, smallidx, byte count
_XTC_SMALLIDX = range(9, 74)  # valid indices into xdrfile's table of magic integers


def is_binary_dump(path: PathLike) -> bool:
    """Whether ``path``'s suffix names a binary dump (``.dcd``, ``.xtc``, ``.trr``)."""
    return Path(path).suffix.lower() in BINARY_SUFFIXES


def read_lammps_binary_dump(
    path: PathLike,
    atom_ids: np.ndarray,
    *,
    units: str,
    data_file: PathLike | None = None,
) -> LammpsDump:
    """Read every frame of a DCD, XTC or TRR dump of the data file's atoms (still wrapped).

    Args:
        path: the dump; its suffix (``.dcd``, ``.xtc``, ``.trr``) names the format.
        atom_ids: ``(n_atoms,)`` sorted atom ids of the data file
            (:attr:`~eqcg.data.lammps_data_file.LammpsData.atom_ids`); every frame must hold
            exactly this many atoms, in this order.
        units: ``"real"`` or ``"lj"``: the LAMMPS units of the run (see the module doc).
        data_file: the data file's name, for messages.

    Returns a :class:`~eqcg.data.lammps_dump.LammpsDump` with ``wrapped=True`` when periodic.

    Raises :class:`DataError` naming the file (and frame and atom id) for: a file mdtraj cannot
    read (missing, not this format, truncated inside a frame), a DCD whose header declares more
    frames than it holds or gives no step interval, no frames, an atom count other than
    ``len(atom_ids)``, coordinates or cells that are non-finite or beyond
    :data:`~eqcg.data.lammps_data_file.MAX_COORDINATE`, or frames of which some have a cell and
    some do not.
    """
    where = str(path)
    suffix = Path(path).suffix.lower()
    if suffix not in BINARY_SUFFIXES:
        raise DataError(f"{where}: not a binary dump (.dcd, .xtc, .trr)")
    if not Path(path).is_file():
        raise DataError(f"{where}: no such file")
    if suffix == ".dcd":
        xyz, box, steps = _read_dcd(Path(path), where)
        scale = 1.0
    else:
        xyz, box, steps = _read_xdr(Path(path), where, suffix)
        scale = 10.0 if units == "real" and suffix in _NM_SUFFIXES else 1.0
    n_atoms = len(atom_ids)
    reference = f"the data file {data_file}" if data_file is not None else "the data file"
    if xyz.shape[1] != n_atoms:
        raise DataError(
            f"{where}: {xyz.shape[1]} atoms per frame, but {reference} has {n_atoms}; a "
            f"{suffix[1:].upper()} dump must hold every atom of the data file (dump of group "
            f"'all' from the run that wrote the data file)"
        )
    positions = xyz.astype(np.float64) * scale
    box = box * scale
    _check_finite(positions, box, atom_ids, steps, where)
    has_cell = np.linalg.det(box) > 0
    if has_cell.any() and not has_cell.all():
        frame = int(np.flatnonzero(has_cell != has_cell[0])[0])
        raise DataError(
            f"{where}: frame {frame} (timestep {steps[frame]}) "
            f"{'has no' if has_cell[0] else 'has a'} periodic cell, unlike frame 0"
        )
    periodic = bool(has_cell[0])
    return LammpsDump(
        timesteps=steps,
        box=box if periodic else np.zeros_like(box),
        positions=positions,
        periodic=(periodic,) * 3,
        wrapped=periodic,
    )


def _read_dcd(path: Path, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates ``(n_frames, n_atoms, 3)`` float32, cells ``(n_frames, 3, 3)`` and steps."""
    header = _dcd_header(path, where)
    try:
        with mdtraj.formats.DCDTrajectoryFile(str(path)) as handle:
            xyz, lengths, angles = handle.read()
    except Exception as exc:  # mdtraj raises many types for unreadable files
        raise DataError(f"{where}: mdtraj cannot read this DCD file ({exc})") from None
    n_frames = len(xyz)
    if n_frames == 0:
        raise DataError(f"{where}: the DCD file holds no frames")
    if header.declared > n_frames:
        raise DataError(
            f"{where} is truncated: its header declares {header.declared} frames, the file "
            f"holds {n_frames}"
        )
    if header.skip <= 0 or header.start < 0:
        raise DataError(
            f"{where}: the DCD header gives no MD steps (first step {header.start}, interval "
            f"{header.skip}); LAMMPS' dump dcd writes them: is this a LAMMPS DCD?"
        )
    steps = header.start + header.skip * np.arange(n_frames, dtype=np.int64)
    return xyz, _dcd_cells(lengths, angles, n_frames), steps


class _DcdHeader(NamedTuple):
    declared: int  # NFILE: frames in the file
    start: int  # START: step of the first frame
    skip: int  # SKIP: steps between frames


def _dcd_header(path: Path, where: str) -> _DcdHeader:
    """The step fields of a DCD header, checked against the file size: DataError for a file
    that is not a DCD or that ends inside a frame (the last one cut short)."""
    size = struct.calcsize("<" + _DCD_HEADER)
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(size + 4)  # + the title record's length
    for order in "<>" if len(head) == size + 4 else "":
        marker, magic, *icntrl, end = struct.unpack(order + _DCD_HEADER, head[:size])
        if marker == _DCD_MARKER == end and magic == b"CORD":
            break
    else:
        raise DataError(
            f"{where}: not a DCD file (no 'CORD' header); LAMMPS writes DCD with "
            f"'dump ID all dcd N file.dcd'"
        )
    header = _DcdHeader(*icntrl[:3])
    (title_bytes,) = struct.unpack(order + "i", head[size : size + 4])
    if not 0 <= title_bytes <= file_size:
        raise DataError(f"{where}: corrupt DCD header (a title record of {title_bytes} bytes)")
    with open(path, "rb") as handle:
        handle.seek(size + 4 + title_bytes + 4)
        atoms_record = handle.read(12)
    if len(atoms_record) < 12 or icntrl[11]:
        return header  # no atom count, or a 4th dimension: leave the layout to mdtraj
    _, n_atoms, _ = struct.unpack(order + "3i", atoms_record)
    start = size + 4 + title_bytes + 4 + 12
    frame_bytes = (56 if icntrl[10] else 0) + 3 * (8 + 4 * n_atoms)
    if n_atoms > 0 and file_size > start:
        complete, extra = divmod(file_size - start, frame_bytes)
        if extra:
            raise DataError(
                f"{where} is truncated: frame {complete} is cut short ({extra} of its "
                f"{frame_bytes} bytes); remove the incomplete frame"
            )
    return header


def _dcd_cells(lengths: np.ndarray | None, angles: np.ndarray | None, n_frames: int) -> np.ndarray:
    """``(n_frames, 3, 3)`` restricted-triclinic cell rows from DCD lengths and angles (degrees);
    zero rows for frames without a cell. Float32 noise in the zero entries is set to 0."""
    box = np.zeros((n_frames, 3, 3))
    if lengths is None or angles is None:
        return box
    lengths = np.asarray(lengths, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    ok = (lengths > 0).all(axis=1) & np.isfinite(angles).all(axis=1)
    if ok.any():
        a, b, c = mdtraj.utils.lengths_and_angles_to_box_vectors(*lengths[ok].T, *angles[ok].T)
        rows = np.stack([a, b, c], axis=1)
        noise = np.abs(rows) < 1e-6 * lengths[ok].max(axis=1)[:, None, None]
        rows[noise] = 0.0
        box[ok] = rows
    return box


def _read_xdr(path: Path, where: str, suffix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates, cells ``(n_frames, 3, 3)`` (numbers as written) and steps of an XTC/TRR."""
    reader = (
        mdtraj.formats.XTCTrajectoryFile if suffix == ".xtc" else mdtraj.formats.TRRTrajectoryFile
    )
    name = suffix[1:].upper()
    if suffix == ".xtc":
        _check_xtc_frames(path, where)
    try:
        with reader(str(path)) as handle:
            xyz, _time, steps, box = handle.read()[:4]
    except Exception as exc:  # mdtraj raises many types for unreadable files
        raise DataError(
            f"{where}: mdtraj cannot read this {name} file ({exc}); truncated or corrupt?"
        ) from None
    if len(xyz) == 0:
        raise DataError(f"{where}: the {name} file holds no frames")
    box = np.zeros((len(xyz), 3, 3)) if box is None else np.asarray(box, dtype=np.float64)
    return xyz, box, np.asarray(steps, dtype=np.int64)


def _check_xtc_frames(path: Path, where: str) -> None:
    """Walk the frame headers of an XTC file; DataError naming the frame for a bad magic number,
    an atom count that changes, an implausible coordinate header, or a frame cut short.

    mdtraj's XTC decoder does not check these and can crash on them. (Corrupt bytes inside the
    compressed coordinates are not detected here.)
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset, frame, n_atoms = 0, 0, None
        while offset < size:
            handle.seek(offset)
            head = handle.read(_XTC_HEADER.size)
            here = f"{where}: frame {frame} (byte {offset})"
            if len(head) < _XTC_HEADER.size:
                raise DataError(f"{here} is truncated: the file ends inside its header")
            magic, atoms, _step, *_cell, atoms_again = _XTC_HEADER.unpack(head)
            if magic != _XTC_MAGIC:
                raise DataError(
                    f"{here}: not an XTC frame (magic number {magic}, expected {_XTC_MAGIC}); "
                    f"corrupt file, or not written by 'dump xtc'?"
                )
            n_atoms = atoms if n_atoms is None else n_atoms
            if atoms != atoms_again:
                raise DataError(
                    f"{here}: its header says {atoms} atoms, its coordinates {atoms_again} "
                    f"(corrupt file?)"
                )
            if atoms != n_atoms or atoms < 1:
                raise DataError(f"{here}: {atoms} atoms, but frame 0 has {n_atoms}")
            offset += _XTC_HEADER.size
            if atoms <= 9:  # small frames are stored uncompressed
                offset += 12 * atoms
            else:
                coords = handle.read(_XTC_COORDS.size)
                if len(coords) < _XTC_COORDS.size:
                    raise DataError(f"{here} is truncated: the file ends inside its header")
                precision, *bounds, smallidx, n_bytes = _XTC_COORDS.unpack(coords)
                low, high = bounds[:3], bounds[3:]
                if not (
                    precision > 0
                    and all(a <= b for a, b in zip(low, high))
                    and smallidx in _XTC_SMALLIDX
                    and n_bytes >= 0
                ):
                    raise DataError(
                        f"{here}: corrupt coordinate header (precision {precision}, integer "
                        f"range {low}..{high}, {n_bytes} bytes)"
                    )
                offset += _XTC_COORDS.size + (n_bytes + 3) // 4 * 4
            if offset > size:
                raise DataError(
                    f"{here} is truncated: it ends {offset - size} bytes past the end of the file"
                )
            frame += 1


def _check_finite(
    positions: np.ndarray, box: np.ndarray, atom_ids: np.ndarray, steps: np.ndarray, where: str
) -> None:
    """DataError naming the frame (and atom id) of the first non-finite or absurd coordinate or
    cell vector."""
    bad_box = np.flatnonzero(~(np.abs(box) <= MAX_COORDINATE).all(axis=(1, 2)))
    if bad_box.size:
        frame = bad_box[0]
        raise DataError(
            f"{where}: frame {frame} (timestep {steps[frame]}): cell {box[frame].tolist()} is "
            f"non-finite or beyond ±{MAX_COORDINATE:g} (corrupt file?)"
        )
    bad = ~(np.abs(positions) <= MAX_COORDINATE).all(axis=2)
    if bad.any():
        frame, atom = np.argwhere(bad)[0]
        raise DataError(
            f"{where}: frame {frame} (timestep {steps[frame]}): atom id {atom_ids[atom]} has "
            f"coordinates {positions[frame, atom].tolist()}, non-finite or beyond "
            f"±{MAX_COORDINATE:g} (corrupt file?)"
        )
