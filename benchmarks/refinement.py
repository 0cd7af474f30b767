"""Refinement schedules side by side: cost per learned step and what each buys in a long rollout.

    python benchmarks/refinement.py --run runs/poly-eq --data data/polymer-small
    python benchmarks/refinement.py --system polymer --preset small     # generates and trains
    python benchmarks/refinement.py --run R --data D --steps 10000      # the 1e4-step version

One trained model, its held-out (test) systems, the same starting frames and the same noise
seed for every schedule. Each schedule rolls all held-out systems out for ``--steps`` learned
steps (batched in one graph, through :func:`eqcg.run_rollout`), and is scored against the
systems' reference MD over their whole trajectories:

* score evaluations per step, counted by a hook on the score network during a timed rollout,
  and wall time per step relative to a bare step (short rollouts of every schedule, interleaved
  so that machine noise hits all alike, ``--time-steps`` steps each, medians of ``--repeats``);
* collisions (bead pairs closer than the unit system's threshold: 0.5 sigma for chains,
  1 Å) per system per 1000 steps, and the first colliding step (median and min over systems);
* blow-ups (systems whose positions went non-finite or jumped beyond the rollout's limit);
* the Wasserstein-1 distance between the CG bond-length distributions of rollout and MD;
* mean Rg per system vs MD (r², mean relative error) and the centre-of-mass diffusivity from
  the MSD vs MD (median ratio, fraction within 1.5x);
* the one-step calibration of the model on the same systems (:mod:`eqcg.evaluation.calibration`);
* periodic systems: the largest shift of an RDF's first peak from the MD's (pairs with Li+
  when there is Li+, e.g. Li+ to the ether beads).

Without ``--run``, the ``--system`` data of ``--preset`` are generated with LAMMPS and
``configs/<system>_equivariant.yaml`` is trained for ``--train-steps`` (into
``benchmarks/results/refinement_work/``). Stages already done are reused and an interrupted
rollout is resumed, so an interrupted benchmark continues where it stopped. Each schedule's
numbers are kept with its rollout (``result.json``), so several processes may share one label
and work directory, each with its own ``--schedules`` (e.g. the 200-evaluation paper schedule
beside the rest on a second core); every process times its schedules against its own bare step
and writes the table of all schedules finished so far:
``benchmarks/results/refinement_<label>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch
from common import (
    RESULTS_DIR,
    add_device_arguments,
    environment,
    format_table,
    interleaved_times,
    median,
    pyplot,
    setup_device,
    write_json,
)

from eqcg.cg.mapping import CGSettings
from eqcg.config import RolloutConfig, load_config
from eqcg.data.rollout_file import RUNNING, rollout_status
from eqcg.data.store import load_dataset
from eqcg.evaluation.beads import reference_beads, rollout_beads
from eqcg.evaluation.calibration import one_step_calibration
from eqcg.evaluation.properties import (
    DEFAULT_OPTIONS,
    default_rdf_r_max,
    species_pairs,
    trajectory_properties,
)
from eqcg.graphs.system import prepare_systems
from eqcg.metrics.agreement import agreement
from eqcg.metrics.stability import COLLISION_THRESHOLDS, collision_report
from eqcg.models.checkpoint import load_simulator
from eqcg.models.gaussian import gaussian_noise
from eqcg.simulation.rollout import RolloutFailure, rollout
from eqcg.simulation.runner import run_rollout, start_batch

# name -> rollout settings (the run's Langevin step size is put in: _schedule)
SCHEDULES: dict[str, RolloutConfig] = {
    "none": RolloutConfig(refine=False),
    "paper (20x10 constant)": RolloutConfig(refine_levels=20, langevin_steps=10,
                                            schedule="constant"),
    "previous default (10x5 constant)": RolloutConfig(refine_levels=10, langevin_steps=5,
                                                      schedule="constant"),
    "ncsn 10x5": RolloutConfig(refine_levels=10, langevin_steps=5, schedule="ncsn"),
    "ncsn 9x1 + denoise": RolloutConfig(refine_levels=9, langevin_steps=1, schedule="ncsn",
                                        denoise=True),
    "spread ncsn 4x1 + denoise": RolloutConfig(refine_levels=4, langevin_steps=1,
                                               schedule="ncsn", refine_start="spread",
                                               denoise=True),
    **{f"{start} {schedule} {levels}": RolloutConfig(refine_levels=levels, schedule=schedule,
                                                     refine_start=start)
       for start, schedule, levels in (
           ("spread", "geometric", 2), ("spread", "geometric", 5), ("spread", "geometric", 10),
           ("top", "geometric", 5), ("top", "geometric", 10), ("spread", "ancestral", 10),
           ("top", "ancestral", 10), ("spread", "ddim", 10), ("top", "ddim", 10))},
}
# schedule -> the schedule it adds the excluded-volume correction to (``--excluded-volume``)
WITH_EXCLUDED_VOLUME = {f"{name} + excluded volume": name for name in (
    "spread geometric 5", "spread geometric 10", "top geometric 5", "top geometric 10",
    "top ancestral 10", "spread ddim 10")}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="trained run directory (default: train one)")
    parser.add_argument("--data", type=Path, help="its dataset (required with --run)")
    parser.add_argument("--system", default="polymer", choices=["polymer", "electrolyte"])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--n-systems", type=int, default=None,
                        help="systems to generate (default: the preset's count)")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--set", action="append", default=[],
                        help="config override for the trained model (key=value)")
    parser.add_argument("--steps", type=int, default=1000, help="learned steps per rollout")
    parser.add_argument("--schedules", nargs="+", default=[*SCHEDULES, *WITH_EXCLUDED_VOLUME],
                        choices=[*SCHEDULES, *WITH_EXCLUDED_VOLUME], metavar="NAME")
    parser.add_argument("--seed", type=int, default=0, help="noise seed of every rollout")
    parser.add_argument("--excluded-volume", type=float, default=None,
                        help="distance of the excluded-volume schedules (default: 1.2 x the "
                             "collision threshold: 0.6 sigma, 1.2 Å)")
    parser.add_argument("--time-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default=None, help="results name (default: system)")
    parser.add_argument("--work", type=Path, default=RESULTS_DIR / "refinement_work")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the networks (timings and rollouts alike)")
    add_device_arguments(parser)
    return parser.parse_args()


def _trained_run(args: argparse.Namespace, device: torch.device) -> tuple[Path, Path]:
    """``(run, data)``: the given run, or one generated and trained here (resumable)."""
    if args.run is not None:
        if args.data is None:
            raise SystemExit("--run needs --data")
        return args.run, args.data
    from eqcg.systems.electrolyte import generate_electrolyte
    from eqcg.systems.polymer import generate_polymer
    from eqcg.training.trainer import train

    data = args.work / f"{args.system}_{args.preset}"
    generate = generate_polymer if args.system == "polymer" else generate_electrolyte
    if not (data / "dataset.h5").exists():
        generate(data, preset=args.preset, n_systems=args.n_systems)
    run = args.work / f"{args.system}_{args.preset}_equivariant"
    if not (run / "checkpoints" / "best.pt").exists():
        config_path = Path(__file__).resolve().parents[1] / "configs"
        config = load_config(config_path / f"{args.system}_equivariant.yaml", args.set)
        train(config, data, run, max_steps=args.train_steps, device=str(device),
              resume=(run / "checkpoints" / "last.pt").exists())
    return run, data


def _schedule(name: str, run_refinement: RolloutConfig, excluded_volume: float
              ) -> RolloutConfig:
    """The refinement named ``name``, with the run's Langevin step size (the schedules fix
    everything else)."""
    if name in WITH_EXCLUDED_VOLUME:
        refinement = dataclasses.replace(SCHEDULES[WITH_EXCLUDED_VOLUME[name]],
                                         excluded_volume=excluded_volume)
    else:
        refinement = SCHEDULES[name]
    return dataclasses.replace(refinement, step_size=run_refinement.step_size)


def _timings(simulator, batch, refinements: dict[str, RolloutConfig], args
             ) -> dict[str, dict]:
    """Seconds per learned step and score-network calls per step of every schedule."""
    calls = {"n": 0}
    hook = simulator.score_network.register_forward_hook(
        lambda *_: calls.__setitem__("n", calls["n"] + 1))
    counted: dict[str, list[int]] = {name: [] for name in refinements}

    def measure(name: str):
        def run() -> float:
            calls["n"] = 0
            generator = torch.Generator(device=batch.batch.device).manual_seed(args.seed)
            try:
                result = rollout(simulator, batch, args.time_steps, refinements[name],
                                 noise=gaussian_noise(generator),
                                 show_progress=False)
                seconds = result.wall_seconds
            except RolloutFailure as exc:
                seconds = exc.result.wall_seconds
            counted[name].append(calls["n"])
            return seconds / args.time_steps
        return run

    try:
        times = interleaved_times({name: measure(name) for name in refinements}, args.repeats,
                                  warmup=1)
    finally:
        hook.remove()
    bare = median(times["none"])
    return {name: {"seconds_per_step": median(times[name]),
                   "relative_to_bare": median(times[name]) / bare,
                   "score_evaluations_per_step": counted[name][-1] / args.time_steps}
            for name in refinements}


def _quality(rollout_dir: Path, data: Path, settings: CGSettings, steps: int) -> dict:
    """Collisions, blow-ups, bond-length W1, Rg and diffusivity of one rollout vs the MD."""
    with load_dataset(rollout_dir / "rollout.h5") as rollouts, load_dataset(data) as reference:
        threshold = COLLISION_THRESHOLDS[rollouts.units]
        per_system, model_bonds, md_bonds = {}, [], []
        for system in rollouts:
            model = rollout_beads(system)
            md = reference_beads(reference[str(system.attrs["reference_system"])], settings)
            stability = collision_report(model.positions, model.box, model.pbc, threshold)
            bad = stability.first_nonfinite_frame
            finite = model.n_frames if bad is None else bad
            model = model.frames(slice(0, finite))
            r_max = default_rdf_r_max([model.box, md.box], DEFAULT_OPTIONS) if md.pbc else None
            props = trajectory_properties(model, DEFAULT_OPTIONS, r_max)
            md_props = trajectory_properties(md, DEFAULT_OPTIONS, r_max)
            model_bonds.append(props.bond_lengths.ravel())
            md_bonds.append(md_props.bond_lengths.ravel())
            species = "Li" if "Li" in md_props.diffusivity else next(iter(md_props.diffusivity))
            fit, md_fit = props.diffusivity.get(species), md_props.diffusivity[species]
            per_system[system.name] = {
                "collisions": int(stability.n_collisions.sum()),
                "collisions_per_1000_steps": float(stability.n_collisions.sum()) * 1000 / steps,
                "first_collision_step": stability.first_collision_frame,
                "blew_up": finite < steps + 1,
                "frames": int(finite),
                "rg_mean": props.rg_mean, "rg_mean_md": md_props.rg_mean,
                "diffusivity": fit.diffusivity if fit else float("nan"),
                "diffusivity_md": md_fit.diffusivity if md_fit else float("nan"),
                "bond_w1": float(scipy.stats.wasserstein_distance(model_bonds[-1],
                                                                  md_bonds[-1])),
                "rdf_first_peak": _rdf_peaks(props, md_props),
            }
    values = list(per_system.values())
    shifts = [abs(m - r) for v in values for m, r in v["rdf_first_peak"].values()]
    first = [v["first_collision_step"] for v in values]
    hit = [f for f in first if f is not None]
    rg, rg_md = (np.array([v[k] for v in values]) for k in ("rg_mean", "rg_mean_md"))
    ratio = np.array([v["diffusivity"] / v["diffusivity_md"] for v in values])
    return {
        "systems": per_system,
        "collisions_per_1000_steps_median": float(np.median(
            [v["collisions_per_1000_steps"] for v in values])),
        "collision_free_systems": sum(f is None for f in first),
        "first_collision_median": float(np.median([f if f is not None else steps
                                                   for f in first])),
        "first_collision_min": min(hit) if hit else None,
        "blow_ups": sum(v["blew_up"] for v in values),
        "bond_w1": float(scipy.stats.wasserstein_distance(np.concatenate(model_bonds),
                                                          np.concatenate(md_bonds))),
        "bond_std": float(np.concatenate(model_bonds).std()),
        "bond_std_md": float(np.concatenate(md_bonds).std()),
        "rg_r2": (agreement(rg_md, rg).to_dict()["pearson_r_squared"]
                  if len(values) >= 3 else None),  # needs 3 systems
        "rg_mean_relative_error": float(np.mean(np.abs(rg / rg_md - 1))),
        "diffusivity_ratio_median": float(np.nanmedian(ratio)),
        "diffusivity_within_1.5x": float(np.mean((ratio < 1.5) & (ratio > 1 / 1.5))),
        "rdf_peak_shift_max": float(np.nanmax(shifts)) if shifts else None,
    }


def _rdf_peaks(props, md_props) -> dict[str, tuple[float, float]]:
    """Species pair -> RDF peak position (model, MD) of the pairs with Li+ when there is Li+,
    else of every pair; empty without periodic boundaries."""
    if props.rdf is None:
        return {}
    names = props.species_names
    pairs = [(a, b) for a, b in species_pairs(len(names))
             if "Li" not in names or "Li" in (names[a], names[b])]
    return {f"{names[a]}|{names[b]}": (props.rdf.peak(a, b)[0], md_props.rdf.peak(a, b)[0])
            for a, b in pairs}


def _plot(path: Path, results: dict[str, dict]) -> None:
    plt = pyplot()
    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    evals = [results[n]["score_evaluations_per_step"] for n in names]
    panels = [("collisions_per_1000_steps_median", "collisions per system per 1000 steps"),
              ("bond_w1", "bond-length W1 to MD"),
              ("relative_to_bare", "wall time per step / bare step")]
    for ax, (key, label) in zip(axes, panels, strict=True):
        values = [results[n][key] for n in names]
        ax.scatter(evals, values)
        for name, x, y in zip(names, evals, values, strict=True):
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("score evaluations per learned step")
        ax.set_ylabel(f"{label} (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


RESULT_FILE = "result.json"


def _directory(work: Path, name: str) -> Path:
    return work / name.replace(" ", "_").replace("(", "").replace(")", "")


def main() -> None:
    args = _arguments()
    device = setup_device(args)
    run, data = _trained_run(args, device)
    simulator, config, metadata = load_simulator(run, map_location=device)
    simulator = simulator.to(device)
    if args.compile:
        simulator.compile_networks()
    run_refinement = config.rollout
    units = metadata.units
    excluded_volume = args.excluded_volume or 1.2 * COLLISION_THRESHOLDS[units]
    names = list(dict.fromkeys(["none", *args.schedules]))  # the bare step sets the time scale
    refinements = {name: _schedule(name, run_refinement, excluded_volume) for name in names}
    settings = CGSettings.from_config(config.data)
    test = list(metadata.test)
    with load_dataset(data) as dataset:
        systems = prepare_systems(dataset, settings, simulator.vocabulary, test)
    batch = start_batch(systems, simulator.history, config.data.dilation, 0,
                        torch.float32).to(device)
    timings = _timings(simulator, batch, refinements, args)
    label = args.label or args.system
    work = args.work / f"rollouts_{label}_{args.steps}"
    for name, refinement in refinements.items():
        out = _directory(work, name)
        started = time.perf_counter()
        status = rollout_status(out)
        if status in (None, RUNNING):  # not started, or interrupted: (re)start or resume it
            try:
                run_rollout(run, data, out, args.steps, systems=test, settings=refinement,
                            seed=args.seed, device=str(device), compile=args.compile,
                            show_progress=True, resume=status == RUNNING)
            except RolloutFailure as exc:
                print(f"{name}: {exc}")
        result = {**timings[name], **_quality(out, data, settings, args.steps),
                  "refinement": dataclasses.asdict(refinement),
                  "rollout_seconds": time.perf_counter() - started}
        write_json(out / RESULT_FILE, result)
        print(f"{name}: done ({result['rollout_seconds']:.0f} s)", flush=True)
    # every schedule finished so far under this label (other processes may run other schedules)
    results = {name: json.loads((_directory(work, name) / RESULT_FILE).read_text())
               for name in [*SCHEDULES, *WITH_EXCLUDED_VOLUME]
               if (_directory(work, name) / RESULT_FILE).exists()}
    calibration = one_step_calibration(simulator, systems, config.data.dilation)
    print(f"one-step calibration on the test systems: mean d² "
          f"{calibration.mean_mahalanobis_squared:.3f} (3 when calibrated), inside 68/95 %: "
          f"{calibration.coverage_68:.3f} / {calibration.coverage_95:.3f}")
    _write_tables(RESULTS_DIR / f"refinement_{label}", results, {
        "run": str(run), "data": str(data), "test_systems": test, "steps": args.steps,
        "seed": args.seed, "calibration": calibration.to_dict(),
        "environment": environment(device),
        "compiled": args.compile,
    })


def _write_tables(stem: Path, results: dict[str, dict], about: dict) -> None:
    """Print the table; write it as Markdown, everything as JSON, and the plot."""
    headers = ["schedule", "evals/step", "time/bare", "collisions/1000 (median)",
               "collision-free", "first collision (median, min)", "blow-ups", "bond W1",
               "bond std (MD)", "Rg r²", "Rg rel. err", "D / D_MD (median)", "D within 1.5x",
               "RDF peak shift (max)"]
    n_systems = len(about["test_systems"])
    rows = [[name, r["score_evaluations_per_step"], r["relative_to_bare"],
             r["collisions_per_1000_steps_median"],
             f"{r['collision_free_systems']}/{n_systems}",
             f"{r['first_collision_median']:.0f}, {r['first_collision_min']}", r["blow_ups"],
             r["bond_w1"], f"{r['bond_std']:.3f} ({r['bond_std_md']:.3f})", r["rg_r2"],
             r["rg_mean_relative_error"], r["diffusivity_ratio_median"],
             r["diffusivity_within_1.5x"], r["rdf_peak_shift_max"]]
            for name, r in results.items()]
    print(format_table(headers, rows))
    write_json(stem.with_suffix(".json"), {**about, "results": results})
    stem.with_suffix(".md").write_text(
        "| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n"
        + "\n".join("| " + " | ".join(str(c) if not isinstance(c, float) else f"{c:.4g}"
                                       for c in row) + " |" for row in rows) + "\n")
    _plot(stem.with_suffix(".png"), results)
    print(f"wrote {stem}.{{json,md,png}}")


if __name__ == "__main__":
    main()
