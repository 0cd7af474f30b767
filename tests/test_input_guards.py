"""Inputs that used to be silently misread (issue 20): YAML keys given twice, ablation specs of
the wrong shape or with names that would climb out of --out, LAMMPS data files whose atom
style the column count cannot tell, and an ablation that kept starting LAMMPS after Ctrl-C."""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import eqcg.systems.generate as generation
from eqcg.commands.ablation import load_spec, run_ablation
from eqcg.commands.cli import main
from eqcg.config import load_config
from eqcg.data.lammps_data_file import read_lammps_data
from eqcg.errors import ConfigError, DataError, OutputError
from eqcg.runtime.interrupt import Interrupted

BASE = Path(__file__).resolve().parents[1] / "configs" / "polymer_baseline.yaml"


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text.replace("BASE", str(BASE)))
    return path


# --- YAML ---------------------------------------------------------------------------------

def test_a_config_with_two_train_sections_is_refused(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  max_steps: 10\nmodel:\n  latent_dim: 8\ntrain:\n  lr: 0.1\n")
    message = (f"{config}: key 'train' appears twice (lines 1 and 5); the first would be "
               "dropped silently: keep one")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value) == message
    assert main(["train", str(config), "--data", "D", "--out", str(tmp_path / "run")]) == 2
    assert last_error(capsys) == f"eqcg train: error: {message}"
    merged = tmp_path / "merged.yaml"  # a YAML merge may override the keys it brings
    merged.write_text("base: &b {max_steps: 3, lr: 0.1}\ntrain: {<<: *b, max_steps: 4}\n")
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        load_config(merged)


# --- ablation specs -----------------------------------------------------------------------

SPEC = """data: {path: data}
config: BASE
variants:
  baseline: []
"""


@pytest.mark.parametrize("text, message", [
    ("data: {path: data}\nconfig: BASE\nvariants:\n  baseline: []\n  baseline: "
     "[model.latent_dim=8]\n",
     "key 'baseline' appears twice (lines 4 and 5); the first would be dropped silently: keep "
     "one"),
    ("data: polymer\nconfig: BASE\nvariants: {baseline: []}\n",
     "data must be a mapping (data: {name: value, ...}), got str 'polymer'"),
    ("data: {path: data}\nconfig: BASE\nvariants: {../../escaped: []}\n",
     "variant name '../../escaped': contains a path separator ('/' or '\\'); it names a file or "
     "HDF5 group; use letters, digits, '.', '_' or '-'"),
    ("data: {path: data}\nconfig: BASE\nvariants: {..: []}\n",
     "variant name '..': is a relative directory; use letters, digits, '.', '_' or '-'"),
    ("data: {path: data}\nconfig: BASE\nrollout: {steps: 0}\nvariants: {baseline: []}\n",
     "rollout.steps must be an integer >= 1, got 0"),
    ("data: {path: data}\nconfig: BASE\nrollout: 20\nvariants: {baseline: []}\n",
     "rollout must be a mapping (rollout: {name: value, ...}), got int 20"),
    ("data: {generate: polymer, n_systems: 0}\nconfig: BASE\nvariants: {baseline: []}\n",
     "data.n_systems must be an integer >= 1, got 0"),
    ("data: {generate: nope}\nconfig: BASE\nvariants: {baseline: []}\n",
     "data: unknown system 'nope'; known: electrolyte, polymer"),
    ("data: {generate: [polymer]}\nconfig: BASE\nvariants: {baseline: []}\n",
     "data.generate must be a text, got ['polymer']"),
    ("data: {generate: polymer, preset: transport}\nconfig: BASE\nvariants: {baseline: []}\n",
     "data: unknown polymer preset 'transport'; known: tiny, small, medium, paper"),
    ("data: {path: data}\nconfig: BASE\nset: model.latent_dim=8\nvariants: {baseline: []}\n",
     "set must be a list of key=value overrides, got 'model.latent_dim=8'"),
    ("data: {path: data}\nconfig: BASE\nvariants: {baseline: model.latent_dim=8}\n",
     "variant 'baseline' must be a list of key=value overrides, got 'model.latent_dim=8'"),
])
def test_an_ablation_spec_of_the_wrong_shape_is_refused_before_any_work(tmp_path, capsys, text,
                                                                        message):
    spec = write_spec(tmp_path / "spec.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_spec(spec)
    assert str(caught.value) == f"{spec}: {message}"
    assert main(["ablate", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert last_error(capsys) == f"eqcg ablate: error: {spec}: {message}"
    assert not (tmp_path / "out").exists()


def test_ablate_claims_its_out(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", SPEC)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert main(["ablate", str(spec), "--out", str(run)]) == 2
    assert last_error(capsys) == (f"eqcg ablate: error: --out {run}: holds a run, not an "
                                  "ablation; choose another --out")
    (tmp_path / "file").write_text("keep")
    with pytest.raises(OutputError, match="it is an existing file, not a directory for the "
                                          "ablation"):
        run_ablation(spec, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_stops_the_generation_of_an_ablation_from_starting_new_systems(
        tmp_path, monkeypatch):
    started: list[str] = []
    began: list[float] = []

    def lammps(input_file, workdir, *, description, **options):  # a 1 s LAMMPS run
        if not began:  # Ctrl-C 0.3 s after the first system started
            began.append(time.monotonic())
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        started.append(description)
        time.sleep(1.0)
        return Path(workdir) / "log.lammps"
    monkeypatch.setattr(generation, "run_lammps", lammps)
    spec = write_spec(tmp_path / "spec.yaml", "data: {generate: polymer, preset: tiny, "
                                              "n_systems: 6, jobs: 2}\nconfig: BASE\n"
                                              "variants: {baseline: []}\n")
    out = tmp_path / "ablation"
    with pytest.raises(Interrupted) as caught:
        run_ablation(spec, out)
    assert time.monotonic() - began[0] < 3.0  # the two running systems finish, no third starts
    assert sorted(started) == ["chain000", "chain001"]
    assert str(caught.value) == (f"interrupted by SIGINT; {out} keeps the finished stages: run "
                                 "the same command to continue")
    assert caught.value.exit_code == 130


# --- LAMMPS atom styles -------------------------------------------------------------------

DATA = """ions

4 atoms
2 atom types

0 10 xlo xhi
0 10 ylo yhi
0 10 zlo zhi

Masses

1 22.99
2 35.45

Atoms{comment}

1 {a} 1.0 1.0 1.0
2 {b} 3.0 1.0 1.0
3 {a} 5.0 1.0 1.0
4 {b} 7.0 1.0 1.0
"""


def test_a_charge_style_file_with_integer_charges_is_read_as_charges(tmp_path):
    path = tmp_path / "ions.data"
    path.write_text(DATA.format(comment="", a="1 1", b="2 -1"))  # id type q x y z
    data = read_lammps_data(path)
    assert data.atom_style == "charge"
    np.testing.assert_array_equal(data.topology.types, [0, 1, 0, 1])
    np.testing.assert_array_equal(data.topology.charges, [1, -1, 1, -1])
    path.write_text(DATA.format(comment="", a="1 2", b="3 1"))  # id mol type x y z, mol 1-4
    data = read_lammps_data(path)
    assert data.atom_style == "molecular"
    np.testing.assert_array_equal(data.topology.types, [1, 0, 1, 0])


def test_a_six_column_file_that_fits_both_styles_must_name_one(tmp_path):
    path = tmp_path / "ions.data"
    path.write_text(DATA.format(comment="", a="1 2", b="2 1"))  # types and charges both 1-2
    with pytest.raises(DataError) as caught:
        read_lammps_data(path)
    assert str(caught.value) == (
        f"{path}, line 17: 6 values per Atoms line fit both atom style 'molecular' (id mol type "
        "x y z) and 'charge' (id type q x y z), and the file has no bonds to tell them apart; "
        "name the style in the file ('Atoms # charge' or 'Atoms # molecular'; in Python: "
        "atom_style=)")
    path.write_text(DATA.format(comment=" # charge", a="1 2", b="2 1"))
    np.testing.assert_array_equal(read_lammps_data(path).topology.charges, [2, 1, 2, 1])


def test_every_yaml_spec_loader_refuses_repeated_keys(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", SPEC + "rollout: {steps: 2, steps: 3}\n")
    with pytest.raises(ConfigError, match="key 'steps' appears twice"):
        load_spec(spec)
    assert yaml.safe_load(spec.read_text())["rollout"] == {"steps": 3}  # what PyYAML would do
