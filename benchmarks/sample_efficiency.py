"""Sample efficiency: held-out likelihood of both variants trained on 1, 2, 4, 8 systems.

    python benchmarks/sample_efficiency.py                 # polymer `tiny`, 12 chains, 400 steps
    python benchmarks/sample_efficiency.py --data data/polymer --steps 2000 --seeds 0 1 2

Without ``--data`` the polymer ``tiny`` preset is generated with LAMMPS (12 chains, seconds)
into ``benchmarks/results/data/``. A fixed set of ``--heldout`` systems is never trained on;
the rest form one ordered training pool whose first ``n`` systems train the size-``n`` runs
(nested sets). The first system of the pool is one that contains every atom and bond type of
the held-out systems, so every model knows every type it is evaluated on.

Each run calls :func:`eqcg.training.trainer.train` on a dataset holding only its training systems
(split ``[1, 0, 0]``), with the same seed, step budget and config for every size, and the final
weights are scored on all windows of the held-out systems with
:func:`eqcg.training.trainer.validate`. The NLL is reported in physical units (nats per bead, with
the acceleration in the dataset's length unit): the networks work in units of the training
set's RMS acceleration, which differs between training sets, and ``nll + 3 log(scale)``
undoes that. ``mse/cv`` is the mean squared error of the predicted mean acceleration over that
of constant velocity (zero acceleration); below 1 beats constant velocity.

Writes ``benchmarks/results/sample_efficiency.{json,png}``; runs go to
``benchmarks/results/sample_efficiency/`` (replaced on every invocation).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    RESULTS_DIR,
    VARIANTS,
    add_device_arguments,
    count_parameters,
    environment,
    format_table,
    pyplot,
    setup_device,
    write_json,
)

from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, load_config
from eqcg.data.store import TrajectoryDataset, load_dataset, write_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.graphs.system import TypeVocabulary, prepare_systems
from eqcg.graphs.windows import WindowDataset
from eqcg.models.simulator import Simulator
from eqcg.systems.polymer import generate_polymer
from eqcg.training.trainer import train, validate

REPO = Path(__file__).resolve().parent.parent
WORK_DIR = RESULTS_DIR / "sample_efficiency"
SMALL_WIDTHS = ["model.latent_dim=32", "model.equivariant.vector_channels=8"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="dataset directory (default: generate the polymer tiny preset)")
    parser.add_argument("--n-systems", type=int, default=12,
                        help="systems to generate without --data")
    parser.add_argument("--baseline-config", type=Path,
                        default=REPO / "configs/polymer_baseline.yaml")
    parser.add_argument("--equivariant-config", type=Path,
                        default=REPO / "configs/polymer_equivariant.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"config override for both variants (after {' '.join(SMALL_WIDTHS)})")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="numbers of training systems")
    parser.add_argument("--heldout", type=int, default=4, help="held-out evaluation systems")
    parser.add_argument("--steps", type=int, default=400, help="optimisation steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds (results are averaged over them)")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the choice of held-out systems")
    add_device_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "sample_efficiency.json")
    return parser.parse_args()


def type_names(system: SystemTrajectory) -> set[str]:
    """Atom and bond types of ``system`` (as the vocabulary names them)."""
    vocabulary = TypeVocabulary.from_systems([system])
    return set(vocabulary.atom_types) | {f"bond {b}" for b in vocabulary.bond_types}


def choose_systems(
    dataset: TrajectoryDataset, n_train: int, n_heldout: int, seed: int
) -> tuple[list[str], list[str]]:
    """An ordered training pool of ``n_train`` names and ``n_heldout`` held-out names.

    Systems are shuffled with ``seed``; the last ``n_heldout`` are held out. The pool keeps the
    shuffled order except that its first system is the first one holding every type of the
    held-out systems.
    """
    if n_train + n_heldout > len(dataset):
        raise SystemExit(f"{dataset.path} has {len(dataset)} systems; {n_train} training + "
                         f"{n_heldout} held-out are needed")
    order = [dataset.names[i] for i in np.random.default_rng(seed).permutation(len(dataset))]
    pool, heldout = order[:n_train], order[len(order) - n_heldout:]
    needed = set().union(*(type_names(dataset[name]) for name in heldout))
    covering = [name for name in pool if needed <= type_names(dataset[name])]
    if not covering:
        raise SystemExit(f"no training system holds all types of the held-out systems "
                         f"({sorted(needed)}); try another --split-seed")
    pool.remove(covering[0])
    return [covering[0], *pool], heldout


def configs_for(args: argparse.Namespace, seed: int) -> dict[str, Config]:
    """Both variants' configs for one run: small widths, ``--set``, all systems for training."""
    fixed = [*SMALL_WIDTHS, *args.overrides, "data.split=[1.0, 0.0, 0.0]",
             f"train.max_steps={args.steps}", f"train.val_every={args.steps}",
             f"train.checkpoint_every={args.steps}", f"train.seed={seed}"]
    return {
        "baseline": load_config(args.baseline_config, fixed),
        "equivariant": load_config(args.equivariant_config, fixed),
    }


def heldout_metrics(
    simulator: Simulator,
    config: Config,
    dataset: TrajectoryDataset,
    heldout: list[str],
    device: torch.device,
) -> dict[str, float]:
    """Loss terms of the trained simulator on every window of the held-out systems."""
    settings = CGSettings.from_config(config.data)
    systems = prepare_systems(dataset, settings, simulator.vocabulary, heldout)
    windows = WindowDataset(systems, config.data.history, config.data.dilation)
    every_window = dataclasses.replace(
        config, train=dataclasses.replace(config.train, val_windows=len(windows))
    )
    terms = validate(simulator, windows, every_window, device)
    scale = float(simulator.acceleration_scale)
    return {
        "nll": terms["nll"] + 3.0 * math.log(scale),
        "nll_normalized": terms["nll"],
        "mse_over_cv": terms["mse"] / terms["mse_zero"],
        "mse": terms["mse"] * scale**2,
        "mse_cv": terms["mse_zero"] * scale**2,
        "score_loss": terms["score"],
        "acceleration_scale": scale,
        "windows": len(windows),
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot(summary: dict[str, dict[int, dict[str, tuple[float, float]]]], path: Path) -> None:
    """Held-out NLL and MSE/constant-velocity against the number of training systems."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for variant, by_size in summary.items():
        sizes = sorted(by_size)
        for ax, key in zip(axes, ("nll", "mse_over_cv"), strict=True):
            mean = [by_size[n][key][0] for n in sizes]
            std = [by_size[n][key][1] for n in sizes]
            ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=variant)
    axes[0].set_ylabel("held-out NLL (nats / bead)")
    axes[1].set_ylabel("held-out MSE / constant-velocity MSE")
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training systems")
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    device = setup_device(args)
    data = args.data
    if data is None:
        data = RESULTS_DIR / "data" / f"polymer-tiny-n{args.n_systems}"
        generate_polymer(data, "tiny", seed=0, n_systems=args.n_systems, show_progress=False)
    dataset = load_dataset(data)
    pool, heldout = choose_systems(dataset, max(args.sizes), args.heldout, args.split_seed)
    print(f"data: {dataset.path} ({len(dataset)} systems); held out: {', '.join(heldout)}")
    print(f"training pool (first n used): {', '.join(pool)}")
    if WORK_DIR.exists():
        shutil.rmtree(WORK_DIR)

    runs = []
    for n in sorted(args.sizes):
        subset = WORK_DIR / "data" / f"n{n}"
        write_dataset(subset, [dataset[name] for name in pool[:n]],
                      source=f"{dataset.path}: {', '.join(pool[:n])}")
        for seed in args.seeds:
            configs = configs_for(args, seed)
            for variant in VARIANTS:
                started = time.perf_counter()
                run_dir = WORK_DIR / "runs" / f"{variant}-n{n}-s{seed}"
                result = train(configs[variant], subset, run_dir, device=args.device,
                               show_progress=False)
                metrics = heldout_metrics(result.simulator, configs[variant], dataset, heldout,
                                          device)
                runs.append({"variant": variant, "n_train": n, "seed": seed,
                             "parameters": count_parameters(result.simulator),
                             "train_seconds": time.perf_counter() - started, **metrics})
                print(f"  {variant:12s} n={n} seed={seed}: held-out NLL {metrics['nll']:.3f}, "
                      f"mse/cv {metrics['mse_over_cv']:.3f} "
                      f"({runs[-1]['train_seconds']:.0f} s)", flush=True)

    summary: dict[str, dict[int, dict[str, tuple[float, float]]]] = {v: {} for v in VARIANTS}
    for variant in VARIANTS:
        for n in sorted(args.sizes):
            chosen = [r for r in runs if r["variant"] == variant and r["n_train"] == n]
            summary[variant][n] = {key: mean_std([r[key] for r in chosen])
                                   for key in ("nll", "mse_over_cv", "mse", "mse_cv")}
    rows = []
    for n in sorted(args.sizes):
        row = [n]
        for variant in VARIANTS:
            s = summary[variant][n]
            row += [_pm(*s["nll"]), _pm(*s["mse_over_cv"])]
        rows.append(row)
    units = dataset.units
    print(f"\nheld-out metrics after {args.steps} steps, mean over seeds {args.seeds} "
          f"(NLL in nats/bead, acceleration in {'sigma' if units == 'lj' else 'Å'})")
    print(format_table(["n_train", "base NLL", "base mse/cv", "equi NLL", "equi mse/cv"], rows))
    params = {v: next(r["parameters"] for r in runs if r["variant"] == v) for v in VARIANTS}
    print(f"parameters (largest vocabulary): baseline {params['baseline']:,}, "
          f"equivariant {params['equivariant']:,}")

    full = max(args.sizes)
    reference = summary["baseline"][full]["nll"][0]
    reached = [n for n in sorted(args.sizes) if summary["equivariant"][n]["nll"][0] <= reference]
    first = reached[0] if reached else None
    verdict = (f"equivariant reaches the baseline's {full}-system NLL ({reference:.3f}) with "
               + (f"{first} system(s)" if first else f"none of {sorted(args.sizes)} systems"))
    quarter = first is not None and first <= full // 4
    print(f"{verdict}; a quarter of the data ({full // 4}) or less: {'yes' if quarter else 'no'}")

    path = write_json(args.out, {
        "benchmark": "sample_efficiency",
        "environment": environment(device),
        "data": str(dataset.path),
        "units": units,
        "heldout": heldout,
        "training_pool": pool,
        "configs": {"baseline": str(args.baseline_config),
                    "equivariant": str(args.equivariant_config),
                    "overrides": [*SMALL_WIDTHS, *args.overrides]},
        "steps": args.steps,
        "seeds": args.seeds,
        "runs": runs,
        "summary": {v: {str(n): s for n, s in by.items()} for v, by in summary.items()},
        "baseline_full_data_nll": reference,
        "equivariant_systems_to_reach_it": first,
        "quarter_of_data_suffices": quarter,
    })
    png = path.with_suffix(".png")
    plot(summary, png)
    print(f"wrote {path} and {png}")


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f}" if std == 0 else f"{mean:.3f}±{std:.3f}"


if __name__ == "__main__":
    main()
