"""LAMMPS runs that dump binary trajectories (``dump dcd``, ``dump xtc``), ingested with the
LAMMPS data file as topology.

A real LAMMPS run (three bead-spring chains of two bead types drifting across the periodic
boundaries of a triclinic cell, in ``lj`` and in ``real`` units) dumps DCD, XTC and a text
``dump custom`` of unwrapped coordinates at the same interval and writes its data file with
``write_data``. Each dump is ingested through :func:`eqcg.data.ingest.ingest`: the binary ones,
read wrapped and unwrapped by continuity, must give the text dump's positions (to float32
round-off for DCD, to the XTC precision), its box, times, and the data file's types, masses and
bonds. Bad input (a dump of fewer atoms, a cut or foreign file, unknown suffixes) is a
:class:`~eqcg.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mdtraj.formats
import numpy as np
import pytest

from eqcg.commands.cli import main
from eqcg.data.ingest import detect_format, ingest
from eqcg.data.store import load_dataset
from eqcg.errors import DataError, SimulationError
from eqcg.systems.lammps_runner import lammps_executable, run_lammps

N_CHAINS, N_BEADS = 3, 6
N_STEPS, EVERY = 400, 20
N_FRAMES = N_STEPS // EVERY + 1
SUBGROUP = 12  # atoms in the dump of a subgroup (the atom-count mismatch)
XTC_PRECISION = 100_000  # dump_modify precision: XTC numbers are multiples of 1e-5


@dataclass(frozen=True)
class Units:
    """One LAMMPS unit system's numbers for the same reduced bead-spring model."""

    sigma: float  # length unit (1 or Å)
    epsilon: float
    masses: tuple[float, float]
    temperature: float
    dt: float  # LAMMPS time step (tau or fs)
    drift: tuple[float, float, float]  # added velocity (sigma/tau or Å/fs)
    timestep: float  # one MD step in the dataset time unit (tau or ps)


UNITS = {
    "lj": Units(1.0, 1.0, (1.0, 2.0), 1.0, 0.005, (2.0, 1.2, -0.8), 0.005),
    "real": Units(3.5, 0.2, (12.0, 16.0), 100.0, 5.0, (0.0053, 0.0032, -0.0021), 0.005),
}


@dataclass(frozen=True)
class Run:
    units: str
    workdir: Path
    data: Path  # written by write_data after the run
    types: np.ndarray  # LAMMPS types of atoms 1..N
    bonds: np.ndarray  # 0-based
    u: Units


def _input_files(workdir: Path, name: str, u: Units) -> tuple[np.ndarray, np.ndarray]:
    """Write ``start.data`` and ``in.run``; return the LAMMPS types and 0-based bonds."""
    s = u.sigma
    box_len, (xy, xz, yz) = 8.0 * s, (0.8 * s, 0.4 * s, -0.5 * s)
    k, c = np.meshgrid(np.arange(N_BEADS), np.arange(N_CHAINS))
    positions = np.stack([1.5 + k, 1.5 + 2.5 * c, 2.0 + 2.0 * c], axis=-1).reshape(-1, 3) * s
    types = np.tile([1, 2], N_CHAINS * N_BEADS // 2)
    first = (np.arange(N_CHAINS)[:, None] * N_BEADS + np.arange(N_BEADS - 1)).ravel()
    bonds = np.c_[first, first + 1]
    lines = [
        "bead-spring chains", "",
        f"{len(types)} atoms", f"{len(bonds)} bonds", "2 atom types", "1 bond types", "",
        *(f"0 {box_len} {a}lo {a}hi" for a in "xyz"), f"{xy} {xz} {yz} xy xz yz", "",
        "Masses", "", *(f"{t + 1} {m}" for t, m in enumerate(u.masses)), "",
        "Atoms # bond", "",
        *(f"{i + 1} {i // N_BEADS + 1} {t} {x} {y} {z}"
          for i, (t, (x, y, z)) in enumerate(zip(types, positions))),
        "", "Bonds", "",
        *(f"{b + 1} 1 {i + 1} {j + 1}" for b, (i, j) in enumerate(bonds)),
    ]
    (workdir / "start.data").write_text("\n".join(lines) + "\n")
    wca = 2 ** (1 / 6) * s
    (workdir / "in.run").write_text(f"""units {name}
atom_style bond
boundary p p p
read_data start.data
bond_style harmonic
bond_coeff 1 {100 * u.epsilon / s**2} {s}
pair_style lj/cut {wca}
pair_coeff * * {u.epsilon} {s} {wca}
pair_modify shift yes
special_bonds lj 0.0 1.0 1.0
velocity all create {u.temperature} 4928 mom yes
velocity all set {u.drift[0]} {u.drift[1]} {u.drift[2]} sum yes
fix 1 all nve
timestep {u.dt}
thermo {N_STEPS}
group first id 1:{SUBGROUP}
dump dcd all dcd {EVERY} run.dcd
dump xtc all xtc {EVERY} run.xtc
dump_modify xtc precision {XTC_PRECISION}
dump txt all custom {EVERY} run.lammpstrj id type xu yu zu
dump_modify txt format float %.10g
dump sub first dcd {EVERY} sub.dcd
run {N_STEPS}
write_data final.data
""")
    return types, bonds


@pytest.fixture(scope="module")
def lammps_runs(tmp_path_factory):
    """``get(units)``: the LAMMPS run in those units (run once per module)."""
    pytest.importorskip("lammps")
    try:
        lammps_executable()
    except SimulationError as exc:
        pytest.skip(str(exc))
    runs: dict[str, Run] = {}

    def get(units: str) -> Run:
        if units not in runs:
            workdir = tmp_path_factory.mktemp(f"lammps_{units}")
            types, bonds = _input_files(workdir, units, UNITS[units])
            run_lammps("in.run", workdir, total_steps=N_STEPS, show_progress=False)
            runs[units] = Run(units, workdir, workdir / "final.data", types, bonds, UNITS[units])
        return runs[units]

    return get


def _ingest(run: Run, dump: str, out: str):
    path = ingest(
        run.data, [run.workdir / dump], run.workdir / out, units=run.units,
        timestep=run.u.timestep, name="chains",
    )
    with load_dataset(path) as dataset:
        system = dataset["chains"]
        return system, np.asarray(system.positions[:]), dataset.source


@pytest.mark.parametrize("units", sorted(UNITS))
def test_lammps_dcd_and_xtc_match_the_text_dump(lammps_runs, units):
    run = lammps_runs(units)
    text, text_positions, _ = _ingest(run, "run.lammpstrj", "out_text")
    dcd, dcd_positions, source = _ingest(run, "run.dcd", "out_dcd")
    xtc, xtc_positions, _ = _ingest(run, "run.xtc", "out_xtc")
    assert "ingest (lammps)" in source and "run.dcd" in source
    assert text_positions.shape == dcd_positions.shape == (N_FRAMES, N_CHAINS * N_BEADS, 3)

    round_off = 2 * np.finfo(np.float32).eps * np.abs(text_positions).max()
    np.testing.assert_allclose(dcd_positions, text_positions, rtol=0, atol=round_off)
    xtc_step = (10.0 if units == "real" else 1.0) / XTC_PRECISION  # Å or sigma
    np.testing.assert_allclose(xtc_positions, text_positions, rtol=0, atol=xtc_step)
    for binary in (dcd, xtc):
        assert binary.pbc and binary.units == units
        np.testing.assert_allclose(binary.box, text.box, rtol=0, atol=round_off)
        np.testing.assert_allclose(binary.time, np.arange(N_FRAMES) * EVERY * run.u.timestep)
        top = binary.topology
        assert top.type_names == ["1", "2"]
        np.testing.assert_array_equal(top.types, run.types - 1)
        np.testing.assert_allclose(top.masses, np.array(run.u.masses)[run.types - 1])
        np.testing.assert_array_equal(np.sort(top.bonds, axis=1), run.bonds)

    s = run.u.sigma
    np.testing.assert_allclose(
        text.box[0], [[8 * s, 0, 0], [0.8 * s, 8 * s, 0], [0.4 * s, -0.5 * s, 8 * s]], atol=1e-9
    )
    frac = np.einsum("fai,fij->faj", dcd_positions, np.linalg.inv(dcd.box))
    assert ((frac < 0) | (frac >= 1)).any(), "no atom left the cell: unwrapping not exercised"
    i, j = run.bonds.T
    lengths = np.linalg.norm(dcd_positions[:, i] - dcd_positions[:, j], axis=-1)
    assert lengths.max() < 1.5 * s


def test_trr_of_the_same_frames_matches_the_text_dump(lammps_runs):
    run = lammps_runs("lj")
    with mdtraj.formats.XTCTrajectoryFile(str(run.workdir / "run.xtc")) as handle:
        xyz, time, step, box = handle.read()  # wrapped, numbers as LAMMPS wrote them
    with mdtraj.formats.TRRTrajectoryFile(str(run.workdir / "run.trr"), "w") as handle:
        handle.write(xyz, time=time, step=step, box=box)
    _, text_positions, _ = _ingest(run, "run.lammpstrj", "out_text_trr")
    trr, trr_positions, _ = _ingest(run, "run.trr", "out_trr")
    np.testing.assert_allclose(trr_positions, text_positions, rtol=0, atol=1.0 / XTC_PRECISION)
    np.testing.assert_allclose(trr.time, np.arange(N_FRAMES) * EVERY * run.u.timestep)


def test_cli_ingests_data_file_and_dcd(lammps_runs, capsys):
    run = lammps_runs("lj")
    out = run.workdir / "out_cli"
    args = ["ingest", "--topology", str(run.data), "--trajectory", str(run.workdir / "run.dcd"),
            "--units", "lj", "--timestep", "0.005", "--out", str(out)]
    assert main(args) == 0
    assert (out / "dataset.h5").exists()


def test_dcd_of_fewer_atoms_than_the_data_file_is_named(lammps_runs, capsys):
    run = lammps_runs("lj")
    n_atoms = N_CHAINS * N_BEADS
    message = (
        rf"sub\.dcd: {SUBGROUP} atoms per frame, but the data file .*final\.data has {n_atoms}"
    )
    with pytest.raises(DataError, match=message):
        ingest(run.data, [run.workdir / "sub.dcd"], run.workdir / "out_sub", units="lj",
               timestep=0.005)
    args = ["ingest", "--topology", str(run.data), "--trajectory", str(run.workdir / "sub.dcd"),
            "--units", "lj", "--timestep", "0.005", "--out", str(run.workdir / "out_sub")]
    assert main(args) == 2
    assert f"{SUBGROUP} atoms per frame" in capsys.readouterr().err
    assert not (run.workdir / "out_sub").exists()


def test_cut_and_foreign_binary_dumps_are_named(lammps_runs, tmp_path):
    run = lammps_runs("lj")
    dcd = (run.workdir / "run.dcd").read_bytes()
    frame_bytes = 56 + 3 * (8 + 4 * N_CHAINS * N_BEADS)  # cell record + x, y, z records
    (tmp_path / "cut.dcd").write_bytes(dcd[:-50])
    (tmp_path / "short.dcd").write_bytes(dcd[:-frame_bytes])
    (tmp_path / "cut.xtc").write_bytes((run.workdir / "run.xtc").read_bytes()[:-50])
    (tmp_path / "text.dcd").write_text("ITEM: TIMESTEP\n0\n")
    (tmp_path / "junk.xtc").write_bytes(b"not an xtc file " * 8)
    expected = {
        "cut.dcd": rf"cut\.dcd is truncated: frame {N_FRAMES - 1} is cut short \(\d+ of its "
        rf"{frame_bytes} bytes\)",
        "short.dcd": rf"short\.dcd is truncated: its header declares {N_FRAMES} frames, the "
        rf"file holds {N_FRAMES - 1}$",
        "cut.xtc": rf"cut\.xtc: frame {N_FRAMES - 1} \(byte \d+\) is truncated",
        "text.dcd": r"text\.dcd: not a DCD file",
        "junk.xtc": r"junk\.xtc: frame 0 \(byte 0\): not an XTC frame \(magic number",
        "missing.dcd": r"missing\.dcd: no such file",
    }
    for name, message in expected.items():
        with pytest.raises(DataError, match=message):
            ingest(run.data, [tmp_path / name], tmp_path / "out", units="lj", timestep=0.005)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="--units"):
        ingest(run.data, [run.workdir / "run.dcd"], tmp_path / "out", timestep=0.005)


@pytest.mark.parametrize(
    ("topology", "trajectories", "fmt"),
    [
        ("system.data", ["run.dcd"], "lammps"),
        ("data.peo", ["a.xtc", "b.TRR"], "lammps"),
        ("system.lmp", ["run.dcd", "more.lammpstrj"], "lammps"),
        ("top.psf", ["run.dcd"], "mdtraj"),
        ("top.pdb", ["run.xtc"], "mdtraj"),
    ],
)
def test_lammps_data_file_with_binary_dumps_is_lammps(topology, trajectories, fmt):
    assert detect_format(Path(topology), [Path(p) for p in trajectories]) == fmt


def test_unknown_format_names_the_cli_flag(tmp_path, capsys):
    with pytest.raises(DataError, match=r"cannot tell the format.*--format lammps\|mdtraj\|ase"):
        ingest(tmp_path / "system.data", [tmp_path / "run.nc"], tmp_path / "out")
    args = ["ingest", "--topology", str(tmp_path / "system.data"),
            "--trajectory", str(tmp_path / "run.nc"), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "fmt=" not in err
