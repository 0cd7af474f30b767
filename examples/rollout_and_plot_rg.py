"""Roll a trained model out and plot each chain's radius of gyration against the reference MD.

    python examples/rollout_and_plot_rg.py example-runs/equivariant example-runs/polymer-data

Needs the run and data that ``examples/train_from_python.py --out example-runs`` writes.
Writes the rollout next to the run (``example-runs/rollout``, which
``examples/load_rollout.py`` reads) and `rg.png`.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import eqcg  # noqa: E402
from eqcg.metrics import radius_of_gyration  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    out = eqcg.run_rollout(args.run, args.data, args.run.parent / "rollout", n_steps=args.steps)
    _, config, _ = eqcg.load_simulator(args.run)
    settings = eqcg.CGSettings.from_config(config.data)
    figure, ax = plt.subplots(figsize=(6, 4))
    with eqcg.load_dataset(out / "rollout.h5") as rollout, eqcg.load_dataset(args.data) as md:
        for i, system in enumerate(rollout):
            reference = md[system.name]
            mapping = eqcg.compute_mapping(reference.topology, settings)
            beads = mapping.bead_positions(reference.positions[()], reference.topology.masses)
            rg_md = radius_of_gyration(beads, mapping.bead_masses)
            rg_model = radius_of_gyration(system.positions[()], system.topology.masses)
            color = f"C{i}"
            ax.plot(reference.time, rg_md, color=color, alpha=0.4)
            ax.plot(system.time, rg_model, color=color, label=system.name)
    ax.set_xlabel("time [tau]")
    ax.set_ylabel("Rg [sigma]")
    ax.set_title("model (solid) vs reference MD (faint)")
    ax.legend()
    figure.tight_layout()
    figure.savefig(args.run.parent / "rg.png", dpi=120)
    print(f"rollout in {out}; plot in {args.run.parent / 'rg.png'}")


if __name__ == "__main__":
    main()
