"""Trajectory readers: LAMMPS data + dumps in every position flavour, mdtraj, ASE, ingest.

A tiny ground truth (3 zigzag molecules of 4 atoms drifting across the periodic boundaries of
an orthogonal or triclinic cell) is written in each file format and read back; the unwrapped
positions must match the truth. One test runs real LAMMPS and checks that dumps of image
flags, unwrapped and scaled coordinates agree.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import ase
import ase.io
import mdtraj as md
import numpy as np
import pytest

from eqcg.commands.cli import main
from eqcg.data.ase_reader import read_ase
from eqcg.data.ingest import detect_format, ingest
from eqcg.data.lammps_data_file import read_lammps_data
from eqcg.data.lammps_dump import read_lammps_dump
from eqcg.data.lammps_files import read_lammps
from eqcg.data.mdtraj_reader import read_mdtraj
from eqcg.data.store import load_dataset
from eqcg.data.unwrap import unwrap_trajectory
from eqcg.errors import DataError, OutputError
from eqcg.systems.lammps_runner import run_lammps
from eqcg.testing import lammps_available

ORTHOGONAL = np.diag([10.0, 11.0, 12.0])
TRICLINIC = np.array([[10.0, 0.0, 0.0], [2.0, 11.0, 0.0], [-1.5, 1.0, 12.0]])
BOXES = {"orthogonal": ORTHOGONAL, "triclinic": TRICLINIC}
ELEMENTS = ("C", "O", "N")  # LAMMPS types 1, 2, 3
MASSES = (12.011, 15.999, 14.007)
MOLECULE_TYPES = (1, 2, 3, 1)
FLAVOURS = {
    "image": ("x", "y", "z", "ix", "iy", "iz"),
    "unwrapped": ("xu", "yu", "zu"),
    "scaled_image": ("xs", "ys", "zs", "ix", "iy", "iz"),
    "scaled_unwrapped": ("xsu", "ysu", "zsu"),
    "wrapped": ("x", "y", "z"),
}

NO_LAMMPS = "LAMMPS (eqcg[md]) not installed"
needs_lammps = pytest.mark.skipif(not lammps_available(), reason=NO_LAMMPS)


@dataclass
class Truth:
    """Unwrapped ground truth: positions ``(n_frames, 12, 3)`` in a cell at ``origin``."""

    positions: np.ndarray
    box: np.ndarray
    origin: np.ndarray
    types: np.ndarray  # LAMMPS types (1-based)
    bonds: np.ndarray  # 0-based
    charges: np.ndarray
    ids: np.ndarray  # LAMMPS atom ids, non-contiguous

    def wrapped(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Wrapped positions, integer image flags and scaled wrapped coordinates."""
        frac = (self.positions - self.origin) @ np.linalg.inv(self.box)
        images = np.floor(frac)
        scaled = frac - images
        return self.origin + scaled @ self.box, images.astype(int), scaled


def make_truth(box: np.ndarray, origin=(0.0, 0.0, 0.0), n_frames: int = 20, seed: int = 0) -> Truth:
    """Three zigzag molecules (bonds 1.52 Å) whose first atoms start inside the cell."""
    rng = np.random.default_rng(seed)
    origin = np.asarray(origin, dtype=float)
    start = np.array([[0.93, 0.2, 0.3], [0.3, 0.92, 0.6], [0.6, 0.55, 0.06]]) @ box + origin
    along = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]])
    across = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
    k = np.arange(4)[None, :, None]
    frame0 = start[:, None] + 1.25 * k * along[:, None] + 0.87 * (k % 2) * across[:, None]
    drift = np.array([[0.7, 0.2, -0.3], [-0.4, 0.6, 0.5], [0.3, -0.5, -0.6]])
    t = np.arange(n_frames)[:, None, None, None]
    positions = frame0[None] + t * drift[None, :, None] + rng.normal(0, 0.05, (n_frames, 3, 4, 3))
    bonds = np.concatenate([m * 4 + np.c_[k.ravel()[:-1], k.ravel()[1:]] for m in range(3)])
    return Truth(
        positions=positions.reshape(n_frames, 12, 3),
        box=box,
        origin=origin,
        types=np.tile(MOLECULE_TYPES, 3),
        bonds=bonds,
        charges=np.round(rng.normal(0, 0.3, 12), 4),
        ids=np.arange(12) * 3 + 7,
    )


def write_data(
    path: Path,
    truth: Truth,
    style: str = "full",
    comment: bool = True,
    bonds_section: bool = True,
    images: bool = True,
    masses: tuple[float, ...] = MASSES,
) -> Path:
    """A LAMMPS data file of the truth's first frame, atom lines in shuffled order."""
    wrapped, flags, _ = truth.wrapped()
    lo, (xy, xz, yz) = truth.origin, (truth.box[1, 0], truth.box[2, 0], truth.box[2, 1])
    hi = lo + np.diag(truth.box)
    lines = [
        "eqcg test data",
        "",
        "12 atoms",
        f"{len(truth.bonds)} bonds",
        "3 atom types",
        "1 bond types",
        "",
    ]
    lines += [f"{lo[i]:.10f} {hi[i]:.10f} {a}lo {a}hi" for i, a in enumerate("xyz")]
    if truth.box[1, 0] or truth.box[2, 0] or truth.box[2, 1]:
        lines.append(f"{xy} {xz} {yz} xy xz yz")
    lines += ["", "Masses", ""] + [f"{t + 1} {m}  # {ELEMENTS[t]}" for t, m in enumerate(masses)]
    lines += ["", f"Atoms # {style}" if comment else "Atoms", ""]
    for i in np.random.default_rng(1).permutation(12):
        x, y, z = wrapped[0, i]
        mol = i // 4 + 1
        head = {
            "full": f"{truth.ids[i]} {mol} {truth.types[i]} {truth.charges[i]}",
            "molecular": f"{truth.ids[i]} {mol} {truth.types[i]}",
            "bond": f"{truth.ids[i]} {mol} {truth.types[i]}",
            "atomic": f"{truth.ids[i]} {truth.types[i]}",
        }[style]
        tail = " {} {} {}".format(*flags[0, i]) if images else ""
        lines.append(f"{head} {x:.10f} {y:.10f} {z:.10f}{tail}")
    if bonds_section:
        lines += ["", "Bonds", ""]
        lines += [
            f"{b + 1} 1 {truth.ids[i]} {truth.ids[j]}" for b, (i, j) in enumerate(truth.bonds)
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def dump_text(truth: Truth, flavour: str, frames, timesteps, boundary: str = "pp pp pp") -> str:
    """A LAMMPS text dump of ``frames`` in a shuffled column order, atoms in shuffled order."""
    rng = np.random.default_rng(2)
    wrapped, flags, scaled = truth.wrapped()
    frac = (truth.positions - truth.origin) @ np.linalg.inv(truth.box)
    columns = ["id", "type", *FLAVOURS[flavour]]
    columns = [columns[i] for i in rng.permutation(len(columns))]
    lo, hi = truth.origin, truth.origin + np.diag(truth.box)
    xy, xz, yz = truth.box[1, 0], truth.box[2, 0], truth.box[2, 1]
    triclinic = bool(xy or xz or yz)
    out = []
    for frame, step in zip(frames, timesteps):
        values = {"id": truth.ids, "type": truth.types}
        for axis, name in enumerate("xyz"):
            values[name] = wrapped[frame, :, axis]
            values[f"{name}u"] = truth.positions[frame, :, axis]
            values[f"{name}s"] = scaled[frame, :, axis]
            values[f"{name}su"] = frac[frame, :, axis]
            values[f"i{name}"] = flags[frame, :, axis]
        out += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", "12"]
        if triclinic:
            out.append(f"ITEM: BOX BOUNDS xy xz yz {boundary}")
            out.append(f"{lo[0] + min(0, xy, xz, xy + xz)} {hi[0] + max(0, xy, xz, xy + xz)} {xy}")
            out.append(f"{lo[1] + min(0, yz)} {hi[1] + max(0, yz)} {xz}")
            out.append(f"{lo[2]} {hi[2]} {yz}")
        else:
            out.append(f"ITEM: BOX BOUNDS {boundary}")
            out += [f"{lo[i]} {hi[i]}" for i in range(3)]
        out.append("ITEM: ATOMS " + " ".join(columns))
        for i in rng.permutation(12):
            out.append(" ".join(f"{values[c][i]:.10g}" for c in columns))
    return "\n".join(out) + "\n"


def write_dump(path: Path, truth: Truth, flavour: str, frames=None, timesteps=None, **kw) -> Path:
    frames = range(len(truth.positions)) if frames is None else frames
    timesteps = [100 * f for f in frames] if timesteps is None else timesteps
    path.write_text(dump_text(truth, flavour, frames, timesteps, **kw))
    return path


# ----------------------------------------------------------------------------- LAMMPS files


@pytest.mark.parametrize("box_name", sorted(BOXES))
@pytest.mark.parametrize("flavour", ["image", "unwrapped", "scaled_image", "scaled_unwrapped"])
def test_lammps_dump_flavours_unwrap_to_truth(tmp_path, box_name, flavour):
    truth = make_truth(BOXES[box_name], origin=(-2.0, 1.0, 0.5))
    data = write_data(tmp_path / "sys.data", truth)
    dump = write_dump(tmp_path / "sys.lammpstrj", truth, flavour)
    traj = read_lammps(data, [dump], units="real", name="sys", timestep=0.002)
    traj.validate()
    np.testing.assert_allclose(traj.positions, truth.positions, atol=1e-6)
    np.testing.assert_allclose(traj.box, np.broadcast_to(truth.box, (20, 3, 3)), atol=1e-9)
    np.testing.assert_allclose(traj.time, np.arange(20) * 100 * 0.002)
    assert traj.pbc and traj.units == "real"
    top = traj.topology
    assert top.type_names == ["1", "2", "3"]
    np.testing.assert_array_equal(top.types, truth.types - 1)
    np.testing.assert_allclose(top.masses, np.array(MASSES)[truth.types - 1])
    np.testing.assert_array_equal(np.sort(top.bonds, axis=1), truth.bonds)
    np.testing.assert_allclose(top.charges, truth.charges)


def test_lammps_data_file_contents(tmp_path):
    truth = make_truth(TRICLINIC, origin=(-2.0, 1.0, 0.5))
    data = read_lammps_data(write_data(tmp_path / "sys.data", truth))
    wrapped, flags, _ = truth.wrapped()
    np.testing.assert_array_equal(data.atom_ids, truth.ids)
    np.testing.assert_allclose(data.positions, wrapped[0], atol=1e-9)
    np.testing.assert_array_equal(data.images, flags[0])
    np.testing.assert_allclose(data.box, TRICLINIC)
    np.testing.assert_allclose(data.origin, truth.origin)
    np.testing.assert_array_equal(data.molecule_ids, np.repeat([1, 2, 3], 4))
    assert data.atom_style == "full"


@pytest.mark.parametrize(
    ("style", "comment", "images"),
    [
        ("molecular", False, True),
        ("bond", True, False),
        ("full", False, False),
        ("atomic", True, True),
    ],
)
def test_lammps_atom_styles(tmp_path, style, comment, images):
    truth = make_truth(ORTHOGONAL)
    data = read_lammps_data(
        write_data(tmp_path / "sys.data", truth, style=style, comment=comment, images=images)
    )
    expected = {"molecular": "molecular", "bond": "bond", "full": "full", "atomic": "atomic"}
    assert data.atom_style == expected[style]
    assert (data.images is not None) == images
    assert (data.topology.charges is not None) == (style == "full")
    assert data.topology.n_bonds == len(truth.bonds)


def test_lammps_wrapped_dump_needs_image_flags_or_allow_wrapped(tmp_path):
    truth = make_truth(TRICLINIC, origin=(-2.0, 1.0, 0.5))
    data = write_data(tmp_path / "sys.data", truth)
    dump = write_dump(tmp_path / "sys.dump", truth, "wrapped")
    with pytest.raises(DataError, match=r"sys\.dump: frame 0 .*wrapped.*image flags"):
        read_lammps(data, [dump], units="real", name="s", timestep=1.0)
    traj = read_lammps(data, [dump], units="real", name="s", timestep=1.0, allow_wrapped=True)
    np.testing.assert_allclose(traj.positions, truth.positions, atol=1e-6)


def test_lammps_restart_dumps_join_and_frame_interval(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    first = write_dump(tmp_path / "a.dump", truth, "image", frames=range(0, 12))
    second = write_dump(tmp_path / "b.dump", truth, "unwrapped", frames=range(10, 20))
    traj = read_lammps(data, [first, second], units="lj", name="s", frame_interval=0.5)
    np.testing.assert_allclose(traj.positions, truth.positions, atol=1e-6)
    np.testing.assert_allclose(traj.time, np.arange(20) * 0.5)
    with pytest.raises(DataError, match="repeats an earlier dump"):
        read_lammps(data, [first, first], units="lj", name="s", frame_interval=0.5)


def test_lammps_non_periodic_dump_has_zero_box(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth, style="bond")
    dump = write_dump(tmp_path / "sys.dump", truth, "unwrapped", boundary="ss ss ss")
    traj = read_lammps(data, dump, units="lj", name="s", timestep=0.01)
    assert not traj.pbc
    assert not traj.box.any()
    np.testing.assert_allclose(traj.positions, truth.positions, atol=1e-6)


@needs_lammps
def test_real_lammps_run_image_flags_and_unwrapped_dumps_agree(tmp_path):
    chain1 = np.c_[np.arange(5) - 1.5, np.full(5, 1.5), np.full(5, 1.5)]  # crosses x = 0
    chain2 = np.c_[np.full(5, 3.5), np.arange(5) + 3.5, np.full(5, 4.0)]  # crosses y = 6
    positions = np.concatenate([chain1, chain2])
    lines = [
        "chain test",
        "",
        "10 atoms",
        "8 bonds",
        "1 atom types",
        "1 bond types",
        "",
        "0 6 xlo xhi",
        "0 6 ylo yhi",
        "0 6 zlo zhi",
        "0.5 0.3 0.2 xy xz yz",
        "",
        "Masses",
        "",
        "1 1.0",
        "",
        "Atoms # bond",
        "",
    ]
    lines += [f"{i + 1} {i // 5 + 1} 1 {x} {y} {z}" for i, (x, y, z) in enumerate(positions)]
    lines += ["", "Bonds", ""]
    lines += [
        f"{b + 1} 1 {c * 5 + k + 1} {c * 5 + k + 2}"
        for b, (c, k) in enumerate((c, k) for c in range(2) for k in range(4))
    ]
    (tmp_path / "chain.data").write_text("\n".join(lines) + "\n")
    (tmp_path / "in.chain").write_text(
        """units lj
atom_style bond
boundary p p p
read_data chain.data
bond_style harmonic
bond_coeff 1 100.0 1.0
pair_style lj/cut 1.122462
pair_coeff * * 1.0 1.0 1.122462
pair_modify shift yes
special_bonds lj 0.0 1.0 1.0
velocity all create 1.0 4928 mom yes
fix 1 all nve
timestep 0.005
thermo 50
dump img all custom 10 img.lammpstrj id type x y z ix iy iz
dump_modify img format float %.10g
dump unw all custom 10 unw.lammpstrj xu yu zu id
dump_modify unw format float %.10g
dump scl all custom 10 scl.lammpstrj ix iy iz id xs ys zs
dump_modify scl format float %.10g
run 100
"""
    )
    run_lammps("in.chain", tmp_path, total_steps=100, show_progress=False)
    data = tmp_path / "chain.data"
    read = {
        kind: read_lammps(
            data, [tmp_path / f"{kind}.lammpstrj"], units="lj", name="c", timestep=0.005
        )
        for kind in ("img", "unw", "scl")
    }
    assert read["img"].n_frames == 11
    np.testing.assert_allclose(read["img"].positions, read["unw"].positions, atol=1e-4)
    np.testing.assert_allclose(read["scl"].positions, read["unw"].positions, atol=1e-4)
    np.testing.assert_allclose(read["img"].time, np.arange(11) * 10 * 0.005)
    traj = read["img"]
    bonds = traj.topology.bonds
    lengths = np.linalg.norm(
        traj.positions[:, bonds[:, 0]] - traj.positions[:, bonds[:, 1]], axis=-1
    )
    assert lengths.max() < 1.5
    frac = traj.positions @ np.linalg.inv(traj.box[0])
    assert ((frac < 0) | (frac >= 1)).any(), "no atom outside the cell: unwrapping not exercised"
    np.testing.assert_allclose(traj.box[0], [[6, 0, 0], [0.5, 6, 0], [0.3, 0.2, 6]], atol=1e-9)


# ----------------------------------------------------------------------------- mdtraj, ASE


def mdtraj_topology(bonds: bool = True) -> md.Topology:
    top = md.Topology()
    chain = top.add_chain()
    atoms = []
    for _ in range(3):
        residue = top.add_residue("MOL", chain)
        for k, t in enumerate(MOLECULE_TYPES):
            atoms.append(
                top.add_atom(
                    f"{ELEMENTS[t - 1]}{k}", md.element.get_by_symbol(ELEMENTS[t - 1]), residue
                )
            )
    if bonds:
        for i, j in make_truth(ORTHOGONAL).bonds:
            top.add_bond(atoms[i], atoms[j])
    return top


def test_mdtraj_pdb_dcd_round_trip_unwraps(tmp_path):
    truth = make_truth(TRICLINIC)
    wrapped, _, _ = truth.wrapped()
    traj = md.Trajectory(wrapped / 10.0, mdtraj_topology())
    traj.unitcell_vectors = np.broadcast_to(truth.box / 10.0, (20, 3, 3)).copy()
    traj[0].save_pdb(str(tmp_path / "sys.pdb"))
    traj.save_dcd(str(tmp_path / "sys.dcd"))
    got = read_mdtraj(tmp_path / "sys.pdb", [tmp_path / "sys.dcd"], name="m", frame_interval=2.0)
    got.validate()
    np.testing.assert_allclose(got.positions, truth.positions, atol=2e-3)
    np.testing.assert_allclose(got.box[0], truth.box, atol=1e-3)
    np.testing.assert_allclose(got.time, np.arange(20) * 2.0)
    top = got.topology
    assert top.type_names == ["C", "N", "O"]
    np.testing.assert_allclose(top.masses[:4], [12.011, 15.999, 14.007, 12.011], atol=1e-2)
    np.testing.assert_array_equal(np.sort(top.bonds, axis=1), truth.bonds)
    with pytest.raises(DataError, match="frame_interval"):
        read_mdtraj(tmp_path / "sys.pdb", [tmp_path / "sys.dcd"], name="m")


def test_mdtraj_xtc_times_and_lj_numbers_as_written(tmp_path):
    truth = make_truth(ORTHOGONAL)
    wrapped, _, _ = truth.wrapped()
    traj = md.Trajectory(wrapped / 10.0, mdtraj_topology(), time=0.25 * np.arange(20))
    traj.unitcell_vectors = np.broadcast_to(truth.box / 10.0, (20, 3, 3)).copy()
    traj[0].save_pdb(str(tmp_path / "sys.pdb"))
    traj[:12].save_xtc(str(tmp_path / "a.xtc"))
    traj[10:].save_xtc(str(tmp_path / "b.xtc"))  # overlaps a.xtc by two frames
    xtcs = [tmp_path / "a.xtc", tmp_path / "b.xtc"]
    got = read_mdtraj(tmp_path / "sys.pdb", xtcs, name="m")
    np.testing.assert_allclose(got.time, 0.25 * np.arange(20), atol=1e-5)
    np.testing.assert_allclose(got.positions, truth.positions, atol=2e-2)  # xtc: 1e-3 nm
    lj = read_mdtraj(tmp_path / "sys.pdb", xtcs, name="m", units="lj", stride=2)
    np.testing.assert_allclose(lj.positions, truth.positions[::2] / 10.0, atol=2e-3)
    np.testing.assert_allclose(lj.time, 0.5 * np.arange(10), atol=1e-5)


def test_mdtraj_topology_without_bonds_is_rejected(tmp_path):
    truth = make_truth(ORTHOGONAL)
    md.Trajectory(truth.positions[:1] / 10.0, mdtraj_topology(bonds=False)).save_pdb(
        str(tmp_path / "nobonds.pdb")
    )
    with pytest.raises(DataError, match=r"nobonds\.pdb.*no bonds.*CONECT"):
        read_mdtraj(tmp_path / "nobonds.pdb", name="m", frame_interval=1.0)


def test_ase_extxyz_round_trip_infers_bonds_and_unwraps(tmp_path):
    truth = make_truth(TRICLINIC)
    wrapped, _, _ = truth.wrapped()
    symbols = [ELEMENTS[t - 1] for t in truth.types]
    frames = [
        ase.Atoms(symbols, positions=wrapped[t], cell=truth.box, pbc=True, info={"time": 0.5 * t})
        for t in range(20)
    ]
    ase.io.write(tmp_path / "sys.extxyz", frames, format="extxyz")
    got = read_ase(tmp_path / "sys.extxyz", name="a")
    got.validate()
    np.testing.assert_array_equal(got.topology.bonds, truth.bonds)
    np.testing.assert_allclose(got.positions, truth.positions, atol=1e-5)
    np.testing.assert_allclose(got.time, np.arange(20) * 0.5)
    assert got.topology.type_names == ["C", "N", "O"]


def test_unwrap_trajectory_makes_molecules_whole_and_continuous():
    truth = make_truth(TRICLINIC)
    wrapped, _, _ = truth.wrapped()
    box = np.broadcast_to(truth.box, (20, 3, 3))
    np.testing.assert_allclose(
        unwrap_trajectory(wrapped, box, truth.bonds), truth.positions, atol=1e-9
    )
    np.testing.assert_allclose(
        unwrap_trajectory(truth.positions, box, truth.bonds), truth.positions
    )


# ----------------------------------------------------------------------------- ingest


def test_ingest_lammps_writes_a_dataset(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "data.sys", truth)
    dump = write_dump(tmp_path / "dump.sys", truth, "image")
    with pytest.raises(DataError, match="--units"):
        ingest(data, [dump], tmp_path / "out", timestep=0.002)
    path = ingest(data, [dump], tmp_path / "out", units="real", timestep=0.002, name="s")
    with load_dataset(path) as dataset:
        np.testing.assert_allclose(dataset["s"].positions[:], truth.positions, atol=1e-6)
        assert "ingest (lammps)" in dataset.source


@pytest.mark.parametrize(
    ("topology", "trajectories", "fmt"),
    [
        ("sys.data", ["a.lammpstrj", "b.dump"], "lammps"),
        ("data.peo", ["dump.peo.1"], "lammps"),
        ("top.psf", ["run.dcd"], "mdtraj"),
        ("top.prmtop", ["run.nc"], "mdtraj"),
        ("run.h5", [], "mdtraj"),
        ("run.extxyz", [], "ase"),
    ],
)
def test_detect_format(topology, trajectories, fmt):
    assert detect_format(Path(topology), [Path(p) for p in trajectories]) == fmt


def test_ingest_unknown_format_lists_supported(tmp_path):
    with pytest.raises(DataError, match=r"cannot tell the format.*supported: lammps.*--format"):
        ingest(tmp_path / "sys.foo", [tmp_path / "sys.bar"], tmp_path / "out")


# ----------------------------------------------------------------------------- errors


def test_truncated_dump_names_file_and_frame(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    text = dump_text(truth, "image", range(3), [0, 10, 20])
    (tmp_path / "cut.dump").write_text(text[: len(text) - 100])
    with pytest.raises(DataError, match=r"cut\.dump: frame 2 \(timestep 20\)"):
        read_lammps(data, [tmp_path / "cut.dump"], units="real", name="s", timestep=1.0)
    short_line = text.splitlines()
    short_line[-1] = " ".join(short_line[-1].split()[:3])  # the file ends inside an atom line
    (tmp_path / "short.dump").write_text("\n".join(short_line))
    with pytest.raises(DataError, match=r"short\.dump: frame 2 \(timestep 20\).*truncated"):
        read_lammps(data, [tmp_path / "short.dump"], units="real", name="s", timestep=1.0)
    (tmp_path / "header.dump").write_text(text + "ITEM: TIMESTEP\n")
    with pytest.raises(DataError, match=r"header\.dump: frame 3 is truncated"):
        read_lammps_dump(tmp_path / "header.dump")


def test_nan_coordinate_names_atom_id(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    lines = dump_text(truth, "unwrapped", range(3), [0, 10, 20]).splitlines()
    columns = lines[8].split()[2:]
    frame1 = lines.index("10") - 1  # the second frame's 'ITEM: TIMESTEP' line
    atom = next(
        i
        for i in range(frame1 + 9, frame1 + 21)
        if lines[i].split()[columns.index("id")] == str(truth.ids[5])
    )
    values = lines[atom].split()
    values[columns.index("yu")] = "-nan"
    lines[atom] = " ".join(values)
    (tmp_path / "nan.dump").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError,
        match=rf"nan\.dump: frame 1 \(timestep 10\), line {atom + 1}: atom id {truth.ids[5]} ",
    ):
        read_lammps(data, [tmp_path / "nan.dump"], units="real", name="s", timestep=1.0)


def test_dump_atoms_must_match_data_file(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    text = write_dump(tmp_path / "ok.dump", truth, "unwrapped", frames=[0]).read_text().splitlines()
    fewer = text[:3] + ["11"] + text[4:-1]
    (tmp_path / "fewer.dump").write_text("\n".join(fewer) + "\n")
    with pytest.raises(
        DataError, match=r"fewer\.dump: frame 0 \(timestep 0\): 11 atoms, expected 12"
    ):
        read_lammps(data, [tmp_path / "fewer.dump"], units="real", name="s", timestep=1.0)
    columns = text[8].split()[2:]
    last = text[-1].split()
    last[columns.index("id")] = "999"
    (tmp_path / "unknown.dump").write_text("\n".join(text[:-1] + [" ".join(last)]) + "\n")
    with pytest.raises(DataError, match="atom id 999 is not in the data file"):
        read_lammps(data, [tmp_path / "unknown.dump"], units="real", name="s", timestep=1.0)


def test_data_file_errors(tmp_path):
    truth = make_truth(ORTHOGONAL)
    with pytest.raises(
        DataError, match=r"nobonds\.data: the header declares 9 bonds but there is no Bonds section"
    ):
        read_lammps_data(write_data(tmp_path / "nobonds.data", truth, bonds_section=False))
    with pytest.raises(
        DataError, match=r"the Masses section has 2 lines but the header declares 3 atom types"
    ):
        read_lammps_data(write_data(tmp_path / "nomass.data", truth, masses=MASSES[:2]))
    text = (
        write_data(tmp_path / "bad.data", truth)
        .read_text()
        .replace(f" {truth.ids[-1]}\n", " 5000\n")
    )
    (tmp_path / "bad.data").write_text(text)
    with pytest.raises(DataError, match=r"bad\.data, line \d+: bond 9 names atom id 5000"):
        read_lammps_data(tmp_path / "bad.data")


def test_time_axis_must_be_given_once(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    dump = write_dump(tmp_path / "sys.dump", truth, "image")
    with pytest.raises(DataError, match="exactly one of timestep"):
        read_lammps(data, [dump], units="real", name="s")
    with pytest.raises(DataError, match="exactly one of timestep"):
        read_lammps(data, [dump], units="real", name="s", timestep=1.0, frame_interval=1.0)


def set_dump_value(lines: list[str], columns: list[str], line: int, column: str, value: str):
    """Set ``column`` of ``lines[line]`` (an atom line) to ``value``."""
    tokens = lines[line].split()
    tokens[columns.index(column)] = value
    lines[line] = " ".join(tokens)


def set_box_lines(lines: list[str], values: list[str]) -> None:
    lines[5:8] = values  # the three lines after frame 0's 'ITEM: BOX BOUNDS'


# Edits of frame 0 of a 3-frame dump (12 atoms, file lines 10-21) and the error they cause.
DUMP_EDITS = {
    "float_id": (
        "image",
        lambda lines, cols: set_dump_value(lines, cols, 20, "id", "5.7"),
        r"frame 0 \(timestep 0\), line 21: non-integer atom id 5\.7$",
    ),
    "float_image_flag": (
        "image",
        lambda lines, cols: set_dump_value(lines, cols, 20, "ix", "0.5"),
        r"frame 0 \(timestep 0\), line 21: non-integer image flags 0\.5 ",
    ),
    "huge_coordinate": (
        "unwrapped",
        lambda lines, cols: set_dump_value(lines, cols, 20, "xu", "1e30"),
        r"frame 0 \(timestep 0\), line 21: atom id \d+ has coordinates \[1e\+30, .*, "
        r"non-finite or beyond ±1e\+08",
    ),
    "infinite_coordinate": (
        "unwrapped",
        lambda lines, cols: set_dump_value(lines, cols, 15, "zu", "-inf"),
        r"frame 0 \(timestep 0\), line 16: atom id \d+ has coordinates \[.*-inf\]",
    ),
    "repeated_id": (
        "unwrapped",
        lambda lines, cols: set_dump_value(
            lines, cols, 20, "id", lines[19].split()[cols.index("id")]
        ),
        r"frame 0 \(timestep 0\): atom id \d+ appears twice",
    ),
    "one_box_value": (
        "image",
        lambda lines, cols: set_box_lines(lines, ["0.0", "0.0", "0.0"]),
        r"frame 0 \(timestep 0\): 'ITEM: BOX BOUNDS pp pp pp' needs 3 lines of 2 finite "
        r"numbers, got '0\.0 0\.0 0\.0'$",
    ),
    "tilt_without_header": (
        "image",
        lambda lines, cols: set_box_lines(lines, [f"{line} 0.5" for line in lines[5:8]]),
        r"frame 0 \(timestep 0\): 'ITEM: BOX BOUNDS pp pp pp' needs 3 lines of 2 finite "
        r"numbers, got '0\.0 10\.0 0\.5 0\.0 11\.0 0\.5 0\.0 12\.0 0\.5' "
        r"\(tilt factors without 'xy xz yz' in the ITEM line\?\)$",
    ),
    "short_last_line": (
        "image",
        lambda lines, cols: lines.__setitem__(20, " ".join(lines[20].split()[:-1])),
        r"frame 0 \(timestep 0\), line 21: 7 values on an atom line, but 'ITEM: ATOMS' names 8 "
        r"columns",
    ),
}


@pytest.mark.parametrize("case", sorted(DUMP_EDITS))
def test_corrupt_dump_names_file_frame_line_and_atom(tmp_path, case):
    flavour, edit, message = DUMP_EDITS[case]
    lines = dump_text(make_truth(ORTHOGONAL), flavour, range(3), [0, 10, 20]).splitlines()
    edit(lines, lines[8].split()[2:])
    (tmp_path / "bad.dump").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.dump: " + message):
        read_lammps_dump(tmp_path / "bad.dump")


def test_dump_cut_inside_its_last_number_is_refused(tmp_path):
    frame = (
        "ITEM: TIMESTEP\n{}\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n0 10\n0 10\n"
        "0 10\nITEM: ATOMS id type xu yu zu\n1 1 1.0 2.0 3.0\n2 1 1.5 2.5 -4.799745\n"
    )
    text = frame.format(0) + frame.format(10)
    (tmp_path / "whole.dump").write_text(text)
    assert read_lammps_dump(tmp_path / "whole.dump").positions[1, 1, 2] == -4.799745
    (tmp_path / "cut.dump").write_text(text[: text.rindex("-4.799745") + 2])  # ends in "-4"
    with pytest.raises(
        DataError,
        match=r"cut\.dump: frame 1 \(timestep 10\) is truncated: the file ends inside its last "
        r"atom line \(line 22: '2 1 1\.5 2\.5 -4', no newline\); remove the incomplete frame$",
    ):
        read_lammps_dump(tmp_path / "cut.dump")


# Edits of a valid data file (12 atoms, ids 7, 10, ..., 40; 9 bonds) and the error they cause.
DATA_EDITS = {
    "fractional_count": (
        lambda text: text.replace("12 atoms", "23.5 atoms"),
        r": header line '23\.5 atoms' does not give a whole number of atoms",
    ),
    "float_atom_id": (
        lambda text: text.replace("\n7 1 1 ", "\n5.7 1 1 "),
        r", line \d+: atom id in Atoms is not an integer: 5\.7$",
    ),
    "float_bond_atom": (
        lambda text: text.replace("\n9 1 37 40", "\n9 1 37 40.5"),
        r", line \d+: atom id in Bonds is not an integer: 37 40\.5$",
    ),
    "huge_coordinate": (
        lambda text: re.sub(r"\n7 1 1 (\S+) \S+", r"\n7 1 1 \1 1e30", text),
        r", line \d+: atom id 7 has coordinates \[1e\+30, .*, non-finite or beyond ±1e\+08",
    ),
    "bonds_without_count": (
        lambda text: text.replace("9 bonds\n", ""),
        r", line \d+: a Bonds section, but the header declares no bonds \(add '9 bonds' to the "
        r"header\)",
    ),
    "zero_mass": (
        lambda text: text.replace("\n2 15.999 ", "\n2 0 "),
        r", line \d+: atom id 10 has type 2, whose mass 0\.0 is not a positive number",
    ),
    "repeated_mass": (
        lambda text: text.replace("\n3 14.007 ", "\n2 14.007 "),
        r", line \d+: a second mass for atom type 2",
    ),
    "self_bond": (
        lambda text: text.replace("\n9 1 37 40", "\n9 1 40 40"),
        r", line \d+: bond 9 joins atom id 40 to itself",
    ),
    "three_bounds": (
        lambda text: text.replace(" xlo xhi", " 3 xlo xhi"),
        r": header line '0\.0+ 10\.0+ 3 xlo xhi' needs 2 finite numbers",
    ),
}


@pytest.mark.parametrize("case", sorted(DATA_EDITS))
def test_corrupt_data_file_names_file_line_and_atom(tmp_path, case):
    edit, message = DATA_EDITS[case]
    text = write_data(tmp_path / "sys.data", make_truth(ORTHOGONAL)).read_text()
    assert edit(text) != text
    (tmp_path / "bad.data").write_text(edit(text))
    with pytest.raises(DataError, match=r"bad\.data" + message):
        read_lammps_data(tmp_path / "bad.data")


def test_gzipped_files_are_read_whatever_their_names(tmp_path):
    truth = make_truth(TRICLINIC, origin=(-2.0, 1.0, 0.5))
    data = write_data(tmp_path / "plain.data", truth)
    (tmp_path / "sys.data").write_bytes(gzip.compress(data.read_bytes()))
    text = dump_text(truth, "image", range(20), [100 * f for f in range(20)])
    (tmp_path / "sys.lammpstrj").write_bytes(gzip.compress(text.encode()))
    traj = read_lammps(
        tmp_path / "sys.data", tmp_path / "sys.lammpstrj", units="real", name="s", timestep=1.0
    )
    np.testing.assert_allclose(traj.positions, truth.positions, atol=1e-6)
    (tmp_path / "run.lammpstrj.gz").write_bytes(gzip.compress(text.encode()))
    path = ingest(
        tmp_path / "sys.data", [tmp_path / "run.lammpstrj.gz"], tmp_path / "out", fmt="lammps",
        units="real", timestep=1.0,
    )
    with load_dataset(path) as dataset:
        np.testing.assert_allclose(dataset["sys"].positions[:], truth.positions, atol=1e-6)


def test_binary_and_corrupt_gzip_files_are_named(tmp_path):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    (tmp_path / "nul.lammpstrj").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "latin.lammpstrj").write_bytes(b"ITEM: TIMESTEP\n\xff\xfe\n")
    gzipped = gzip.compress(dump_text(truth, "image", [0], [0]).encode())
    (tmp_path / "cut.lammpstrj").write_bytes(gzipped[:150])
    expected = {
        "nul": r"nul\.lammpstrj: a binary file, not a LAMMPS text dump \(plain or gzipped\)$",
        "latin": r"latin\.lammpstrj: a binary file, not a LAMMPS text dump",
        "cut": r"cut\.lammpstrj: corrupt or truncated gzip file \(Compressed file ended",
    }
    for name, message in expected.items():
        with pytest.raises(DataError, match=message):
            read_lammps(data, tmp_path / f"{name}.lammpstrj", units="real", name="s", timestep=1.0)
    with pytest.raises(DataError, match=r"nul\.lammpstrj: a binary file, not a LAMMPS text data"):
        read_lammps_data(tmp_path / "nul.lammpstrj")


def test_cli_ingest_bad_input_exits_2_before_any_work(tmp_path, capsys):
    truth = make_truth(ORTHOGONAL)
    data = write_data(tmp_path / "sys.data", truth)
    dump = write_dump(tmp_path / "sys.lammpstrj", truth, "image")
    (tmp_path / "taken").write_text("not a directory")
    common = ["ingest", "--topology", str(data), "--units", "real", "--timestep", "1"]
    assert main([*common, "--trajectory", str(dump), "--out", str(tmp_path / "taken")]) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(OutputError, match=r"--out .*taken/sub: .*taken is an existing file, not "):
        ingest(data, [dump], tmp_path / "taken" / "sub", units="real", timestep=1.0)
    with pytest.raises(OutputError, match=r"--out .*taken: it is an existing file, not a "):
        ingest(tmp_path / "missing.data", [dump], tmp_path / "taken", units="real", timestep=1.0)
    (tmp_path / "bin.lammpstrj").write_bytes(bytes(range(256)))
    out = tmp_path / "out"
    assert main([*common, "--trajectory", str(tmp_path / "bin.lammpstrj"), "--out", str(out)]) == 2
    assert "bin.lammpstrj: a binary file" in capsys.readouterr().err
    assert not out.exists()
