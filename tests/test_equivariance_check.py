"""eqcg.simulation.equivariance: helpers and the CLI table, one column per registered variant (each
variant's own pass/fail of the measurements is in the shared variant tests,
eqcg.testing.variant_tests)."""

import json

import pytest
import torch

from eqcg import keys
from eqcg.commands.cli import main
from eqcg.config import ModelConfig, ScoreConfig
from eqcg.errors import ConfigError
from eqcg.models.registry import variants
from eqcg.models.simulator import Simulator
from eqcg.simulation.equivariance import (
    cube_symmetries,
    equivariance_table,
    format_equivariance_table,
    measure_equivariance,
    permute_batch,
    probe_batch,
    random_orthogonal,
)
from eqcg.testing import random_batch

HISTORY = 3


def test_helpers_produce_orthogonal_matrices_and_consistent_permutations():
    generator = torch.Generator().manual_seed(0)
    for improper in (False, True):
        r = random_orthogonal(generator, improper)
        torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
        assert torch.det(r).item() == pytest.approx(-1.0 if improper else 1.0)
    cube = cube_symmetries()
    assert len({tuple(m.flatten().tolist()) for m in cube}) == 48
    batch, _ = random_batch(history=HISTORY)
    order = torch.cat([torch.arange(batch.ptr[1]).flip(0),
                       torch.arange(batch.ptr[1], batch.ptr[2])])
    permuted = permute_batch(batch, order)
    torch.testing.assert_close(permuted[keys.POS_HISTORY], batch[keys.POS_HISTORY][order])
    # every atom still sits in a bead at the same place
    bead_of_atom = batch[keys.ATOM_TO_BEAD]
    new_of_old = torch.empty_like(order)
    new_of_old[order] = torch.arange(len(order))
    torch.testing.assert_close(permuted[keys.ATOM_TO_BEAD], new_of_old[bead_of_atom])


def test_probe_batch_uses_only_known_types():
    _, vocabulary = random_batch(history=HISTORY)
    batch = probe_batch(vocabulary, HISTORY, pbc=True)
    assert int(batch[keys.ATOM_TYPES].max()) < len(vocabulary.atom_types)
    assert batch[keys.POS_HISTORY].dtype == torch.float64


def test_the_library_returns_the_table_and_the_cli_prints_it(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data: {history: 3}\nmodel: {variant: equivariant, covariance: full, "
                      "latent_dim: 16, embed_dim: 8, equivariant: {vector_channels: 4}, "
                      "message_passing_steps: 1, score_message_passing_steps: 1, radius: 5.0}\n"
                      "score: {n_levels: 3}\n")
    table = equivariance_table(config, n_trials=1)
    assert capsys.readouterr() == ("", "")  # the library prints nothing
    for by_variant in table.values():
        assert set(by_variant) == set(variants())
        assert by_variant["equivariant"]["mean"] < 1e-9 < 1e-3 < by_variant["baseline"]["mean"]
    out = tmp_path / "errors.json"
    assert main(["check-equivariance", str(config), "--trials", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == format_equivariance_table(table, 1) + "\n"
    lines = printed.splitlines()
    case = "open boundaries, rotations+reflections"
    assert lines[1] == f"{case} (max relative error, float64, 1 trials)"
    assert lines[2].split() == ["quantity", *table[case]]
    assert lines[3].split() == ["mean", *(f"{errors['mean']:.2e}"
                                          for errors in table[case].values())]
    assert len(lines) == 3 * (1 + 2 + 6)  # per case: a blank, title, header, six quantities
    assert json.loads(out.read_text()) == table


@pytest.mark.parametrize("n_trials", [0, -2])
def test_measure_equivariance_refuses_fewer_than_one_trial(n_trials):
    batch, vocabulary = random_batch(history=HISTORY)
    model = ModelConfig(radius=5.0, embed_dim=8, latent_dim=8, message_passing_steps=1,
                        score_message_passing_steps=1)
    simulator = Simulator(model, ScoreConfig(n_levels=3), vocabulary, HISTORY).double()
    with pytest.raises(ConfigError) as caught:
        measure_equivariance(simulator, batch, n_trials=n_trials)
    assert str(caught.value) == f"n_trials (--trials) must be an integer >= 1, got {n_trials}"
