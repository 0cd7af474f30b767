"""The ``rollout`` settings section: one definition behind the config, the command line and the
sampler; old ``score`` keys migrated; editable in a trained run's ``config.yaml``."""

import dataclasses
import json
import logging

import pytest
import yaml

from eqcg.commands.cli import EXIT_BAD_INPUT, build_parser, main
from eqcg.config import MOVED_KEYS, Config, RolloutConfig, config_from_dict, load_config
from eqcg.data.rollout_file import ROLLOUT_FILE, read_rollout_state
from eqcg.data.store import load_dataset
from eqcg.errors import CheckpointError, ConfigError
from eqcg.models.checkpoint import CONFIG_FILE, load_simulator
from eqcg.simulation.runner import RolloutOptions
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=8", "model.latent_dim=16", "model.message_passing_steps=1",
         "model.score_message_passing_steps=1", "train.val_windows=8", "train.max_steps=20",
         "train.val_every=20", "train.checkpoint_every=20"]
# what the rollout/simulate flags that are no rollout setting set: RolloutOptions fields, and
# what the systems to start from are (positional run, --data, --systems, simulate's files)
OPTION_FLAGS = {"checkpoint", "save_every", "start_frame", "seed", "device", "dtype", "compile",
                "resume", "overwrite"}
CALL_FLAGS = {"help", "run", "data", "systems", "steps", "out"}
SIMULATE_FLAGS = {"topology", "trajectory", "format", "name", "units", "timestep",
                  "frame_interval", "stride", "temperature", "generate_history", "preset",
                  "history_seed"}


def _subparser(command: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command]


@pytest.mark.parametrize("command", ["rollout", "simulate"])
def test_every_rollout_flag_maps_to_one_settings_field(command):
    """Walking the parser: each flag is a RolloutConfig field (named after it), a
    RolloutOptions field, or says what to roll out; every RolloutConfig field has its flag."""
    settings = {f.name for f in dataclasses.fields(RolloutConfig)}
    options = {f.name for f in dataclasses.fields(RolloutOptions)}
    assert OPTION_FLAGS <= options
    seen = set()
    for action in _subparser(command)._actions:
        dest = action.dest
        assert dest not in seen, f"{dest} set by two flags"
        seen.add(dest)
        if dest in settings:
            assert f"--{dest.replace('_', '-')}" in action.option_strings
            assert action.default is None  # None: the run's own value
        else:
            assert dest in OPTION_FLAGS | CALL_FLAGS | SIMULATE_FLAGS, dest
    assert settings <= seen


def test_flags_take_the_range_and_choices_of_the_config_field(capsys):
    """One range: the flag refuses what the config refuses, with the same wording."""
    parser = _subparser("rollout")
    base = ["run", "--data", "d", "--steps", "1", "--out", "o"]
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--refine-levels", "-1"])
    assert "must be an integer >= 0 and <= 10000, got -1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"rollout.refine_levels must be an integer >= 0 and "
                                          r"<= 10000, got -1"):
        config_from_dict({"rollout": {"refine_levels": -1}})
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--schedule", "euler"])
    assert "invalid choice: 'euler'" in capsys.readouterr().err
    args = parser.parse_args([*base, "--levels", "3", "--no-refine", "--schedule", "ddim"])
    assert (args.refine_levels, args.refine, args.schedule) == (3, False, "ddim")


def test_sizes_are_bounded_and_python_changes_are_checked():
    with pytest.raises(ConfigError, match=r"model.latent_dim must be an integer >= 1 and <= 4096"):
        config_from_dict({"model": {"latent_dim": 10**6}})
    with pytest.raises(ConfigError, match=r"the rollout options: rollout.step_size must be a "
                                          r"finite number > 0, got 0.0"):
        RolloutOptions(changes={"step_size": 0.0}).resolved_settings(RolloutConfig())
    with pytest.raises(ConfigError, match=r"unknown key 'rollout.levels'"):
        RolloutOptions(changes={"levels": 3}).resolved_settings(RolloutConfig())


def test_old_score_keys_move_to_the_rollout_section(caplog):
    old = {"score": {"n_levels": 8, "refine": False, "step_schedule": "ddim",
                     "refine_keeps_com": True, "langevin_steps": 2}}
    with caplog.at_level(logging.WARNING):
        config = config_from_dict(old, where="old.yaml")
    assert config.rollout == RolloutConfig(refine=False, schedule="ddim", keep_com=True,
                                           langevin_steps=2)
    assert config.score.n_levels == 8
    assert "score.step_schedule -> rollout.schedule" in caplog.text
    assert {k for k in MOVED_KEYS if k.startswith("score.")} == {
        f"score.{name}" for name in ("refine", "refine_levels", "langevin_steps", "step_size",
                                     "step_schedule", "refine_start", "denoise",
                                     "excluded_volume", "refine_keeps_com")}
    with pytest.raises(ConfigError, match="score.denoise and rollout.denoise are both given"):
        config_from_dict({"score": {"denoise": True}, "rollout": {"denoise": False}})
    assert "refine" not in Config().to_dict()["score"]
    overridden = load_config("configs/polymer_baseline.yaml", ["score.refine_levels=3"])
    assert overridden.rollout.refine_levels == 3


@pytest.fixture(scope="module")
def run_dir(polymer_data, tmp_path_factory, single_thread):
    out = tmp_path_factory.mktemp("settings") / "run"
    train(load_config("configs/polymer_baseline.yaml", SMALL), polymer_data, out,
          show_progress=False)
    return out


def _request(out) -> dict:
    header, _ = read_rollout_state(out / ROLLOUT_FILE)
    return header.request["settings"]


def test_rollout_settings_edited_in_the_run_config_are_honoured(run_dir, polymer_data,
                                                                tmp_path):
    """Editing the run's ``rollout`` section is no change of the model: the run is not refused
    and the edit reaches the sampler; a flag changes it once more; a model key is refused."""
    config_path = run_dir / CONFIG_FILE
    saved = config_path.read_text()
    try:
        edited = yaml.safe_load(saved)
        edited["rollout"].update(refine=False, deterministic=True)
        config_path.write_text(yaml.safe_dump(edited))
        _, config, _ = load_simulator(run_dir)
        assert not config.rollout.refine and config.rollout.deterministic

        out = tmp_path / "edited"
        assert main(["rollout", str(run_dir), "--data", str(polymer_data), "--steps", "2",
                     "--out", str(out), "--device", "cpu"]) == 0
        assert _request(out)["refine"] is False and _request(out)["deterministic"] is True
        with load_dataset(out / ROLLOUT_FILE) as rollout:
            assert all(system.attrs["refine"] is False for system in rollout)

        flagged = tmp_path / "flagged"
        assert main(["rollout", str(run_dir), "--data", str(polymer_data), "--steps", "2",
                     "--out", str(flagged), "--device", "cpu", "--refine",
                     "--refine-levels", "2", "--schedule", "ddim"]) == 0
        request = _request(flagged)
        assert (request["refine"], request["refine_levels"], request["schedule"],
                request["deterministic"]) == (True, 2, "ddim", True)
        assert json.loads((flagged / "run.json").read_text())["settings"] == request

        edited["model"]["latent_dim"] = 17
        config_path.write_text(yaml.safe_dump(edited))
        with pytest.raises(CheckpointError, match=r"model.latent_dim: 16 -> 17"):
            load_simulator(run_dir)
        assert main(["rollout", str(run_dir), "--data", str(polymer_data), "--steps", "2",
                     "--out", str(tmp_path / "refused"), "--device", "cpu"]) == EXIT_BAD_INPUT
    finally:
        config_path.write_text(saved)
