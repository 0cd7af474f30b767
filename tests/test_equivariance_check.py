"""eqcg.equivariance: the equivariant variant passes every check, rollouts included; the
baseline fails them (so the checks can fail); the CLI prints both side by side."""

import json

import pytest
import torch

from eqcg import keys
from eqcg.cli import main
from eqcg.config import ModelConfig, ScoreConfig
from eqcg.equivariance import (
    cube_symmetries,
    measure_equivariance,
    permute_batch,
    probe_batch,
    random_orthogonal,
)
from eqcg.models.simulator import Simulator
from eqcg.testing import random_batch

HISTORY = 3


def simulator(variant: str, covariance: str, vocabulary) -> Simulator:
    torch.manual_seed(0)
    model = ModelConfig(variant=variant, covariance=covariance, radius=5.0, embed_dim=8,
                        latent_dim=16, vector_channels=4, radial_basis=4,
                        message_passing_steps=1, score_message_passing_steps=1)
    return Simulator(model, ScoreConfig(n_levels=3), vocabulary, HISTORY,
                     velocity_scale=0.6, acceleration_scale=0.3).double().eval()


CASES = {
    "open": dict(pbc=False, triclinic=False, rotate_box=True),
    "triclinic": dict(pbc=True, triclinic=True, rotate_box=True),
    "cube": dict(pbc=True, triclinic=False, rotate_box=False),
}


@pytest.mark.parametrize("case", CASES)
def test_equivariant_variant_is_equivariant_to_1e9_including_rollouts(case):
    """Per-output checks of both covariance modes are in test_equivariant.py; this adds the
    rollout (deterministic, refined, rotated noise) and runs the shipped measurement code."""
    spec = CASES[case]
    batch, vocabulary = random_batch(history=HISTORY, pbc=spec["pbc"],
                                     triclinic=spec["triclinic"])
    if not spec["rotate_box"]:
        batch[keys.BOX] = 15.0 * torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    errors = measure_equivariance(simulator("equivariant", "full", vocabulary), batch,
                                  n_trials=2, rotate_box=spec["rotate_box"])
    assert max(vars(errors).values()) < 1e-9, errors


def test_baseline_fails_the_same_checks_but_is_permutation_equivariant():
    batch, vocabulary = random_batch(history=HISTORY, pbc=True, triclinic=True)
    errors = measure_equivariance(simulator("baseline", "diagonal", vocabulary), batch,
                                  n_trials=2)
    assert errors.mean > 1e-3 and errors.score > 1e-3 and errors.rollout > 1e-4
    assert errors.permutation < 1e-9


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


def test_cli_prints_both_variants(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data: {history: 3}\nmodel: {variant: equivariant, covariance: full, "
                      "latent_dim: 16, embed_dim: 8, vector_channels: 4, "
                      "message_passing_steps: 1, score_message_passing_steps: 1, radius: 5.0}\n"
                      "score: {n_levels: 3}\n")
    out = tmp_path / "errors.json"
    assert main(["check-equivariance", str(config), "--trials", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "equivariant" in printed and "rollout" in printed
    table = json.loads(out.read_text())
    for by_variant in table.values():
        assert by_variant["equivariant"]["mean"] < 1e-9 < 1e-3 < by_variant["baseline"]["mean"]
