"""``model.temperature_input``: the thermostat temperature is an input of both networks, saved
with the run, and a rollout of a system without one is refused, naming ``--temperature``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from eqcg import keys
from eqcg.cg.mapping import CGSettings
from eqcg.commands.cli import EXIT_BAD_INPUT, main
from eqcg.config import ModelConfig, ScoreConfig, load_config
from eqcg.data.store import load_dataset
from eqcg.errors import DataError
from eqcg.graphs.system import CGSystem, TypeVocabulary, require_temperatures
from eqcg.models.checkpoint import load_simulator
from eqcg.models.simulator import Simulator
from eqcg.testing import random_batch
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=16", "model.latent_dim=32", "model.message_passing_steps=2",
         "model.score_message_passing_steps=1", "train.val_windows=16", "train.max_steps=20",
         "train.val_every=20", "model.temperature_input=true"]

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_temperature_changes_the_prediction_and_the_score() -> None:
    batch, vocabulary = random_batch(history=4, pbc=True)
    model = ModelConfig(variant="equivariant", covariance="full", radius=5.0, embed_dim=8,
                        latent_dim=16, message_passing_steps=2, temperature_input=True)
    torch.manual_seed(0)
    sim = Simulator(model, ScoreConfig(n_levels=3), vocabulary, 4,
                    temperature_scale=400.0).double().eval()
    outputs = []
    for temperature in (400.0, 500.0):
        batch[keys.TEMPERATURE] = torch.full((batch.num_graphs,), temperature,
                                             dtype=torch.float64)
        with torch.no_grad():
            features = sim.embed(batch)
            pred = sim.predict(batch, batch[keys.POS_HISTORY], features)
            sigma = torch.full((features.shape[0],), 0.3, dtype=torch.float64)
            score = sim.score(batch, batch[keys.TARGET_POS], batch[keys.POS_HISTORY][:, -1],
                              sigma, features, pred.latent)
        outputs.append((pred.acceleration.mean, score))
    (mean_a, score_a), (mean_b, score_b) = outputs
    assert (mean_a - mean_b).abs().max() > 1e-6 * mean_a.abs().max()
    assert (score_a - score_b).abs().max() > 1e-6 * score_a.abs().max()


def test_graphs_carry_the_dataset_temperature(polymer_data) -> None:
    with load_dataset(polymer_data) as dataset:
        system = dataset.systems[0]
        assert system.temperature == dataset.systems[0].attrs["temperature"] == 1.0
        vocabulary = TypeVocabulary.from_systems([system])
        cg = CGSystem.from_trajectory(system, CGSettings(cg_level=3), vocabulary, None)
    graph = cg.graph(torch.arange(3).numpy(), 3)
    assert graph[keys.TEMPERATURE].tolist() == [1.0]
    missing = dataclasses.replace(cg, temperature=float("nan"))
    with pytest.raises(DataError, match=rf"1 system\(s\) have none: {cg.name};.*--temperature"):
        require_temperatures([cg, missing], "test")


@pytest.fixture(scope="module")
def temperature_run(polymer_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("temperature") / "run"
    train(load_config("configs/polymer_equivariant.yaml", SMALL), polymer_data, out,
          show_progress=False)
    return out


def test_the_temperature_scale_is_saved_with_the_run(temperature_run) -> None:
    simulator, config, _ = load_simulator(temperature_run)
    assert config.model.temperature_input and simulator.requires_temperature
    assert float(simulator.temperature_scale) == pytest.approx(1.0)  # the polymer's T


def test_a_rollout_without_temperature_is_refused_naming_the_flag(
    temperature_run, polymer_data, tmp_path, capsys
) -> None:
    with load_dataset(polymer_data) as dataset:
        name = dataset.names[0]
        lammps_dir = polymer_data / "lammps" / name
    files = ["--topology", str(lammps_dir / "chain.data"),
             "--trajectory", str(lammps_dir / "traj.dump"), "--units", "lj",
             "--timestep", "0.01", "--steps", "2", "--levels", "2"]
    code = main(["simulate", str(temperature_run), *files, "--out", str(tmp_path / "a")])
    assert code == EXIT_BAD_INPUT
    assert "--temperature" in capsys.readouterr().err
    code = main(["simulate", str(temperature_run), *files, "--temperature", "1.0",
                 "--out", str(tmp_path / "b")])
    assert code == 0
