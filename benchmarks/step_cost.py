"""Per-step cost of the equivariant vs the baseline simulator at matched parameter counts.

    python benchmarks/step_cost.py                       # synthetic electrolyte-sized system
    python benchmarks/step_cost.py --data data/electrolyte --system NAME --repeats 100

The equivariant model is built from its config; the baseline's ``model.latent_dim`` is then
chosen so that its total parameter count is the closest to the equivariant model's. Both run
in one process, float32, in inference mode, on the same CG system (by default a synthetic
periodic box of bonded chains and free ions of electrolyte size and density built from
``eqcg.testing.random_system``; ``--data`` takes a dataset's system instead). Measurements
alternate between the variants and the table reports medians:

* dynamics: one :meth:`Simulator.predict` (neighbour list + dynamics network);
* score: one :meth:`Simulator.score` (neighbour list + score network);
* rollout step: one step of :func:`eqcg.simulation.rollout.rollout` (predict, sample, Euler
  step, the configured refinement's score calls: ``eqcg.simulation.refinement.score_evaluations``);
* training step: forward + backward of :func:`eqcg.training.losses.compute_losses` on a batch of
  ``train.batch_size`` windows.

``--compile`` then compiles both variants (:meth:`Simulator.compile_networks`) and measures the
same operations again, with the first call (compilation) timed apart.

Weights are untrained: the cost of a step does not depend on them (see
``common.UNTRAINED_ACCELERATION_SCALE`` for the two settings that keep untrained models from
blowing up without changing the work done). ``--profile``
adds the heaviest functions of each variant's score evaluation (cProfile). Writes
``benchmarks/results/step_cost.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import (
    RESULTS_DIR,
    VARIANTS,
    add_config_arguments,
    add_device_arguments,
    count_parameters,
    environment,
    format_table,
    interleaved_times,
    load_variant_configs,
    match_baseline_width,
    median,
    rollout_step_measure,
    setup_device,
    synthetic_system,
    timed,
    trajectory_system,
    untrained_refinement,
    untrained_simulator,
    write_json,
)
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.config import Config
from eqcg.data.store import load_dataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.graphs.neighbors import cg_edges
from eqcg.graphs.windows import WindowDataset, history_frames
from eqcg.models.simulator import Simulator
from eqcg.simulation.refinement import score_evaluations
from eqcg.training.losses import compute_losses

TARGET_RATIO = 1.0  # the project's goal: equivariant <= 1.0x baseline per rollout step on CPU


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--data", type=Path, help="dataset directory instead of synthetic data")
    parser.add_argument("--system", help="system of --data (default: the first)")
    parser.add_argument("--chains", type=int, default=20, help="synthetic: bonded chains")
    parser.add_argument("--chain-length", type=int, default=84, help="synthetic: atoms per chain")
    parser.add_argument("--ions", type=int, default=40, help="synthetic: free ions (one bead each)")
    parser.add_argument("--box", type=float, default=30.0, help="synthetic: cubic box edge (Å)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50,
                        help="timed runs of dynamics, score and training step")
    parser.add_argument("--rollout-repeats", type=int, default=15, help="timed rollout steps")
    parser.add_argument("--warmup", type=int, default=3)
    add_device_arguments(parser)
    parser.add_argument("--profile", action="store_true",
                        help="print the heaviest functions of each variant's score evaluation")
    parser.add_argument("--compile", action="store_true",
                        help="then torch.compile both variants' networks and measure again")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "step_cost.json")
    return parser.parse_args()


def system_for(args: argparse.Namespace, n_frames: int) -> SystemTrajectory:
    """The benchmark system: a dataset's system (``--data``) or the synthetic box."""
    if args.data is None:
        return synthetic_system(args.chains, args.chain_length, args.ions, args.box, n_frames,
                                args.seed)
    dataset = load_dataset(args.data)
    return dataset[args.system or dataset.names[0]]


def measures_of(
    simulator: Simulator, config: Config, batch: Batch, train_batch: Batch, device: torch.device
) -> tuple[dict[str, Callable[[], float]], Callable[[], None]]:
    """The four timed operations of one variant, each as ``() -> seconds``, and the bare
    score evaluation (for profiling)."""
    history = batch[keys.POS_HISTORY]
    last = history[:, -1]
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        features = simulator.embed(batch)
        latent = simulator.predict(batch, history, features).latent
    noisy = last + 0.1 * torch.randn(last.shape, generator=generator, device=device)
    sigma = simulator.sigmas[-1].expand(last.shape[0])
    refinement = untrained_refinement(config.rollout, config.score.n_levels)

    @torch.no_grad()
    def predict() -> None:
        simulator.predict(batch, history, features)

    @torch.no_grad()
    def score() -> None:
        simulator.score(batch, noisy, last, sigma, features, latent)

    def train_step() -> None:
        simulator.zero_grad(set_to_none=True)
        terms = compute_losses(
            simulator, train_batch, noise_begin=config.train.noise_begin,
            noise_end=config.train.noise_end, score_weight=config.train.score_weight,
            property_weight=config.train.property_weight, generator=generator,
        )
        terms.total.backward()

    measures = {
        "dynamics": timed(predict, device),
        "score": timed(score, device),
        "train_step": timed(train_step, device),
        "rollout_step": rollout_step_measure(simulator, batch, refinement, generator),
    }
    return measures, score


def profile_score(name: str, score: Callable[[], None], repeats: int) -> None:
    """Print the eqcg and e3nn functions with the most cumulative time over ``repeats`` score
    evaluations (cProfile: names the Python function a hotspot is in)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        score()
    profiler.disable()
    print(f"\n--- {name}: score evaluation, {repeats} calls (cProfile, cumulative) ---")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"eqcg/|e3nn/", 15)


def measure_compiled(
    simulators: dict[str, Simulator], measures: dict[str, dict[str, Callable[[], float]]],
    eager: dict[str, Any], args: argparse.Namespace,
) -> dict[str, Any]:
    """Compile every variant's networks (:meth:`Simulator.compile_networks`), time the first
    call of each operation (compilation included) and then the compiled operations, against the
    eager medians measured before; print and return the table."""
    rows, out = [], {}
    operations = ("dynamics", "score", "rollout_step")
    for name, simulator in simulators.items():
        simulator.compile_networks()
        first = {op: measures[name][op]() for op in operations}
        out[name] = {"first_call_s": first}
    for op in operations:
        repeats = args.rollout_repeats if op == "rollout_step" else args.repeats
        runs = interleaved_times({v: measures[v][op] for v in VARIANTS}, repeats, args.warmup)
        for name in VARIANTS:
            ms, before = 1e3 * median(runs[name]), eager[op]["median_ms"][name]
            out[name][op] = {"eager_ms": before, "compiled_ms": ms, "speedup": before / ms}
            rows.append([op, name, before, ms, f"{before / ms:.2f}x",
                         out[name]["first_call_s"][op]])
    ratio = (out["equivariant"]["rollout_step"]["compiled_ms"]
             / out["baseline"]["rollout_step"]["compiled_ms"])
    out["rollout_step_ratio"] = ratio
    print("\ntorch.compile (dynamic shapes; eager medians from the table above):")
    print(format_table(["operation", "variant", "eager ms", "compiled ms", "speed-up",
                        "first call s"], rows))
    print(f"compiled rollout step, equivariant / baseline: {ratio:.2f}x")
    return out


def main() -> None:
    args = parse_args()
    device = setup_device(args)
    configs = load_variant_configs(args)
    history = configs["equivariant"].data.history
    if configs["baseline"].data.history != history:
        raise SystemExit("the two configs must share data.history")
    batch_size = configs["baseline"].train.batch_size
    data_config = configs["baseline"].data
    dilation = data_config.dilation
    trajectory = system_for(args, n_frames=(history + batch_size) * dilation + 1)
    system, vocabulary = trajectory_system(trajectory, configs["baseline"])

    equivariant = untrained_simulator(configs["equivariant"], vocabulary)
    target = count_parameters(equivariant)
    width = match_baseline_width(configs["baseline"], vocabulary, target)
    configs["baseline"].model.latent_dim = width
    simulators = {"baseline": untrained_simulator(configs["baseline"], vocabulary),
                  "equivariant": equivariant}
    params = {name: count_parameters(sim) for name, sim in simulators.items()}

    frames = history_frames(0, history, dilation)
    batch = Batch.from_data_list([system.graph(frames)]).to(device)
    windows = WindowDataset([system], history, dilation)
    train_batch = Batch.from_data_list(
        [windows[i] for i in range(min(batch_size, len(windows)))]
    ).to(device)
    edge_index, _, _, _ = cg_edges(
        batch[keys.POS_HISTORY][:, -1], batch[keys.BOX], batch[keys.PBC], batch.batch, batch.ptr,
        batch[keys.CG_BOND_INDEX], configs["equivariant"].model.radius,
    )
    n_beads, n_edges = system.n_beads, int(edge_index.shape[1])
    score = configs["equivariant"].score
    configured = configs["equivariant"].rollout
    refinement = untrained_refinement(configured, score.n_levels)
    score_calls = score_evaluations(configured, score.n_levels)

    print(f"system: {trajectory.name}, {trajectory.n_atoms} atoms -> {n_beads} beads, "
          f"{n_edges} edges ({n_edges / n_beads:.1f} per bead), radius "
          f"{configs['equivariant'].model.radius} Å, history {history}")
    print(f"parameters: equivariant {params['equivariant']:,}; baseline {params['baseline']:,} "
          f"at latent_dim {width} ({params['baseline'] / params['equivariant'] - 1:+.1%})")
    print(f"refinement: {configured.schedule}, {configured.levels(score.n_levels)} levels "
          f"= {score_calls} score calls per step; "
          f"device {device}, {torch.get_num_threads()} threads, float32")

    measures, score_fns = {}, {}
    for name, simulator in simulators.items():
        simulator.to(device=device, dtype=torch.float32).eval()
        measures[name], score_fns[name] = measures_of(simulator, configs[name], batch,
                                                      train_batch, device)
    rows, results = [], {}
    for operation in measures["baseline"]:
        repeats = args.rollout_repeats if operation == "rollout_step" else args.repeats
        runs = interleaved_times({v: measures[v][operation] for v in VARIANTS}, repeats,
                                 args.warmup)
        ms = {v: 1e3 * median(runs[v]) for v in VARIANTS}
        ratio = ms["equivariant"] / ms["baseline"]
        rows.append([operation, ms["baseline"], ms["equivariant"], f"{ratio:.2f}x"])
        results[operation] = {"median_ms": ms, "ratio": ratio,
                              "runs_ms": {v: [1e3 * t for t in runs[v]] for v in VARIANTS}}
    print()
    print(format_table(["operation", "baseline ms", "equivariant ms", "eq/base"], rows))
    step_ratio = results["rollout_step"]["ratio"]
    met = step_ratio <= TARGET_RATIO
    print(f"\ntarget equivariant <= {TARGET_RATIO:.1f}x baseline per rollout step: "
          + ("met" if met else f"missed by {step_ratio / TARGET_RATIO - 1:.0%}")
          + f" ({step_ratio:.2f}x)")
    if args.profile:
        for name in VARIANTS:
            profile_score(name, score_fns[name], args.repeats)
    compiled = measure_compiled(simulators, measures, results, args) if args.compile else None

    path = write_json(args.out, {
        "benchmark": "step_cost",
        "environment": environment(device),
        "configs": {"baseline": str(args.baseline_config),
                    "equivariant": str(args.equivariant_config), "overrides": args.overrides},
        "system": {"name": trajectory.name, "atoms": trajectory.n_atoms, "beads": n_beads,
                   "edges": n_edges, "synthetic": args.data is None,
                   "box": args.box if args.data is None else None},
        "parameters": params,
        "baseline_latent_dim": width,
        "refinement": {"levels": configs["equivariant"].score.n_levels,
                       "steps_per_level": refinement.langevin_steps,
                       "score_calls_per_step": score_calls},
        "repeats": {"default": args.repeats, "rollout_step": args.rollout_repeats,
                    "warmup": args.warmup},
        "results": results,
        "target_ratio": TARGET_RATIO,
        "target_met": met,
        "compiled": compiled,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
