"""Train the equivariant variant from Python on freshly generated tiny polymer data.

    python examples/train_from_python.py --out example-runs

Generates 6 bead-spring chains with LAMMPS, trains for a few hundred steps and prints the
validation NLL before and after. Run it first: the other examples read what it writes
(``example-runs/polymer-data`` and ``example-runs/equivariant``).
"""

import argparse
import csv
from pathlib import Path

import eqcg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="example-runs", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    data = args.out / "polymer-data"
    if not (data / "dataset.h5").exists():
        eqcg.generate_polymer(data, preset="tiny", n_systems=6)
    with eqcg.load_dataset(data) as dataset:
        print(dataset.summary())

    config = eqcg.load_config("configs/polymer_equivariant.yaml",
                              [f"train.max_steps={args.steps}", "train.val_every=100",
                               "model.latent_dim=32",
                               "model.equivariant.vector_channels=8"])
    result = eqcg.train(config, data, args.out / "equivariant")
    with open(result.run_dir / "metrics.csv", newline="") as f:
        validation = [row for row in csv.DictReader(f) if row["split"] == "val"]
    print(f"validation NLL: step 0 {float(validation[0]['nll']):.3f} -> "
          f"step {result.step} {float(validation[-1]['nll']):.3f}")
    n_weights = sum(p.numel() for p in result.simulator.parameters())
    print(f"trained simulator: {n_weights:,} weights; checkpoints in {result.run_dir}")


if __name__ == "__main__":
    main()
