"""Property-based fuzzing: garbled input to the LAMMPS readers, the config and ablation-spec
loaders and the command line's numeric options is an eqcg error (:class:`~eqcg.errors.EqcgError`,
shown by the CLI with exit code 2) or an argument refused while parsing, never a crash.

Each example starts from a valid small file (or config) and mutates it: lines deleted,
duplicated or swapped, tokens replaced by random text or numbers (NaN, inf, huge, fractional),
the file cut short, random bytes inserted, the result optionally gzipped (and the gzip stream
cut). Any exception other than an EqcgError fails the test with the input that caused it.
"""

from __future__ import annotations

import argparse
import gzip
import math
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eqcg.commands.ablation import load_spec
from eqcg.commands.cli import build_parser
from eqcg.config import Config, config_from_dict, load_config
from eqcg.data.lammps_data_file import read_lammps_data
from eqcg.data.lammps_dump import read_lammps_dump
from eqcg.data.lammps_files import read_lammps
from eqcg.errors import ConfigError, EqcgError
from eqcg.models.registry import check_variant
from eqcg.runtime.arguments import Range

FUZZ = settings(max_examples=150, deadline=None, report_multiple_bugs=False)

DATA_FILE = """fuzz data file

4 atoms
3 bonds
2 atom types
1 bond types

0.0 10.0 xlo xhi
0.0 10.0 ylo yhi
0.0 10.0 zlo zhi
0.5 0.0 0.0 xy xz yz

Masses

1 12.011  # C
2 15.999  # O

Atoms # full

3 1 1 0.1 3.0 1.0 1.0 0 0 0
1 1 1 -0.2 1.0 1.0 1.0 0 0 0
2 1 2 0.1 2.0 1.0 1.0 0 0 0
4 1 2 0.0 9.5 1.0 1.0 -1 0 0

Bonds

1 1 1 2
2 1 2 3
3 1 3 4
"""

_FRAME = """ITEM: TIMESTEP
{step}
ITEM: NUMBER OF ATOMS
4
ITEM: BOX BOUNDS {bounds}
ITEM: ATOMS {columns}
{atoms}
"""
_ORTHOGONAL = "pp pp pp\n0.0 10.0\n0.0 10.0\n0.0 10.0"
_TILTED = "xy xz yz pp pp pp\n0.0 10.5 0.5\n0.0 10.0 0.0\n0.0 10.0 0.0"


def _dump(bounds: str, columns: str, atoms: list[str]) -> str:
    return "".join(
        _FRAME.format(step=step, bounds=bounds, columns=columns, atoms="\n".join(atoms))
        for step in (0, 10)
    )


#: Valid dumps of the atoms of :data:`DATA_FILE`, in several column layouts and cells.
DUMPS = (
    _dump(_ORTHOGONAL, "id type x y z ix iy iz", [
        "2 2 2.0 1.0 1.0 0 0 0", "1 1 1.0 1.0 1.0 0 0 0",
        "4 2 0.5 1.0 1.0 1 0 0", "3 1 3.0 1.0 1.0 0 0 0",
    ]),
    _dump(_TILTED, "xu yu zu id", [
        "1.0 1.0 1.0 1", "2.0 1.0 1.0 2", "3.0 1.0 1.0 3", "10.5 1.0 1.0 4",
    ]),
    _dump(_ORTHOGONAL, "id xsu ysu zsu", [
        "1 0.1 0.1 0.1", "2 0.2 0.1 0.1", "3 0.3 0.1 0.1", "4 1.05 0.1 0.1",
    ]),
    _dump(_TILTED, "id type x y z", [  # wrapped: unwrapped by continuity (allow_wrapped)
        "4 2 0.5 1.0 1.0", "3 1 3.0 1.0 1.0", "2 2 2.0 1.0 1.0", "1 1 1.0 1.0 1.0",
    ]),
)
#: x of the four atoms in the first frame of each of :data:`DUMPS` as read; the wrapped dump's
#: last atom is the minimum image of its bond (2.5 from atom 3), inside the cell.
DUMP_X = ([1.0, 2.0, 3.0, 10.5],) * 3 + ([1.0, 2.0, 3.0, 0.5],)

TOKENS = st.one_of(
    st.sampled_from([
        "nan", "-nan", "inf", "-inf", "1e30", "-1e400", "5.7", "0", "-1", "", "2", "4",
        "9" * 25, "1_0", "0x10", "ITEM:", "ITEM: ATOMS id", "ITEM: BOX BOUNDS", "Atoms",
        "Bonds", "Masses", "# comment", "atoms", "bonds", "atom types", "xlo xhi", "xy xz yz",
        "abc", "xy", "pp", "ss", "ix", "xu", "xs", "xsu", "id", "\t",
    ]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=8),
)


@st.composite
def garbled(draw: st.DrawFn, texts: tuple[str, ...]) -> bytes:
    """One of ``texts`` with 1-4 random line, token and byte mutations, maybe gzipped."""
    lines = draw(st.sampled_from(texts)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "token", "token", "insert"]))
        if action == "delete":
            del lines[i : i + draw(st.integers(1, 5))]
        elif action == "duplicate":
            lines[i:i] = lines[i : i + draw(st.integers(1, 12))]
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "insert":
            lines.insert(i, draw(TOKENS) + "\n")
        else:
            tokens = lines[i].split() or [""]
            tokens[draw(st.integers(0, len(tokens) - 1))] = draw(TOKENS)
            lines[i] = " ".join(tokens) + "\n"
    data = "".join(lines).encode()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if draw(st.integers(0, 4)) == 0:
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[: draw(st.integers(0, len(data)))]
    return data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "valid.data").write_text(DATA_FILE)
    return directory


def test_fuzz_inputs_are_valid_before_mutation(fuzz_dir: Path):
    data = read_lammps_data(fuzz_dir / "valid.data")
    np.testing.assert_array_equal(data.atom_ids, [1, 2, 3, 4])
    assert data.topology.n_bonds == 3
    for k, (text, x) in enumerate(zip(DUMPS, DUMP_X, strict=True)):
        (fuzz_dir / f"valid{k}.dump").write_text(text)
        traj = read_lammps(
            fuzz_dir / "valid.data", fuzz_dir / f"valid{k}.dump", units="real", name="s",
            timestep=1.0, allow_wrapped=True,
        )
        np.testing.assert_allclose(traj.positions[0, :, 0], x, atol=1e-12)


@FUZZ
@given(data=garbled(DUMPS), allow_wrapped=st.booleans())
def test_garbled_dumps_raise_only_eqcg_errors(fuzz_dir: Path, data: bytes, allow_wrapped: bool):
    path = fuzz_dir / "garbled.lammpstrj"
    path.write_bytes(data)
    with suppress(EqcgError):
        read_lammps_dump(path, allow_wrapped=allow_wrapped)
    with suppress(EqcgError):
        read_lammps(
            fuzz_dir / "valid.data", path, units="real", name="s", timestep=1.0,
            allow_wrapped=allow_wrapped,
        )


@FUZZ
@given(data=garbled((DATA_FILE,)), style=st.sampled_from([None, "full", "atomic", "charge"]))
def test_garbled_data_files_raise_only_eqcg_errors(fuzz_dir: Path, data: bytes, style: str | None):
    path = fuzz_dir / "garbled.data"
    path.write_bytes(data)
    with suppress(EqcgError):
        read_lammps_data(path, atom_style=style)


# ----------------------------------------------------------------------------- config

VALID_CONFIG = Config().to_dict()

VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
        st.text(max_size=10), st.sampled_from(["1e-3", "nan", "inf", "equivariant", "full"]),
        st.just(10**400),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), children, max_size=3),
    ),
    max_leaves=6,
)


@st.composite
def mutated_config(draw: st.DrawFn) -> dict[str, Any]:
    """The default config (as plain data) with 1-4 keys set, added or deleted at random."""
    data = yaml.safe_load(yaml.safe_dump(VALID_CONFIG))
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*data, draw(st.text(max_size=6))]))
        action = draw(st.sampled_from(["set", "set", "delete", "section"]))
        if action == "section" or not isinstance(data.get(section), dict):
            data[section] = draw(VALUES)
        elif action == "delete" and data[section]:
            del data[section][draw(st.sampled_from(list(data[section])))]
        else:
            keys = list(data[section])
            data[section][draw(st.sampled_from([*keys, draw(st.text(max_size=6))]))] = draw(VALUES)
    return data


# The explicit examples replay crashes the fuzzer once found in eqcg/config.py: a non-string
# key, a float field given a huge integer, a config file that is not UTF-8 or is a directory, a
# --set value that is not YAML.


@FUZZ
@example(data={"data": {1: 2, "history": 5}})
@example(data={"data": {"cg_level": 10**400}})  # an int too large for a float (the fuzzer's find)
@example(data={"model": {"radius": 10**400}})
@given(data=mutated_config())
def test_mutated_configs_raise_only_config_errors(data: dict[str, Any]):
    try:
        check_variant(config_from_dict(data, where="fuzz.yaml").model, "fuzz.yaml")
    except ConfigError:
        pass


#: ``--set key=value`` overrides: real, nested, unknown and empty keys with garbled YAML values.
OVERRIDES = st.one_of(
    st.text(max_size=12),
    st.builds(
        "{}={}".format,
        st.sampled_from(["model.equivariant.lmax", "model.lmax", "model.equivariant", "model",
                         "model.radius.x", "x.y", "train.lr", "", "."]),
        st.one_of(
            st.sampled_from(["[", "{a: 1", "1e400", "-1", "nan", "", "a: b", "*x", "'", "!!set"]),
            st.text(max_size=8),
        ),
    ),
)


@FUZZ
@example(data=b"model:\n  lmax: \xff\n", overrides=[])
@example(data=b"model: {}\n", overrides=["model.lmax=["])
@example(data=b"model: {lmax: 2, equivariant: {lmax: 1}}\n", overrides=[])
@example(data=b"model: {equivariant: 3}\n", overrides=["model.equivariant.lmax=2"])
@given(data=garbled((yaml.safe_dump(VALID_CONFIG),)), overrides=st.lists(OVERRIDES, max_size=2))
def test_garbled_config_files_raise_only_config_errors(
    fuzz_dir: Path, data: bytes, overrides: list[str]
):
    path = fuzz_dir / "garbled.yaml"
    path.write_bytes(data)
    try:
        check_variant(load_config(path, overrides).model, str(path))
    except ConfigError:
        pass


@pytest.mark.parametrize("lmax", [-1, 0])
def test_lmax_below_one_is_a_config_error(lmax: int):
    model = config_from_dict({"model": {"variant": "equivariant", "covariance": "full",
                                        "equivariant": {"lmax": lmax}}}, where="fuzz.yaml").model
    with pytest.raises(ConfigError,
                       match=rf"fuzz\.yaml: model\.equivariant\.lmax must be >= 1 .*got {lmax}$"):
        check_variant(model, "fuzz.yaml")


# --- ablation specs and command-line option values (issue 20) -----------------------------

BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "polymer_baseline.yaml"
VALID_SPEC = {
    "data": {"path": "data"}, "config": str(BASE_CONFIG), "set": ["train.max_steps=2"],
    "rollout": {"steps": 3, "save_every": 1, "deterministic": False, "seed": 0},
    "evaluate": {"group_by": "length_group"},
    "variants": {"baseline": [], "equivariant": ["model.variant=equivariant",
                                                 "model.covariance=isotropic"]},
}


@st.composite
def mutated_spec(draw: st.DrawFn) -> dict[str, Any]:
    """The valid spec with 1-3 sections or entries replaced, added or deleted at random."""
    spec = yaml.safe_load(yaml.safe_dump(VALID_SPEC))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*spec, draw(st.text(max_size=6))]))
        action = draw(st.sampled_from(["set", "delete", "entry"]))
        if action == "delete" and key in spec:
            del spec[key]
        elif action == "entry" and isinstance(spec.get(key), dict):
            entry = draw(st.one_of(st.sampled_from([*spec[key], "../x", "..", "-v", "a/b", ""]),
                                   st.text(max_size=6)))
            spec[key][entry] = draw(VALUES)
        else:
            spec[key] = draw(VALUES)
    return spec


@FUZZ
@example(spec={**VALID_SPEC, "data": "polymer"})
@example(spec={**VALID_SPEC, "data": {"": None, 0: None}})  # keys of mixed types
@example(spec={**VALID_SPEC, "variants": {"../../escaped": []}})
@example(spec={**VALID_SPEC, "rollout": {"steps": 0}})
@given(spec=mutated_spec())
def test_mutated_ablation_specs_raise_only_config_errors(fuzz_dir: Path, spec: dict[str, Any]):
    path = fuzz_dir / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        load_spec(path)
    except ConfigError:
        pass


def _numeric_options() -> list[tuple[str, str, Range]]:
    """(command, option, range) of every numeric option of the command line."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action.option_strings[0], action.type)
            for name, sub in commands.choices.items() for action in sub._actions
            if isinstance(action.type, Range)]


NUMERIC_OPTIONS = _numeric_options()


@FUZZ
@given(option=st.sampled_from(NUMERIC_OPTIONS),
       text=st.one_of(st.text(max_size=8), st.integers().map(str), st.floats().map(repr),
                      st.sampled_from(["0", "-1", "1e400", "nan", "-inf", "1_0", " 3 ", "0x1"])))
def test_numeric_options_are_in_range_or_refused_while_parsing(
        option: tuple[str, str, Range], text: str):
    command, flag, bounds = option
    with suppress(argparse.ArgumentTypeError):
        value = bounds(text)
        assert isinstance(value, int if bounds.integer else float), (command, flag, text)
        assert math.isfinite(value) and value >= bounds.minimum, (command, flag, text)
        assert not (bounds.strict and value == bounds.minimum), (command, flag, text)


def test_every_numeric_option_has_a_range():
    untyped = [(name, action.option_strings) for name, sub in
               next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices.items()
               for action in sub._actions if action.type in (int, float)]
    assert untyped == []
    assert {("evaluate", "--collision-threshold"), ("check-equivariance", "--trials"),
            ("rollout", "--seed"), ("simulate", "--stride")} <= {
        (command, flag) for command, flag, _ in NUMERIC_OPTIONS}
