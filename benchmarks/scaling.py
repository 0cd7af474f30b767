"""How step time and memory grow: with the beads of one periodic box, with the systems batched,
and for training, with the beads per training batch.

    python benchmarks/scaling.py                                  # all three sweeps, CPU
    python benchmarks/scaling.py --beads 300 3000 10000 --batch 1 16 256 --device cuda

* ``beads``: one periodic box of bonded chains and free ions at electrolyte density (the
  synthetic system of ``step_cost.py``, scaled: 280 beads in a 30 Å box, more chains and ions
  in a box grown to keep the density), one rollout step bare and with the configured
  refinement;
* ``batch``: 1..256 copies of the electrolyte ``tiny`` box (45 beads) batched in one graph;
* ``train``: one training step (forward + backward of the losses, batch of one window) on the
  scaled box: seconds, windows/s, and the window loader's own windows/s.

Every point runs in a fresh process, so that its peak memory is its own: on the CPU the peak
resident set size of the whole process (Python, torch and the inputs included; ``inputs MB`` is
its size once the inputs are built), on CUDA the peak of ``torch.cuda.max_memory_allocated``
during the timed work. Models are untrained, float32, ``--threads`` CPU threads
(see ``common.untrained_refinement`` for the refinement's timing-neutral stand-in). Writes
``benchmarks/results/scaling.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    RESULTS_DIR,
    VARIANTS,
    add_config_arguments,
    add_device_arguments,
    cg_system,
    electrolyte_dataset,
    environment,
    format_table,
    median,
    pyplot,
    replicated_batch,
    rollout_step_measure,
    setup_device,
    synchronize,
    synthetic_system,
    trajectory_system,
    untrained_refinement,
    untrained_simulator,
    write_json,
)
from torch_geometric.data import Batch

from eqcg.config import load_config
from eqcg.data.trajectory import SystemTrajectory
from eqcg.graphs.windows import WindowDataset, history_frames
from eqcg.training.losses import compute_losses

BASE_BEADS, BASE_CHAINS, BASE_IONS, BASE_BOX = 280, 20, 40, 30.0  # step_cost.py's box


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--beads", type=int, nargs="*", default=[300, 1000, 3000, 10000],
                        help="approximate beads of the one-box sweep (and of training)")
    parser.add_argument("--batch", type=int, nargs="*", default=[1, 4, 16, 64, 256],
                        help="systems of the batch sweep")
    parser.add_argument("--train-beads", type=int, nargs="*", default=[300, 3000, 10000],
                        help="beads per training batch of the training sweep")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per point")
    add_device_arguments(parser)
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: run one point
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "scaling.json")
    return parser.parse_args()


def scaled_box(beads: int, n_frames: int) -> SystemTrajectory:
    """The synthetic electrolyte-density box with about ``beads`` beads."""
    factor = beads / BASE_BEADS
    edge = BASE_BOX * factor ** (1 / 3)
    return synthetic_system(max(round(BASE_CHAINS * factor), 1), 84,
                            max(round(BASE_IONS * factor), 1), edge, n_frames, seed=0)


def memory_mb(device: torch.device) -> float:
    """Memory in use now (MB): resident set size (CPU) or tensors allocated (CUDA)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def start_peak(device: torch.device) -> float:
    """Memory in use before the timed work (MB); on CUDA the peak counter restarts here."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return memory_mb(device)


def peak_mb(device: torch.device) -> float:
    """Peak memory (MB): of the whole process since it started (CPU, the peak resident set
    size: Python, torch and inputs included) or of CUDA tensors since :func:`start_peak`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_point(point: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    device = setup_device(args)
    config = load_config(getattr(args, f"{point['variant']}_config"))
    history, dilation = config.data.history, config.data.dilation
    if point["sweep"] == "batch":
        dataset = electrolyte_dataset(None)
        system, vocabulary = cg_system(dataset, dataset.names[0], config)
        batch = replicated_batch(system, history, point["size"], device)
    else:
        trajectory = scaled_box(point["size"], (history + 1) * dilation + 1)
        system, vocabulary = trajectory_system(trajectory, config)
        batch = Batch.from_data_list([system.graph(history_frames(0, history, dilation))])
        batch = batch.to(device)
    simulator = untrained_simulator(config, vocabulary).to(device=device,
                                                           dtype=torch.float32)
    result: dict[str, Any] = {**point, "beads": int(batch.num_nodes)}
    generator = torch.Generator(device=device).manual_seed(0)
    if point["sweep"] == "train":
        windows = WindowDataset([system], history, dilation)
        started = time.perf_counter()
        window_batch = Batch.from_data_list([windows[0]])
        result["loader_windows_per_s"] = 1.0 / (time.perf_counter() - started)
        window_batch = window_batch.to(device)
        simulator.train()
        result["inputs_mb"] = start_peak(device)
        times = []
        for _ in range(args.repeats + 1):
            synchronize(device)
            began = time.perf_counter()
            simulator.zero_grad(set_to_none=True)
            terms = compute_losses(simulator, window_batch, noise_begin=config.train.noise_begin,
                                   noise_end=config.train.noise_end,
                                   score_weight=config.train.score_weight,
                                   property_weight=config.train.property_weight,
                                   generator=generator)
            terms.total.backward()
            synchronize(device)
            times.append(time.perf_counter() - began)
        result["train_step_s"] = median(times[1:])
        result["windows_per_s"] = 1.0 / result["train_step_s"]
        result["peak_mb"] = peak_mb(device)
        return result
    simulator.eval()
    refinement = untrained_refinement(config.rollout, config.score.n_levels)
    result["inputs_mb"] = start_peak(device)
    for label, refine in (("bare", None), ("refined", refinement)):
        measure = rollout_step_measure(simulator, batch, refine, generator)
        measure()  # warm-up
        result[f"{label}_s"] = median([measure() for _ in range(args.repeats)])
    result["peak_mb"] = peak_mb(device)
    return result


def points(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every measurement of the requested sweeps."""
    return ([{"sweep": "beads", "variant": v, "size": n} for n in args.beads for v in VARIANTS]
            + [{"sweep": "batch", "variant": v, "size": n} for n in args.batch for v in VARIANTS]
            + [{"sweep": "train", "variant": v, "size": n} for n in args.train_beads
               for v in VARIANTS])


def in_fresh_process(point: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run ``point`` in a child process of this script and return what it printed."""
    command = [sys.executable, __file__, "--point", json.dumps(point), "--device", args.device,
               "--threads", str(args.threads), "--repeats", str(args.repeats),
               "--baseline-config", str(args.baseline_config),
               "--equivariant-config", str(args.equivariant_config)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {**point, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Step time and peak memory of each sweep, log-log, per variant."""
    plt = pyplot()
    sweeps = [("beads", "beads in one box", ("bare_s", "refined_s")),
              ("batch", "systems batched (45 beads each)", ("bare_s", "refined_s")),
              ("train", "beads per training batch", ("train_step_s",))]
    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    for column, (sweep, xlabel, keys) in enumerate(sweeps):
        for variant in VARIANTS:
            rows = [r for r in results if r["sweep"] == sweep and r["variant"] == variant
                    and "error" not in r]
            if not rows:
                continue
            x = [r["beads"] if sweep != "batch" else r["size"] for r in rows]
            for key in keys:
                axes[0, column].loglog(x, [r[key] for r in rows], "o-",
                                       label=f"{variant} {key.removesuffix('_s')}")
            axes[1, column].loglog(x, [max(r["peak_mb"], 1.0) for r in rows], "o-",
                                   label=variant)
        axes[0, column].set_ylabel("seconds per step")
        axes[1, column].set_ylabel("peak memory (MB)")
        axes[1, column].set_xlabel(xlabel)
        axes[0, column].legend(fontsize=7)
        axes[1, column].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    if args.point:
        print(json.dumps(run_point(json.loads(args.point), args)))
        return
    device = setup_device(args)
    results = []
    for point in points(args):
        results.append(in_fresh_process(point, args))
        print(json.dumps(results[-1]), flush=True)
    headers = ["sweep", "variant", "size", "beads", "bare s", "refined s", "train s",
               "windows/s", "loader windows/s", "inputs MB", "peak MB"]
    rows = [[r["sweep"], r["variant"], r["size"], r.get("beads", "-"),
             *(r.get(k, "-") for k in ("bare_s", "refined_s", "train_step_s", "windows_per_s",
                                        "loader_windows_per_s")),
             r.get("inputs_mb", "-"), r.get("peak_mb", r.get("error", "-"))]
            for r in results]
    print()
    print(format_table(headers, rows))
    for variant in VARIANTS:
        one_box = [r for r in results if r["sweep"] == "beads" and r["variant"] == variant
                   and "bare_s" in r]
        if len(one_box) > 1:
            slope = np.polyfit(np.log([r["beads"] for r in one_box]),
                               np.log([r["bare_s"] for r in one_box]), 1)[0]
            print(f"{variant}: bare step time ~ beads^{slope:.2f} over "
                  f"{one_box[0]['beads']}-{one_box[-1]['beads']} beads")
    path = write_json(args.out, {"benchmark": "scaling", "environment": environment(device),
                                 "configs": {v: str(getattr(args, f"{v}_config"))
                                             for v in VARIANTS},
                                 "results": results})
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
