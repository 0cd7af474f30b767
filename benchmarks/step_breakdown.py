"""Where the time of a rollout step goes: each stage's share, per variant and batch size.

    python benchmarks/step_breakdown.py                  # electrolyte `tiny`, 1 and 50 boxes
    python benchmarks/step_breakdown.py --copies 1 8 64 --steps 10 --device cuda

The rollout loop and the layers it calls mark their work with the labels of
:mod:`eqcg.runtime.profiling`; this script runs ``--steps`` steps under :mod:`torch.profiler`
and adds up, per step, the wall time spent in each stage *exclusive of the stages nested in it*: the
neighbour list (Verlet filter or rebuild), the rest of the edge construction (bond edges,
displacements), the dynamics network, each score evaluation, the sampler arithmetic around
them, the excluded-volume pass, the integrator, the guards and saving frames through the
streamed-rollout recorder of ``eqcg rollout`` (HDF5 in a temporary directory; with no flush
interval, so it commits as often as its own rule allows: I/O at most 1/20 of the time).
``other`` is the loop's own Python overhead: the step's wall time minus the stages. The
embedding runs once per rollout and is reported apart. Models are untrained and the
refinement is replaced by as many timing-neutral Langevin evaluations as the configured one
takes (see ``common.untrained_refinement``).

The profiler's own overhead per operator inflates small operators, so the step time of the
table comes from a separate run without the profiler (median over ``--steps`` steps) and the
stage shares from the profiled run. Writes ``benchmarks/results/step_breakdown.{json,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

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
    load_variant_configs,
    pyplot,
    replicated_batch,
    setup_device,
    untrained_refinement,
    untrained_simulator,
    write_json,
)
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

from eqcg import keys, profiling
from eqcg.data.rollout_file import RolloutHeader, RolloutState, create_rollout_file
from eqcg.graphs.system import CGSystem
from eqcg.models.gaussian import gaussian_noise
from eqcg.simulation.rollout import rollout
from eqcg.simulation.runner import StreamRecorder
from eqcg.simulation.writer import bead_trajectory

STEP_STAGES = tuple(s for s in profiling.STAGES if s != profiling.EMBEDDING)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset directory (default: electrolyte tiny)")
    parser.add_argument("--system", help="system of --data (default: the first)")
    add_config_arguments(parser)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 50],
                        help="batch sizes: copies of the system in one graph")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps per setting")
    add_device_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "step_breakdown.json")
    return parser.parse_args()


def exclusive_ms(events: list[FunctionEvent]) -> dict[str, float]:
    """Milliseconds under each stage label, minus the time of labelled stages nested in it."""
    totals = dict.fromkeys(profiling.STAGES, 0.0)

    def nested_stage_time(event: FunctionEvent) -> float:
        inner = 0.0
        for child in event.cpu_children:
            inner += (child.cpu_time_total if child.name in totals
                      else nested_stage_time(child))
        return inner

    for event in events:
        if event.name in totals:
            totals[event.name] += (event.cpu_time_total - nested_stage_time(event)) / 1e3
    return totals


def streamed_file(directory: Path, system: CGSystem, copies: int, history: int) -> Path:
    """A streamed-rollout HDF5 file of ``copies`` copies of ``system`` to append frames to."""
    first = system.bead_positions[:1]
    trajectories = [
        dataclasses.replace(bead_trajectory(system, first, system.time[:1], system.box[0], {}),
                            name=f"{system.name}-{i}")
        for i in range(copies)
    ]
    n_beads = copies * system.n_beads
    path = directory / f"rollout-{copies}.h5"
    header = RolloutHeader({}, [t.name for t in trajectories],
                           np.arange(copies + 1) * system.n_beads, np.ones(copies))
    create_rollout_file(path, trajectories, header,
                        RolloutState(0, np.zeros((n_beads, history, 3)), np.zeros(1, np.uint8),
                                     0.0))
    return path


def main() -> None:
    args = parse_args()
    device = setup_device(args)
    dataset = electrolyte_dataset(args.data)
    name = args.system or dataset.names[0]
    configs = load_variant_configs(args)
    system, vocabulary = cg_system(dataset, name, configs["baseline"])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    rows, results = [], {}
    generator = torch.Generator(device=device).manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            config = configs[variant]
            simulator = untrained_simulator(config, vocabulary).to(device=device,
                                                                   dtype=torch.float32).eval()
            refinement = untrained_refinement(config.rollout, config.score.n_levels)
            for copies in args.copies:
                batch = replicated_batch(system, config.data.history, copies, device)
                history = batch[keys.POS_HISTORY]
                saver = StreamRecorder(
                    streamed_file(Path(tmp), system, copies, config.data.history), history,
                    generator, RolloutState(0, history.cpu().double().numpy(),
                                            generator.get_state().numpy(), 0.0),
                    flush_seconds=0.0)

                def run(steps: int, batch=batch, refinement=refinement, saver=saver,
                        simulator=simulator) -> float:
                    """Wall seconds of the stepping loop (the embedding excluded)."""
                    return rollout(simulator, batch, steps, refinement,
                                   on_save=saver, keep_frames=False,
                                   noise=gaussian_noise(generator),
                                   show_progress=False).wall_seconds

                run(2)  # warm-up
                step_ms = 1e3 * float(np.median([run(1) for _ in range(args.steps)]))
                with profile(activities=activities) as prof:
                    wall = run(args.steps)
                stages = exclusive_ms(prof.events())
                embedding = stages.pop(profiling.EMBEDDING)
                profiled_ms = 1e3 * wall / args.steps
                share = {k: v / args.steps / profiled_ms for k, v in stages.items()}
                share["other"] = 1.0 - sum(share.values())
                per_step = {k: v * step_ms for k, v in share.items()}
                key = f"{variant} / {copies} systems"
                results[key] = {"variant": variant, "systems": copies,
                                "beads": batch.num_nodes, "step_ms": step_ms,
                                "embedding_ms": embedding, "stages_ms": per_step,
                                "score_evaluations": refinement.refine_levels}
                rows.append([variant, copies, step_ms]
                            + [f"{100 * per_step[s] / step_ms:.1f}" for s in
                               (*STEP_STAGES, "other")])
    short = [s.removeprefix("eqcg.") for s in STEP_STAGES]
    print(f"system {name} ({system.n_beads} beads per copy); device {device}, "
          f"{torch.get_num_threads()} thread(s); {args.steps} profiled steps; "
          "stage columns in % of the step")
    print(format_table(["variant", "systems", "ms/step", *short, "other"], rows))
    path = write_json(args.out, {
        "benchmark": "step_breakdown", "environment": environment(device),
        "data": str(dataset.path), "system": name,
        "configs": {v: str(getattr(args, f"{v}_config")) for v in VARIANTS},
        "overrides": args.overrides, "steps": args.steps, "results": results,
    })
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


def plot(results: dict, path: Path) -> None:
    """Stacked horizontal bars: milliseconds per stage of each variant and batch size."""
    plt = pyplot()
    labels = list(results)
    stages = [*STEP_STAGES, "other"]
    figure, ax = plt.subplots(figsize=(9, 0.6 * len(labels) + 1.8))
    left = np.zeros(len(labels))
    for stage in stages:
        values = np.array([results[k]["stages_ms"][stage] / results[k]["step_ms"] * 100
                           for k in labels])
        ax.barh(labels, values, left=left, label=stage.removeprefix("eqcg."))
        left += values
    ax.set_xlabel("share of a rollout step (%)")
    ax.invert_yaxis()
    ax.legend(ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
