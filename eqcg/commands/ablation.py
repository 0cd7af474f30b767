"""``eqcg ablate SPEC.yaml``: train every variant alike, roll each out, evaluate, compare.

A spec names one dataset (generated on the spot by a system of
:mod:`eqcg.systems.registry`, or an existing one), one base config shared by all variants, and
per variant a list of ``--set`` style overrides::

    data: {generate: polymer, preset: tiny, n_systems: 6, seed: 0}   # or {path: DIR}
    config: ../polymer_baseline.yaml        # relative to the spec file
    set: [train.max_steps=300]              # shared overrides
    rollout: {steps: 40, save_every: 1, deterministic: false, seed: 0}
    evaluate: {group_by: length_group}      # optional: numbers per group of test systems too
    variants:
      baseline: []
      equivariant: [model.variant=equivariant, model.covariance=full]
      equivariant-no-refinement: [model.variant=equivariant, rollout.refine=false]

Every variant sees the same data, split, seed and step budget and is rolled out on the same
test systems (``rollout.deterministic``, if given, for every variant). Variants whose configs
differ only in their ``rollout`` section share one trained run (that of the first of them),
each rolled out with its own settings. Stages already done (a finished run, a written
rollout, a report) are skipped, so an interrupted ablation resumes. ``out/variants.json``
records each variant's run and parameter count.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqcg.config import Config, load_config, save_config
from eqcg.errors import ConfigError
from eqcg.models.registry import check_variant
from eqcg.runtime.arguments import at_least
from eqcg.runtime.atomic import write_text_atomic
from eqcg.runtime.interrupt import Interrupted, interruptible, signal_of
from eqcg.runtime.names import check_name
from eqcg.runtime.outputs import claim_output
from eqcg.runtime.run_info import write_run_info
from eqcg.runtime.yaml_files import read_yaml
from eqcg.systems.registry import DEFAULT_PRESET, SystemKind, get_system_kind

if TYPE_CHECKING:  # the runner imports torch: a spec loads without it
    from eqcg.simulation.runner import RolloutOptions

logger = logging.getLogger(__name__)

_DATA_KEYS = {"generate", "preset", "n_systems", "seed", "path", "jobs"}
_ROLLOUT_KEYS = {"steps", "save_every", "deterministic", "seed", "device"}
_EVALUATE_KEYS = {"group_by"}
_SPEC_KEYS = {"data", "config", "set", "rollout", "evaluate", "variants"}
VARIANTS_FILE = "variants.json"


@dataclass
class AblationSpec:
    """A validated ablation spec (see module docstring)."""

    path: Path
    data: dict[str, Any]
    config: Path
    shared: list[str]
    rollout: dict[str, Any]
    evaluate: dict[str, Any]
    variants: dict[str, list[str]]


def _check_keys(found: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(found) - allowed, key=str)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known})")


def _mapping(raw: dict, key: str, where: str) -> dict:
    """Section ``key`` of ``raw`` as a mapping (empty when absent); :class:`ConfigError`
    naming what it is instead."""
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a mapping ({key}: {{name: value, ...}}), got "
                          f"{type(value).__name__} {value!r}")
    return dict(value)


def _overrides(value: object, where: str) -> list[str]:
    """A list of ``--set`` style overrides; :class:`ConfigError` for anything else."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of key=value overrides, got {value!r}")
    return value


def _check_values(rollout: dict, data: dict, where: str) -> None:
    """The types and ranges of the rollout and data settings."""
    for key, minimum in (("steps", 1), ("save_every", 1), ("seed", 0)):
        at_least(f"{where}: rollout.{key}", rollout[key], minimum)
    if not isinstance(rollout.get("deterministic", False), bool):
        raise ConfigError(f"{where}: rollout.deterministic must be true or false, got "
                          f"{rollout['deterministic']!r}")
    for key, minimum in (("n_systems", 1), ("seed", 0), ("jobs", 1)):
        if data.get(key) is not None:
            at_least(f"{where}: data.{key}", data[key], minimum)
    for key in ("path", "generate", "preset"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{where}: data.{key} must be a text, got {data[key]!r}")


def _generated_kind(data: dict, where: str) -> SystemKind:
    """The registered system ``data.generate`` names, with its ``data.preset`` checked."""
    try:
        kind = get_system_kind(data["generate"])
        kind.preset(data.get("preset", DEFAULT_PRESET))
    except ConfigError as exc:
        raise ConfigError(f"{where}: data: {exc}") from None
    return kind


def load_spec(path: str | os.PathLike) -> AblationSpec:
    """Read and validate an ablation spec; every variant's config is validated too, and every
    variant name must be a safe single path component (it names directories)."""
    path = Path(path)
    raw = read_yaml(path, "ablation spec") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an ablation spec must be a mapping")
    _check_keys(raw, _SPEC_KEYS, str(path))
    for key in ("data", "config", "variants"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
    data = _mapping(raw, "data", str(path))
    _check_keys(data, _DATA_KEYS, f"{path}: data")
    if ("generate" in data) == ("path" in data):
        raise ConfigError(f"{path}: data needs exactly one of 'generate' or 'path'")
    rollout = {"steps": 20, "save_every": 1, "seed": 0,
               **_mapping(raw, "rollout", str(path))}
    _check_keys(rollout, _ROLLOUT_KEYS, f"{path}: rollout")
    _check_values(rollout, data, str(path))
    if "generate" in data:
        _generated_kind(data, str(path))
    evaluate = _mapping(raw, "evaluate", str(path))
    _check_keys(evaluate, _EVALUATE_KEYS, f"{path}: evaluate")
    variants = raw["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: variants must map names to lists of overrides")
    if not isinstance(raw["config"], str):
        raise ConfigError(f"{path}: config must be a file name, got {raw['config']!r}")
    spec = AblationSpec(
        path=path,
        data=data,
        config=path.parent / raw["config"],
        shared=_overrides(raw.get("set"), f"{path}: set"),
        rollout=rollout,
        evaluate=evaluate,
        variants={check_name(k, f"{path}: variant name"):
                  _overrides(v, f"{path}: variant {k!r}") for k, v in variants.items()},
    )
    for name in spec.variants:
        variant_config(spec, name)
    return spec


def variant_config(spec: AblationSpec, name: str) -> Config:
    """The resolved config of variant ``name`` (its variant options filled in)."""
    config = load_config(spec.config, spec.shared + spec.variants[name])
    return replace(
        config, model=check_variant(config.model, f"{spec.config} (variant {name!r})")
    )


def training_runs(spec: AblationSpec) -> dict[str, str]:
    """Variant name -> the variant whose run it rolls out: the first variant whose config is
    the same up to its ``rollout`` section, itself if none."""
    def trained(name: str) -> dict[str, Any]:
        plain = variant_config(spec, name).to_dict()
        del plain["rollout"]
        return plain

    owners: list[tuple[dict[str, Any], str]] = []
    runs = {}
    for name in spec.variants:
        config = trained(name)
        runs[name] = next((owner for other, owner in owners if other == config), name)
        if runs[name] == name:
            owners.append((config, name))
    return runs


def _dataset(spec: AblationSpec, out: Path) -> Path:
    if "path" in spec.data:
        return (spec.path.parent / spec.data["path"]).resolve()
    target = out / "data"
    if (target / "dataset.h5").exists():
        return target
    kind = get_system_kind(spec.data["generate"])
    with claim_output(target, "dataset", resume=True):
        kind.generate(target, preset=spec.data.get("preset", DEFAULT_PRESET),
                      seed=spec.data.get("seed", 0), n_systems=spec.data.get("n_systems"),
                      jobs=spec.data.get("jobs"))
    return target


def run_ablation(
    spec_path: str | os.PathLike, out: str | os.PathLike, device: str = "auto", jobs: int = 1
) -> Path:
    """Run the ablation of ``spec_path`` into ``out``; return the comparison directory.

    Layout: ``out/data`` (if generated), ``out/runs/<variant>``, ``out/rollouts/<variant>``,
    ``out/reports/<variant>``, ``out/comparison``. ``out`` is claimed as an ablation
    (:func:`~eqcg.runtime.outputs.claim_output`; finished stages in it are reused). With
    ``jobs > 1`` up to that many trained runs (each with the variants that roll it out) are
    worked on at once, each in its own process (:mod:`eqcg.commands.variant_jobs`; their
    output in ``out/logs``). Ctrl-C and SIGTERM stop it, generation and jobs included, keeping
    what is finished for the next call.
    """
    at_least("jobs", jobs, 1)
    spec = load_spec(spec_path)
    out = Path(out)
    try:
        with interruptible(), claim_output(out, "ablation", resume=True):
            return _run(spec, out, device, jobs)
    except KeyboardInterrupt as exc:
        raise Interrupted(f"{str(exc) or 'interrupted'}; {out} keeps the finished stages: run "
                          "the same command to continue", signal_of(exc)) from None


def _run(spec: AblationSpec, out: Path, device: str, jobs: int) -> Path:
    """The stages of :func:`run_ablation`: data, then per variant train, roll out and
    evaluate (in ``jobs`` processes first when ``jobs > 1``), then compare."""
    from eqcg.evaluation import compare
    from eqcg.simulation.refinement import score_evaluations

    write_run_info(out, None, None, [], extra={"spec": str(spec.path), "jobs": jobs})
    data = _dataset(spec, out)
    runs = training_runs(spec)
    if jobs > 1:
        from eqcg.commands.variant_jobs import run_variant_jobs

        run_variant_jobs(spec.path, runs, out, data, device, jobs)
    reports, record = [], {}
    for name in spec.variants:
        reports.append(run_variant_stages(spec, out, data, name, runs[name], device))
        config = variant_config(spec, name)
        run_dir = out / "runs" / runs[name]
        record[name] = {"run": str(run_dir), "parameters": _parameters(run_dir),
                        "score_evaluations_per_step":
                            score_evaluations(config.rollout, config.score.n_levels)}
        write_text_atomic(out / VARIANTS_FILE, json.dumps(record, indent=2))
    compare(reports, out / "comparison", overwrite=True)
    return out / "comparison"


def run_variant_stages(
    spec: AblationSpec, out: Path, data: Path, name: str, run: str, device: str
) -> Path:
    """Train variant ``name``'s run (when ``run``, the variant whose run it rolls out, is
    itself), roll it out and evaluate it, each stage unless already done; its report
    directory."""
    from eqcg.simulation.runner import RolloutOptions

    config = variant_config(spec, name)
    run_dir = out / "runs" / run
    if run == name:
        _train_variant(config, data, run_dir, device)
    changes = ({"deterministic": spec.rollout["deterministic"]}
               if "deterministic" in spec.rollout else {})
    options = RolloutOptions(save_every=spec.rollout["save_every"], changes=changes,
                             seed=spec.rollout["seed"], device=spec.rollout.get("device", device),
                             settings=config.rollout)
    rollout_dir = _roll_out_variant(name, run_dir, data, out / "rollouts" / name,
                                    spec.rollout["steps"], options)
    return _evaluate_variant(rollout_dir, data, out / "reports" / name,
                             spec.evaluate.get("group_by"))


def _parameters(run_dir: Path) -> int:
    """Trainable parameters of the model a run holds (embedding, dynamics and score)."""
    from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST, build_simulator, load_checkpoint

    path = run_dir / CHECKPOINT_DIR / LAST
    simulator, _ = build_simulator(load_checkpoint(path), str(path))
    return sum(p.numel() for p in simulator.parameters() if p.requires_grad)


def _train_variant(config: Config, data: Path, run_dir: Path, device: str) -> Path:
    """Train (or finish training) one variant unless its run reached ``train.max_steps``."""
    from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint
    from eqcg.training.trainer import train

    last = run_dir / CHECKPOINT_DIR / LAST
    if not (last.exists() and load_checkpoint(last)["step"] >= config.train.max_steps):
        train(config, data, run_dir, resume=last.exists(), device=device)
    save_config(config, run_dir / "config.yaml")
    return run_dir


def _roll_out_variant(
    name: str, run_dir: Path, data: Path, rollout_dir: Path, steps: int, options: RolloutOptions
) -> Path:
    """Roll one variant out, or continue its interrupted rollout; a finished one is kept.

    A rollout that blows up is logged and kept: its frames are evaluated like any other's.
    """
    from eqcg.data.rollout_file import RUNNING, rollout_status
    from eqcg.simulation.rollout import RolloutFailure
    from eqcg.simulation.runner import run_rollout

    status = rollout_status(rollout_dir)
    if status in (None, RUNNING):
        try:
            run_rollout(run_dir, data, rollout_dir, steps,
                        options=replace(options, resume=status == RUNNING))
        except RolloutFailure as failure:
            logger.warning("variant %s: %s", name, failure)
    return rollout_dir


def _evaluate_variant(rollout_dir: Path, data: Path, report_dir: Path,
                      group_by: str | None) -> Path:
    """Evaluate one variant's rollout unless its report exists."""
    from eqcg.evaluation import evaluate

    if not (report_dir / "metrics.json").exists():
        evaluate(rollout_dir, data, report_dir, group_by=group_by)
    return report_dir
