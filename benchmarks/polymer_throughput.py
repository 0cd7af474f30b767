"""Polymer chains: learned steps of many chains batched against LAMMPS running one chain per core.

    python benchmarks/polymer_throughput.py                     # 3 `small` chains; 48-5,000 batched
    python benchmarks/polymer_throughput.py --copies 48 500 --repeats 3
    python benchmarks/polymer_throughput.py --data data/polymer --chains 4

Without ``--data`` ``--chains`` chains of the polymer ``--preset`` (``small``: 50-100 beads) are
generated with LAMMPS, one at a time, into ``benchmarks/results/data/``; with ``--data`` the
first ``--chains`` chains of that dataset are used. LAMMPS' speed of each chain, alone in its box
on one core, is the ``Performance:`` line of its production run (tau/day -> tau per wall second,
``r_i``); a core that runs the chains in equal shares one after another simulates
``r = n / sum(1 / r_i)`` chain·tau per second, and ``--cores`` cores (default: all of this
machine's) run one chain each: ``cores * r`` chain·tau/s.

The learned simulators (default polymer configs, untrained weights; see
``common.UNTRAINED_ACCELERATION_SCALE``) step ``--copies`` chains batched into one graph (the
chains in turn, so every one appears in equal shares), with and without the configured
refinement, timed as in ``learned_vs_lammps.py`` (medians of interleaved single steps). A step
of ``chains`` chains taking ``s`` seconds gives ``chains / s`` chain·steps/s, so at a learned
step of ``dt`` tau the model matches LAMMPS' throughput when

    chains * dt / s = cores * r,   i.e.   dt* = s * r * cores / chains   (tau).

Longer learned steps than ``dt*`` beat LAMMPS. The table also gives the speed against LAMMPS at
the step the polymer configs are trained at (``data.dilation`` recorded frames of the dataset's
frame interval: 1 x 5 tau for every polymer preset): ``trained step / dt*``. Torch gets
``--threads`` (default 1) threads, so the learned model uses one core against LAMMPS' ``cores``.
Writes ``benchmarks/results/polymer_throughput.{json,png}`` (with the process' peak memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
from pathlib import Path

import torch
from common import (
    RESULTS_DIR,
    SECONDS_PER_DAY,
    VARIANTS,
    LammpsRun,
    add_config_arguments,
    add_device_arguments,
    cg_systems,
    count_parameters,
    cycled_batch,
    environment,
    format_table,
    interleaved_times,
    lammps_runs,
    load_variant_configs,
    median,
    polymer_dataset,
    pyplot,
    rollout_step_measure,
    setup_device,
    step_refinements,
    untrained_simulator,
    write_json,
)

from eqcg.config import RolloutConfig
from eqcg.data.store import TrajectoryDataset
from eqcg.systems.generate import LAMMPS_DIR, RECORD_FILE
from eqcg.systems.lammps_runner import LOG_FILE


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="polymer dataset directory holding lammps/<chain>/log.lammps "
                             "(default: generate --chains chains of --preset)")
    parser.add_argument("--preset", default="small", help="polymer preset without --data")
    parser.add_argument("--chains", type=int, default=3,
                        help="distinct chains: generated, or the first of --data")
    add_config_arguments(parser, system="polymer")
    parser.add_argument("--copies", type=int, nargs="+", default=[48, 500, 5000],
                        help="chains batched into one learned graph")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="cores LAMMPS runs chains on, one chain each (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1)
    add_device_arguments(parser)
    parser.add_argument("--neighbor-search", nargs="+", default=["verlet"],
                        choices=["verlet", "device"],
                        help="rollout.neighbor_search of the refined steps, side by side")
    parser.add_argument("--steps", type=int, default=1,
                        help="learned steps per timed rollout (they share its first neighbour "
                             "search)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "polymer_throughput.json")
    return parser.parse_args()


def production_run(dataset: TrajectoryDataset, name: str) -> LammpsRun:
    """The production run (the log's last) of chain ``name``'s LAMMPS job, in tau/day."""
    run = lammps_runs(dataset.path.parent / LAMMPS_DIR / name / LOG_FILE)[-1]
    if run.unit != "tau/day":
        raise SystemExit(f"{name}: LAMMPS reports {run.unit}; polymer chains run in LJ units")
    return run


def generation_preset(dataset: TrajectoryDataset, name: str) -> str | None:
    """The preset that generated chain ``name`` (``None`` when its directory does not say)."""
    record = dataset.path.parent / LAMMPS_DIR / name / RECORD_FILE
    return json.loads(record.read_text())["preset"] if record.is_file() else None


def chains_per_core_rate(tau_per_second: list[float]) -> float:
    """Chain·tau per wall second of one core running each chain (tau/s alone) in equal shares."""
    return len(tau_per_second) / sum(1.0 / rate for rate in tau_per_second)


def break_even_step(seconds_per_step: float, chain_rate: float, cores: int, chains: int) -> float:
    """Learned step (tau) at which ``chains`` chains stepped in ``seconds_per_step`` match
    ``cores`` cores of LAMMPS at ``chain_rate`` chain·tau/s each."""
    return seconds_per_step * chain_rate * cores / chains


def searched(steps: list[tuple[str, RolloutConfig | None]], searches: list[str]
             ) -> list[tuple[str, RolloutConfig | None]]:
    """The refined ``steps`` once per neighbour search (labelled by it when there are several);
    the unrefined step as it is."""
    if len(searches) == 1:
        return [(label, r if r is None else dataclasses.replace(r, neighbor_search=searches[0]))
                for label, r in steps]
    return [(label, None) for label, r in steps if r is None] + [
        (f"{label}, {search} search", dataclasses.replace(r, neighbor_search=search))
        for label, r in steps if r is not None for search in searches]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def plot(results: dict[str, dict], trained_step: float, cores: int, path: Path) -> None:
    """Break-even learned step against chains batched, one line per variant and refinement."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    lines: dict[str, list[tuple[int, float]]] = {}
    for row in results.values():
        label = f"{row['variant']}, {row['refinement']}"
        lines.setdefault(label, []).append((row["chains"], row["break_even_step_tau"]))
    for label, points in lines.items():
        ax.plot(*zip(*sorted(points), strict=True), marker="o", label=label)
    ax.axhline(trained_step, color="grey", linestyle="--",
               label=f"trained step ({trained_step:g} tau)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chains batched in one learned graph (one thread)")
    ax.set_ylabel(f"break-even learned step (tau) vs LAMMPS on {cores} cores")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    device = setup_device(args)
    dataset = polymer_dataset(args.data, args.preset, args.chains)
    names = dataset.names[:args.chains]
    production = {name: production_run(dataset, name) for name in names}
    tau_per_second = {name: run.per_day / SECONDS_PER_DAY for name, run in production.items()}
    chain_rate = chains_per_core_rate(list(tau_per_second.values()))
    frame_interval = dataset[names[0]].frame_interval
    configs = load_variant_configs(args)
    trained_step = {v: configs[v].data.dilation * frame_interval for v in VARIANTS}

    measures, row_labels, params, beads, cg_beads = {}, {}, {}, {}, {}
    generator = torch.Generator(device=device).manual_seed(0)
    for variant in VARIANTS:
        config = configs[variant]
        systems, vocabulary = cg_systems(dataset, names, config)
        simulator = untrained_simulator(config, vocabulary).to(device=device,
                                                               dtype=torch.float32).eval()
        params[variant] = count_parameters(simulator)
        cg_beads.update({system.name: system.n_beads for system in systems})
        for copies in args.copies:
            batch = cycled_batch(systems, config.data.history, copies, device)
            beads[copies] = batch.num_nodes
            for label, refinement in searched(step_refinements(config), args.neighbor_search):
                key = f"{variant} / {label} / {copies} chains"
                row_labels[key] = (variant, label, copies)
                measures[key] = rollout_step_measure(simulator, batch, refinement, generator,
                                                     args.steps)
    times = interleaved_times(measures, args.repeats, args.warmup)

    results, rows = {}, []
    for key, runs in times.items():
        variant, label, chains = row_labels[key]
        per_step = median(runs)
        step = break_even_step(per_step, chain_rate, args.cores, chains)
        results[key] = {"variant": variant, "refinement": label, "chains": chains,
                        "beads": beads[chains], "seconds_per_step": per_step,
                        "chain_steps_per_second": chains / per_step,
                        "break_even_step_tau": step,
                        "speedup_at_trained_step": trained_step[variant] / step, "runs_s": runs}
        rows.append([variant, label, chains, beads[chains], per_step, chains / per_step, step,
                     f"{trained_step[variant] / step:.3g}"])

    print("LAMMPS, one chain alone on one core (production Performance line): " + ", ".join(
        f"{name} {run.atoms} beads {tau_per_second[name]:,.0f} tau/s ({run.cpu_percent}% CPU)"
        for name, run in production.items()))
    print(f"-> {chain_rate:,.0f} chain·tau/s per core, x {args.cores} cores = "
          f"{chain_rate * args.cores:,.0f} chain·tau/s")
    print(f"learned: device {device}, {torch.get_num_threads()} thread(s); parameters baseline "
          f"{params['baseline']:,}, equivariant {params['equivariant']:,}; trained step "
          f"{trained_step['baseline']:g} tau (dilation x {frame_interval:g} tau frames)")
    print()
    print(format_table(["simulator", "refinement", "chains", "beads", "wall s/step",
                        "chain·steps/s", "break-even step (tau)", "x LAMMPS at trained step"],
                       rows))

    path = write_json(args.out, {
        "benchmark": "polymer_throughput",
        "environment": environment(device),
        "data": str(dataset.path),
        "preset": generation_preset(dataset, names[0]),
        "chains": [{"name": name, "beads": production[name].atoms,
                    "cg_beads": cg_beads[name], "lammps_tau_per_second": tau_per_second[name],
                    "lammps_production": vars(production[name])}
                   for name in names],
        "copies": args.copies,
        "lammps": {"cores": args.cores, "chain_tau_per_second_per_core": chain_rate,
                   "chain_tau_per_second": chain_rate * args.cores},
        "frame_interval_tau": frame_interval,
        "trained_step_tau": trained_step,
        "dilation": {v: configs[v].data.dilation for v in VARIANTS},
        "configs": {"baseline": str(args.baseline_config),
                    "equivariant": str(args.equivariant_config), "overrides": args.overrides},
        "parameters": params,
        "peak_memory_mb": peak_memory_mb(),
        "results": results,
    })
    plot(results, trained_step["equivariant"], args.cores, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
