"""``eqcg train --compile``: training runs through torch.compile'd networks, takes the steps the
eager model takes, and writes checkpoints of the eager model."""

from __future__ import annotations

import json

import torch

from eqcg.commands.cli import main
from eqcg.config import load_config, save_config
from eqcg.models.checkpoint import load_checkpoint, load_simulator
from eqcg.training.trainer import train

SMALL = ["model.embed_dim=8", "model.latent_dim=16", "model.message_passing_steps=1",
         "model.score_message_passing_steps=1", "train.val_windows=4", "train.max_steps=2",
         "train.val_every=2", "train.batch_size=2"]


def test_train_compile_captures_the_networks_and_trains_as_the_eager_model(
        polymer_data, tmp_path, single_thread, capsys):
    config = load_config("configs/polymer_baseline.yaml", SMALL)
    save_config(config, tmp_path / "config.yaml")
    train(config, polymer_data, tmp_path / "eager", show_progress=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    previous = torch._dynamo.config.suppress_errors
    assert main(["train", str(tmp_path / "config.yaml"), "--data", str(polymer_data), "--out",
                 str(tmp_path / "compiled"), "--compile"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert torch._dynamo.config.suppress_errors is previous  # no global setting changed
    # the networks were really captured (not silently run eagerly) ...
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2
    # ... and took the steps the eager model took
    eager = load_checkpoint(tmp_path / "eager/checkpoints/last.pt")["model"]
    compiled = load_checkpoint(tmp_path / "compiled/checkpoints/last.pt")["model"]
    assert list(compiled) == list(eager)  # eager parameter names: no compiled wrapper
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)
    record = json.loads((tmp_path / "compiled/run.json").read_text())
    assert record["compile"] is True
    assert json.loads((tmp_path / "eager/run.json").read_text())["compile"] is False
    load_simulator(tmp_path / "compiled")  # an eager model loads the compiled run's checkpoint
