"""The ``eqcg`` command line (also ``python -m eqcg``).

Exit codes: 0 success, 1 a simulation or rollout failed, 2 bad input (data, config,
checkpoint, arguments, an output that cannot be written), 3 an internal error (a bug),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from eqcg.config import RolloutConfig
from eqcg.errors import ConfigError, EqcgError, SimulationError
from eqcg.models.run_files import BEST, LAST
from eqcg.runtime.arguments import COUNT, INDEX, POSITIVE, SEED
from eqcg.runtime.boundary import describe_os_error
from eqcg.runtime.interrupt import Interrupted
from eqcg.systems.registry import DEFAULT_PRESET, SystemKind, get_system_kind, system_kinds

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_EXAMPLES = """examples:
  eqcg ablate configs/ablation/demo.yaml --out eqcg-demo
  eqcg generate polymer --preset tiny --out data/polymer
  eqcg train configs/polymer_equivariant.yaml --data data/polymer --out runs/poly-eq
  eqcg rollout runs/poly-eq --data data/polymer --steps 200 --out rollouts/poly-eq
  eqcg simulate runs/poly-eq --topology chain.data --trajectory chain.dump --steps 200 \
       --out rollouts/chain
  eqcg simulate runs/poly-eq --generate-history polymer --steps 200 --out rollouts/new-chain
  eqcg evaluate rollouts/poly-eq --reference data/polymer --out reports/poly-eq
  eqcg compare reports/poly-base reports/poly-eq --out reports/comparison
  eqcg check-equivariance runs/poly-eq
  torchrun --nproc_per_node=2 -m eqcg train configs/polymer_baseline.yaml --data ... --out ...
"""


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def _cmd_generate(args: argparse.Namespace) -> None:
    from eqcg.data.store import load_dataset
    from eqcg.runtime.interrupt import interruptible
    from eqcg.runtime.outputs import claim_output

    kind = get_system_kind(args.system)
    with interruptible(), claim_output(args.out, "dataset", resume=True):  # (finished runs kept)
        path = kind.generate(args.out, preset=args.preset, seed=args.seed,
                             n_systems=args.n_systems, jobs=args.jobs)

    with load_dataset(path) as dataset:
        print(dataset.summary())


def _add_system_arguments(p: argparse.ArgumentParser, kinds: dict[str, SystemKind], name: str,
                          help_text: str) -> None:
    """Argument ``name`` choosing one of ``kinds`` (registered systems), and ``--preset``."""
    described = "; ".join(f"{kind.name}: {kind.description}" for kind in kinds.values())
    p.add_argument(name, choices=list(kinds), help=f"{help_text} ({described})")
    listed = "; ".join(f"{kind.name}: {', '.join(kind.presets)}" for kind in kinds.values())
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   choices=sorted({preset for kind in kinds.values() for preset in kind.presets}),
                   help=f"size and physics, each system's own ({listed})")


def _cmd_ingest(args: argparse.Namespace) -> None:
    from eqcg.data.ingest import ingest
    from eqcg.data.store import load_dataset

    path = ingest(args.topology, args.trajectory, args.out, fmt=args.format, name=args.name,
                  units=args.units, timestep=args.timestep, frame_interval=args.frame_interval,
                  temperature=args.temperature, overwrite=args.overwrite)
    with load_dataset(path) as dataset:
        print(dataset.summary())


def _cmd_info(args: argparse.Namespace) -> None:
    from eqcg.commands.info import describe

    print(describe(args.path))


def _resumed_config(run_dir: Path, overrides: list[str]):
    """The config ``--resume`` continues with when no config file is given: the one stored in
    the run's ``last.pt`` (its config.yaml may have been edited), with ``--set`` applied."""
    from eqcg.config import apply_overrides, config_from_dict
    from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint

    last = run_dir / CHECKPOINT_DIR / LAST
    if not last.is_file():
        raise ConfigError(f"--resume: no checkpoint at {last}")
    stored = load_checkpoint(last)["config"]
    return config_from_dict(apply_overrides(stored, overrides), where=f"{last} with --set")


def _cmd_train(args: argparse.Namespace) -> None:
    from eqcg.config import load_config
    from eqcg.training.trainer import train

    if args.config is None and not args.resume:
        raise ConfigError("train: give a config file (or --resume to continue a run)")
    if args.resume and args.config is None:
        config = _resumed_config(Path(args.out), args.set)
    else:
        config = load_config(args.config, args.set)
    result = train(config, args.data, args.out, max_steps=args.max_steps,
                   stop_after=args.stop_after, resume=args.resume, force_data=args.force_data,
                   device=args.device, dtype=_dtype(args.dtype), compile=args.compile,
                   command=sys.argv)
    print(f"trained {result.step} steps; best validation NLL {result.best_val_nll:.4f}; "
          f"checkpoints in {result.run_dir}/checkpoints")


def _rollout_options(args: argparse.Namespace):
    """The :class:`~eqcg.simulation.runner.RolloutOptions` of a ``rollout`` / ``simulate`` command
    line: each flag given of :class:`~eqcg.config.RolloutConfig` changes that field of the
    run's ``rollout`` section."""
    from eqcg.simulation.runner import RolloutOptions

    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(RolloutConfig)
               if getattr(args, f.name) is not None}
    return RolloutOptions(
        checkpoint=args.checkpoint, changes=changes, save_every=args.save_every,
        start_frame=args.start_frame, seed=args.seed, device=args.device,
        dtype=_dtype(args.dtype), command=sys.argv, resume=args.resume, compile=args.compile,
        overwrite=args.overwrite,
    )


def _cmd_rollout(args: argparse.Namespace) -> None:
    from eqcg.simulation.runner import run_rollout

    out = run_rollout(args.run, args.data, args.out, args.steps, systems=args.systems,
                      options=_rollout_options(args))
    print(f"rollout written to {out} (rollout.h5, <system>.pdb + <system>.dcd)")


def _cmd_simulate(args: argparse.Namespace) -> None:
    from eqcg.simulation.new_system import BuiltinSystem, SystemFiles, simulate

    if (args.generate_history is None) == (args.topology is None):
        raise ConfigError("simulate: give --topology and --trajectory (a system and its short "
                          "MD), or --generate-history for a built-in system")
    if args.generate_history is not None:
        given = [flag for flag, value in (("--trajectory", args.trajectory),
                                          ("--format", args.format), ("--units", args.units),
                                          ("--timestep", args.timestep),
                                          ("--frame-interval", args.frame_interval),
                                          ("--stride", args.stride), ("--name", args.name),
                                          ("--temperature", args.temperature))
                 if value is not None]
        if given:
            raise ConfigError(f"simulate: {', '.join(given)} describe a user's files; "
                              "--generate-history makes its own")
        system = BuiltinSystem(kind=args.generate_history, preset=args.preset,
                               seed=args.history_seed)
    else:
        if not args.trajectory:
            raise ConfigError("simulate: --topology needs --trajectory (a short MD run "
                              "supplying the model's history frames)")
        system = SystemFiles(topology=args.topology, trajectories=args.trajectory,
                             fmt=args.format, name=args.name, units=args.units,
                             timestep=args.timestep, frame_interval=args.frame_interval,
                             stride=args.stride, temperature=args.temperature)
    out = simulate(args.run, system, args.out, args.steps, options=_rollout_options(args))
    print(f"rollout written to {out} (rollout.h5, <system>.pdb + <system>.dcd)")


def _add_file_arguments(p: argparse.ArgumentParser, units_help: str) -> None:
    """What ``ingest`` and ``simulate`` ask about a user's MD files that they may not say."""
    p.add_argument("--format", default=None, choices=["lammps", "mdtraj", "ase"])
    p.add_argument("--name", default=None, help="system name (default: topology file stem)")
    p.add_argument("--units", default=None, choices=["real", "lj"], help=units_help)
    p.add_argument("--timestep", type=POSITIVE, default=None,
                   help="MD step in ps (real) or tau (lj), for LAMMPS dumps")
    p.add_argument("--frame-interval", type=POSITIVE, default=None,
                   help="time between frames when the files carry none")
    p.add_argument("--temperature", type=POSITIVE, default=None,
                   help="thermostat temperature of the MD (K, or epsilon/k_B for lj); models "
                        "trained with model.temperature_input need it")


# old spellings of rollout flags, kept as aliases
_FLAG_ALIASES = {"refine_levels": ("--levels",)}


def add_settings_arguments(p: argparse.ArgumentParser, section: type, prefix: str) -> None:
    """One option per field of the config ``section`` (e.g.
    :class:`~eqcg.config.RolloutConfig`): ``--<field>`` typed with the field's range or
    choices, ``--<field>/--no-<field>`` for a boolean; each defaults to ``None`` (the run's
    ``<prefix>.<field>``)."""
    group = p.add_argument_group(f"{prefix} settings (default: the run's {prefix} section)")
    for f in dataclasses.fields(section):
        names = (f"--{f.name.replace('_', '-')}", *_FLAG_ALIASES.get(f.name, ()))
        text = f"{f.metadata['help']} (default: {prefix}.{f.name})"
        if f.type in (bool, "bool"):
            group.add_argument(*names, dest=f.name, default=None, help=text,
                               action=argparse.BooleanOptionalAction)
        elif "choices" in f.metadata:
            group.add_argument(*names, dest=f.name, default=None, help=text,
                               choices=f.metadata["choices"])
        else:
            bounds = f.metadata["range"]
            group.add_argument(*names, dest=f.name, default=None, help=text, type=bounds,
                               metavar="INT" if bounds.integer else "X")


def _add_rollout_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``rollout`` and ``simulate`` share: the ``rollout`` settings, checkpoint,
    saving, device."""
    p.add_argument("--steps", type=COUNT, required=True, help="learned steps")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=BEST, choices=[BEST, LAST])
    p.add_argument("--save-every", type=COUNT, default=1)
    p.add_argument("--start-frame", type=INDEX, default=0,
                   help="first history frame of the starting trajectory")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the sampling noise")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (tens of seconds up front; pays on long "
                        "rollouts of the equivariant variant)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted rollout in OUT (same arguments; --steps may "
                        "grow)")
    p.add_argument("--overwrite", action="store_true", help="replace the rollout OUT holds")
    add_settings_arguments(p, RolloutConfig, "rollout")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from eqcg.evaluation.report import evaluate

    evaluate(args.rollout, args.reference, args.out, collision_threshold=args.collision_threshold,
             run=args.run, calibrate=not args.no_calibration, group_by=args.group_by,
             overwrite=args.overwrite, force_reference=args.force_reference)
    print(f"report written to {args.out}/report.md (metrics.json, plots)")


def _cmd_compare(args: argparse.Namespace) -> None:
    from eqcg.evaluation.comparison import compare

    compare(args.reports, args.out, overwrite=args.overwrite, allow_mixed=args.allow_mixed)
    print(f"comparison written to {args.out}/comparison.md")


def _cmd_ablate(args: argparse.Namespace) -> None:
    from eqcg.commands.ablation import run_ablation

    comparison = run_ablation(args.spec, args.out, device=args.device, jobs=args.jobs)
    print((comparison / "comparison.md").read_text())
    print(f"runs, rollouts (rollout.h5, <system>.pdb/.dcd) and reports are in {args.out}; "
          f"the comparison is in {comparison}")


def _cmd_check_equivariance(args: argparse.Namespace) -> None:
    from eqcg.runtime.atomic import write_text_atomic
    from eqcg.runtime.boundary import doing
    from eqcg.runtime.outputs import check_output_file
    from eqcg.simulation.equivariance import equivariance_table, format_equivariance_table

    out = check_output_file(args.out, overwrite=args.overwrite) if args.out else None
    table = equivariance_table(args.target, n_trials=args.trials, seed=args.seed)
    print(format_equivariance_table(table, args.trials))
    if out is not None:
        with doing("writing the equivariance table", out):
            write_text_atomic(out, json.dumps(table, indent=2))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eqcg`` command."""
    parser = argparse.ArgumentParser(
        prog="eqcg", description="Learned coarse-grained MD with E(3)-equivariant networks.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    kinds = system_kinds()
    p = add("generate", _cmd_generate, "run reference MD with LAMMPS and write a dataset")
    _add_system_arguments(p, kinds, "system", "built-in system")
    p.add_argument("--out", required=True, help="output directory (dataset + LAMMPS files)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--n-systems", type=COUNT, default=None, help="override the preset's count")
    p.add_argument("--jobs", type=COUNT, default=None,
                   help="parallel LAMMPS jobs (default: cores)")

    p = add("ingest", _cmd_ingest, "convert existing trajectories (LAMMPS, mdtraj, ASE)")
    p.add_argument("--topology", required=True, help="LAMMPS data, PDB/PSF/prmtop, or extxyz")
    p.add_argument("--trajectory", required=True, action="append",
                   help="trajectory file; repeat to join several in time")
    p.add_argument("--out", required=True)
    _add_file_arguments(p, "units of the files")
    p.add_argument("--overwrite", action="store_true", help="replace the dataset OUT holds")

    p = add("info", _cmd_info, "summarise a dataset, run directory or rollout")
    p.add_argument("path")

    p = add("train", _cmd_train, "train a simulator (torchrun for several GPUs/nodes)")
    p.add_argument("config", nargs="?", help="YAML config (not needed with --resume)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--max-steps", type=COUNT, default=None, help="override train.max_steps")
    p.add_argument("--stop-after", type=INDEX, default=None,
                   help="stop after N steps in all (time-limited jobs); continue with --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoints/last.pt (with the run's config unless a "
                        "config is given; only budget and logging keys may change)")
    p.add_argument("--force-data", action="store_true",
                   help="let --resume continue on another dataset than the run was trained on")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.latent_dim=64")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--compile", action="store_true",
                   help="train with torch.compile'd dynamics and score networks (a minute or "
                        "so up front on CPU; checkpoints are those of the eager model)")

    p = add("rollout", _cmd_rollout, "roll a trained simulator out and write trajectories")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--data", required=True)
    p.add_argument("--systems", nargs="+", default=None, help="default: the run's test split")
    _add_rollout_arguments(p)

    p = add("simulate", _cmd_simulate,
            "roll a trained simulator out on a new system: a topology and a short MD "
            "trajectory, or a built-in system's history run with LAMMPS (no dataset needed)")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--topology", default=None, help="LAMMPS data, PDB/PSF/prmtop, or extxyz")
    p.add_argument("--trajectory", default=None, action="append",
                   help="short MD trajectory holding the history frames; repeat to join "
                        "several in time")
    _add_file_arguments(p, "units of the files (default: the training data's)")
    p.add_argument("--stride", type=COUNT, default=None,
                   help="trajectory frames per learned step (default: the model's learned "
                        "step over the trajectory's frame interval)")
    _add_system_arguments(p, {name: kind for name, kind in kinds.items() if kind.history},
                          "--generate-history", "instead of files: run a short LAMMPS job of "
                          "one built-in system (in OUT/history) for the history")
    p.add_argument("--history-seed", type=SEED, default=0,
                   help="seed of the generated system (composition, start, thermostat)")
    _add_rollout_arguments(p)

    p = add("evaluate", _cmd_evaluate, "compare a rollout with the reference MD (report + plots)")
    p.add_argument("rollout")
    p.add_argument("--reference", required=True, help="reference dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--collision-threshold", type=POSITIVE, default=None,
                   help="collision distance (default: 1 Å for real units, 0.5 sigma for LJ)")
    p.add_argument("--run", default=None,
                   help="run whose one-step calibration is measured (default: the rollout's)")
    p.add_argument("--no-calibration", action="store_true",
                   help="skip the calibration of the model's one-step predictions")
    p.add_argument("--group-by", default=None, metavar="ATTR",
                   help="also summarise per value of this reference-system attribute "
                        "(e.g. length_group: trained vs longer polymer chains)")
    p.add_argument("--overwrite", action="store_true", help="replace the report OUT holds")
    p.add_argument("--force-reference", action="store_true",
                   help="evaluate against a reference other than the dataset the rollout "
                        "started from (the report says so)")

    p = add("compare", _cmd_compare, "put several evaluation reports side by side")
    p.add_argument("reports", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace the comparison OUT holds")
    p.add_argument("--allow-mixed", action="store_true",
                   help="compare reports over different systems or in different unit systems")

    p = add("ablate", _cmd_ablate,
            "train, roll out, evaluate and compare several variants on the same data")
    p.add_argument("spec", help="ablation spec YAML, e.g. configs/ablation/demo.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=COUNT, default=1,
                   help="trained runs worked on at once, each in its own process with "
                        "cores / JOBS torch threads and its output in OUT/logs (default 1)")

    p = add("check-equivariance", _cmd_check_equivariance,
            "measure E(3) equivariance errors of every registered variant (a run dir or a config)")
    p.add_argument("target", help="run directory, checkpoint or YAML config")
    p.add_argument("--trials", type=COUNT, default=5)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace the file OUT names")
    return parser


@contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """eqcg's own warnings print as ``eqcg <command>: warning: <message>`` (others as Python
    prints them) while the block runs."""
    previous = warnings.formatwarning
    package = str(Path(__file__).resolve().parents[1])

    def format_warning(message: Warning | str, category: type[Warning], filename: str,
                       lineno: int, line: str | None = None) -> str:
        if str(Path(filename).resolve()).startswith(package):
            return f"{command}: warning: {message}\n"
        return previous(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Nothing escapes as a traceback: eqcg's errors, the operating system's (read-only, full
    disk, not a directory ...) and decode errors are one line naming the file; anything else is
    an internal error (exit code 3; ``EQCG_TRACEBACK=1`` prints the traceback).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or arguments argparse refused (it printed why)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    command = f"eqcg {args.command}"
    try:
        with _warnings_as_lines(command):
            args.handler(args)
    except SimulationError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except EqcgError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        print(f"{command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED
    except OSError as exc:
        print(f"{command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (UnicodeError, json.JSONDecodeError) as exc:
        print(f"{command}: error: a file could not be decoded ({exc})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if os.environ.get("EQCG_TRACEBACK"):
            traceback.print_exc()
        print(f"{command}: internal error: {type(exc).__name__}: {exc} (a bug in eqcg: please "
              "report it; EQCG_TRACEBACK=1 shows where it happened)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
