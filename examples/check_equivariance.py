"""Check E(3) equivariance of a model built from a config (or a trained run), in float64.

    python examples/check_equivariance.py configs/polymer_equivariant.yaml
    python examples/check_equivariance.py example-runs/equivariant

A config needs nothing else; a run directory comes from ``examples/train_from_python.py``.
"""

import argparse
from pathlib import Path

import torch

import eqcg
from eqcg.simulation.equivariance import measure_equivariance, probe_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="YAML config or run directory")
    args = parser.parse_args()

    if args.target.suffix in (".yaml", ".yml"):
        config = eqcg.load_config(args.target)
        vocabulary = eqcg.TypeVocabulary(("1", "2"), ("1-1", "1-2", "2-2"))
        simulator = eqcg.Simulator(config.model, config.score, vocabulary, config.data.history)
    else:
        simulator, config, _ = eqcg.load_simulator(args.target)
    simulator = simulator.double().eval()
    for pbc in (False, True):
        batch = probe_batch(simulator.vocabulary, config.data.history, pbc=pbc, triclinic=pbc)
        errors = measure_equivariance(simulator, batch, n_trials=4)
        where = "triclinic periodic cell" if pbc else "open boundaries"
        print(f"{config.model.variant}, {where}: " +
              ", ".join(f"{k} {v:.1e}" for k, v in vars(errors).items()))
    print(f"float64 machine epsilon: {torch.finfo(torch.float64).eps:.1e}")


if __name__ == "__main__":
    main()
