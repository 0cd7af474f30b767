"""Simulated time per wall-clock time: the learned simulators against LAMMPS, same system.

    python benchmarks/learned_vs_lammps.py                   # electrolyte `tiny`, 1 and 50 boxes
    python benchmarks/learned_vs_lammps.py --preset small    # the `small` box (~30 min of MD)
    python benchmarks/learned_vs_lammps.py --data data/electrolyte --system NAME --copies 1 8

Without ``--data`` one system of the electrolyte ``--preset`` is generated with LAMMPS
(``tiny``: about a minute) into ``benchmarks/results/data/``. LAMMPS' speed is read from its log
(``DATA/lammps/<system>/log.lammps``): the ``Performance:`` line of the last run, which is the
NVT production, and, as a lower bound, the production's simulated time over the wall time of
the whole LAMMPS job (minimisation, compression and NPT included).

The learned simulators roll the same CG system out from its first recorded frames. One learned
step stands for ``--dilation`` recorded frames of ``--frame-interval`` each (default: the
paper's 100 frames of 2 ps = 0.2 ns), so speed = ``dilation * frame_interval`` per wall-clock
second of one step. The wall time of a step does not depend on which frames fill the history
(the history is taken one recorded frame apart, since short trajectories have too few frames
for the real dilation) nor on the weights: the models are untrained (see
``common.UNTRAINED_ACCELERATION_SCALE`` for the two settings that keep them from blowing up
without changing the work done). Steps are timed with and
without the configured refinement, alternating between the variants, each from the same
starting state; the table reports medians. ``--copies 1 50`` (the default) times one system and
50 copies batched into one graph, as a rollout of many systems runs, and reports the total
simulated time of all copies. ``--match-parameters`` widens or narrows the baseline's
``latent_dim`` to the equivariant model's parameter count (as ``step_cost.py`` does);
``--compile`` adds each variant with ``torch.compile``'d networks (compiled before timing).

LAMMPS ran single-threaded; torch gets ``--threads`` (default 1) CPU threads.
Writes ``benchmarks/results/learned_vs_lammps.{json,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import torch
from common import (
    RESULTS_DIR,
    SECONDS_PER_DAY,
    VARIANTS,
    add_config_arguments,
    add_device_arguments,
    cg_system,
    count_parameters,
    electrolyte_dataset,
    environment,
    format_table,
    interleaved_times,
    lammps_runs,
    load_variant_configs,
    match_baseline_width,
    median,
    pyplot,
    replicated_batch,
    rollout_step_measure,
    setup_device,
    step_refinements,
    untrained_simulator,
    write_json,
)

from eqcg.systems.generate import LAMMPS_DIR
from eqcg.systems.lammps_runner import LOG_FILE, lammps_wall_seconds

# Per-day units LAMMPS prints, and how many of the dataset's time unit each holds.
DAY_UNITS = {"real": ("ns/day", 1000.0), "lj": ("tau/day", 1.0)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="dataset directory holding lammps/<system>/log.lammps "
                             "(default: generate one system of --preset)")
    parser.add_argument("--preset", default="tiny", help="electrolyte preset without --data")
    parser.add_argument("--system", help="system of --data (default: the first)")
    add_config_arguments(parser)
    parser.add_argument("--dilation", type=int, default=100,
                        help="recorded frames per learned step (paper: 100)")
    parser.add_argument("--frame-interval", type=float, default=2.0,
                        help="time between recorded frames in the dataset's time unit "
                             "(paper: 2 ps)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 50],
                        help="batch sizes to time: copies of the system in one graph")
    parser.add_argument("--match-parameters", action="store_true",
                        help="size the baseline to the equivariant model's parameter count")
    parser.add_argument("--compile", action="store_true",
                        help="also measure each variant with torch.compile'd networks")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1)
    add_device_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "learned_vs_lammps.json")
    return parser.parse_args()


def plot(rates: dict[str, float], unit: str, path: Path) -> None:
    """Horizontal bars of simulated time per day, log scale."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(8, 0.5 * len(rates) + 1.2))
    labels = list(rates)
    ax.barh(labels, [rates[k] for k in labels],
            color=["grey" if k.startswith("LAMMPS") else "tab:blue" for k in labels])
    ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    device = setup_device(args)
    dataset = electrolyte_dataset(args.data, args.preset)
    name = args.system or dataset.names[0]
    trajectory = dataset[name]
    unit, per_unit = DAY_UNITS[dataset.units]
    workdir = dataset.path.parent / LAMMPS_DIR / name
    production = lammps_runs(workdir / LOG_FILE)[-1]
    if production.unit != unit:
        raise SystemExit(f"LAMMPS reports {production.unit} but the dataset is in "
                         f"{dataset.units} units")
    produced = float(trajectory.time[-1] - trajectory.time[0])
    job_seconds = lammps_wall_seconds(workdir)
    whole_job = produced / per_unit / job_seconds * SECONDS_PER_DAY

    configs = load_variant_configs(args)
    system, vocabulary = cg_system(dataset, name, configs["baseline"])
    if args.match_parameters:
        target = count_parameters(untrained_simulator(configs["equivariant"], vocabulary))
        width = match_baseline_width(configs["baseline"], vocabulary, target)
        configs["baseline"] = dataclasses.replace(
            configs["baseline"], model=dataclasses.replace(configs["baseline"].model,
                                                           latent_dim=width))
    step_time = args.dilation * args.frame_interval
    time_unit = "ps" if dataset.units == "real" else "tau"

    measures, row_labels, params, refinements = {}, {}, {}, {}
    generator = torch.Generator(device=device).manual_seed(0)
    modes = ("eager", "compiled") if args.compile else ("eager",)
    for variant, mode in itertools.product(VARIANTS, modes):
        config = configs[variant]
        simulator = untrained_simulator(config, vocabulary).to(device=device,
                                                               dtype=torch.float32).eval()
        params[variant] = count_parameters(simulator)
        if mode == "compiled":
            simulator.compile_networks()
        name_of = variant if mode == "eager" else f"{variant} (compiled)"
        steps = step_refinements(config)
        refinements[variant] = steps[-1][0]
        for copies in args.copies:
            batch = replicated_batch(system, config.data.history, copies, device)
            for label, refinement in steps:
                key = f"{name_of} / {label} / {copies} systems"
                row_labels[key] = (name_of, label, copies)
                measures[key] = rollout_step_measure(simulator, batch, refinement, generator)
                if mode == "compiled":  # compile (each shape family) outside the timing
                    measures[key]()
    times = interleaved_times(measures, args.repeats, args.warmup)

    print(f"system {name}: {trajectory.n_atoms} atoms -> {system.n_beads} CG beads, "
          f"{dataset.units} units")
    print(f"LAMMPS production: {production.steps} MD steps on {production.procs} proc(s) in "
          f"{production.loop_seconds:.1f} s; whole LAMMPS job {job_seconds:.0f} s "
          f"for {produced:g} {time_unit} of production")
    print(f"learned step = {args.dilation} frames x {args.frame_interval:g} {time_unit} = "
          f"{step_time:g} {time_unit}; device {device}, {torch.get_num_threads()} thread(s); "
          f"parameters baseline {params['baseline']:,}, equivariant {params['equivariant']:,}")
    rows = [
        ["LAMMPS (production Performance line)", "-", 1, "-", production.per_day, "1"],
        ["LAMMPS (whole job, lower bound)", "-", 1, "-", whole_job,
         f"{whole_job / production.per_day:.2f}"],
    ]
    results = {}
    for key, runs in times.items():
        variant, label, copies = row_labels[key]
        per_step = median(runs)
        rate = copies * step_time / per_unit / per_step * SECONDS_PER_DAY
        rows.append([variant, label, copies, per_step, rate,
                     f"{rate / production.per_day:,.0f}"])
        results[key] = {"variant": variant, "refinement": label, "systems": copies,
                        "seconds_per_step": per_step, unit: rate,
                        "speedup": rate / production.per_day, "runs_s": runs}
    print()
    print(format_table(["simulator", "refinement", "systems", "wall s/step", unit,
                        "x LAMMPS"], rows))

    path = write_json(args.out, {
        "benchmark": "learned_vs_lammps",
        "environment": environment(device),
        "data": str(dataset.path),
        "system": {"name": name, "atoms": trajectory.n_atoms, "beads": system.n_beads},
        "copies": args.copies,
        "lammps": {"production": vars(production), "whole_job_lower_bound": whole_job,
                   "whole_job_seconds": job_seconds,
                   f"production_{time_unit}": produced},
        "learned_step": {"dilation": args.dilation, "frame_interval": args.frame_interval,
                         time_unit: step_time},
        "configs": {"baseline": str(args.baseline_config),
                    "equivariant": str(args.equivariant_config), "overrides": args.overrides,
                    "matched_parameters": args.match_parameters, "compiled": args.compile},
        "parameters": params,
        "refinement": refinements,
        "unit": unit,
        "results": results,
    })
    rates = {"LAMMPS (production)": production.per_day, "LAMMPS (whole job)": whole_job,
             **{key: value[unit] for key, value in results.items()}}
    plot(rates, unit, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
