"""The system registry: a third system registered here generates through ``eqcg generate``,
trains and shows in ``--help``; unknown names are errors naming the known systems; listing the
systems imports no generator."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqcg.commands.ablation import load_spec
from eqcg.commands.cli import EXIT_BAD_INPUT, main
from eqcg.config import load_config
from eqcg.data.store import load_dataset, write_dataset
from eqcg.data.synthetic import random_system
from eqcg.errors import ConfigError
from eqcg.simulation.new_system import BuiltinSystem
from eqcg.systems.registry import (
    SystemKind,
    get_system_kind,
    register_system_kind,
    system_kinds,
    unregister_system_kind,
)
from eqcg.training.trainer import train

BUILT_IN = "electrolyte, polymer"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclasses.dataclass(frozen=True)
class ToyPreset:
    """Random bonded chains and ions (real units: Å, ps), no physics."""

    n_systems: int
    n_frames: int
    timestep: float
    frame_interval: float


TOY_PRESETS = {"tiny": ToyPreset(n_systems=2, n_frames=10, timestep=0.002, frame_interval=0.5),
               "more": ToyPreset(n_systems=4, n_frames=20, timestep=0.002, frame_interval=1.0)}


def generate_toy(out: str | os.PathLike, *, preset: str, seed: int, n_systems: int | None,
                 jobs: int | None) -> Path:
    """The toy system's generator: random systems with the preset's frame interval."""
    p = TOY_PRESETS[preset]
    count = p.n_systems if n_systems is None else n_systems
    systems = [random_system(f"toy{i}", n_frames=p.n_frames, seed=100 * seed + i)
               for i in range(count)]
    return write_dataset(out, [dataclasses.replace(s, time=np.arange(p.n_frames) *
                                                   p.frame_interval) for s in systems],
                         source=f"toy preset={preset} seed={seed}")


TOY = SystemKind(name="toy", description="random chains for the registry's tests",
                 units="real", presets=TOY_PRESETS, generator=f"{__name__}:generate_toy")


@pytest.fixture
def toy_kind():
    """The toy system, registered for one test."""
    yield register_system_kind(TOY)
    unregister_system_kind(TOY.name)


def test_a_registered_system_generates_with_eqcg_generate_and_trains(toy_kind, tmp_path,
                                                                      single_thread):
    data = tmp_path / "data"
    assert main(["generate", "toy", "--preset", "more", "--seed", "1", "--n-systems", "4",
                 "--out", str(data)]) == 0
    with load_dataset(data) as dataset:
        assert dataset.names == ["toy0", "toy1", "toy2", "toy3"]
        assert dataset[0].units == toy_kind.units
        assert dataset[0].n_frames == 20
        assert dataset[0].frame_interval == pytest.approx(toy_kind.preset("more").frame_interval)
    config = tmp_path / "config.yaml"
    config.write_text(
        "data: {history: 3, cg_level: 3, whole_molecule_max_atoms: 1, split: [0.5, 0.5, 0.0]}\n"
        "model: {radius: 5.0, embed_dim: 8, latent_dim: 8, message_passing_steps: 1,\n"
        "        score_message_passing_steps: 1}\n"
        "score: {n_levels: 3}\n"
        "train: {max_steps: 2, val_every: 2, val_windows: 4, batch_size: 2}\n")
    result = train(load_config(config), data, tmp_path / "run", device="cpu",
                   show_progress=False)
    assert result.step == 2
    assert (result.run_dir / "checkpoints" / "last.pt").is_file()


def test_a_registered_system_shows_in_help_and_ablation_specs_but_not_as_a_history(
        toy_kind, tmp_path, capsys):
    assert main(["generate", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())  # (unwrapped)
    assert "{polymer,electrolyte,toy}" in help_text
    assert "toy: random chains for the registry's tests" in help_text
    assert "toy: tiny, more" in help_text  # its presets
    assert main(["simulate", "--help"]) == 0
    assert "--generate-history {polymer,electrolyte} " in " ".join(capsys.readouterr().out.split())
    with pytest.raises(ConfigError, match="--generate-history: the toy system generates no "
                                          "history; systems that do: polymer, electrolyte"):
        BuiltinSystem(kind="toy")
    with pytest.raises(ConfigError, match="^the toy system generates no history$"):
        toy_kind.history_spec(toy_kind.preset("tiny"), 0, 3, 0.5)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"data: {{generate: toy, preset: more}}\nconfig: {CONFIGS}/polymer_baseline"
                    ".yaml\nvariants: {baseline: []}\n")
    assert load_spec(spec).data == {"generate": "toy", "preset": "more"}


def test_outside_its_fixture_no_test_system_is_left(capsys):  # (runs after the two tests above)
    assert list(system_kinds()) == ["polymer", "electrolyte"]
    assert main(["generate", "--help"]) == 0
    assert "{polymer,electrolyte}\n" in capsys.readouterr().out


def test_an_unknown_system_is_an_error_naming_the_known_ones(tmp_path, capsys):
    with pytest.raises(ConfigError) as caught:
        get_system_kind("nope")
    assert str(caught.value) == f"unknown system 'nope'; known: {BUILT_IN}"
    with pytest.raises(ConfigError, match=f"^--generate-history: unknown system 'nope'; known: "
                                          f"{BUILT_IN}$"):
        BuiltinSystem(kind="nope")
    with pytest.raises(ConfigError, match="^--preset: unknown polymer preset 'transport'; "
                                          "known: tiny, small, medium, paper$"):
        BuiltinSystem(kind="polymer", preset="transport")
    assert main(["generate", "nope", "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert re.search(r"argument system: invalid choice: 'nope' \(choose from '?polymer'?, "
                     r"'?electrolyte'?\)", capsys.readouterr().err)  # (quotes: Python >= 3.12)
    assert main(["generate", "polymer", "--preset", "transport", "--out",
                 str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == (
        "eqcg generate: error: unknown polymer preset 'transport'; known: tiny, small, medium, "
        "paper")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    ({"units": "si"}, "system 'toy': unknown units 'si'; known: real, lj"),
    ({"presets": {"more": TOY_PRESETS["more"]}}, "system 'toy': no 'tiny' preset"),
    ({"generator": "generate_toy"}, "system 'toy': 'generate_toy' is not a 'module:function'"),
    ({"history": "eqcg.systems.polymer:"}, "system 'toy': 'eqcg.systems.polymer:' is not a"),
])
def test_a_kind_registers_only_with_known_units_a_tiny_preset_and_full_paths(change, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        register_system_kind(dataclasses.replace(TOY, **change))
    assert "toy" not in system_kinds()


def test_every_preset_tells_its_time_step_and_frame_interval_alike():
    polymer, electrolyte = (get_system_kind(name).preset("tiny")
                            for name in ("polymer", "electrolyte"))
    assert polymer.timestep == 0.01 and polymer.frame_interval == pytest.approx(5.0)  # tau
    assert electrolyte.timestep == 0.002 and electrolyte.frame_interval == 0.5  # ps


def test_the_frame_interval_of_a_preset_is_that_of_its_dataset(polymer_data):
    kind = get_system_kind("polymer")
    with load_dataset(polymer_data) as dataset:
        assert dataset[0].units == kind.units
        assert dataset[0].frame_interval == pytest.approx(kind.preset("tiny").frame_interval)


def test_listing_the_systems_imports_no_generator():
    code = ("import sys\n"
            "from eqcg.commands.cli import build_parser\n"
            "build_parser()\n"
            "heavy = sorted(m for m in ('torch', 'h5py', 'mdtraj', 'eqcg.data',\n"
            "                           'eqcg.systems.generate', 'eqcg.systems.polymer',\n"
            "                           'eqcg.systems.electrolyte') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
