"""``eqcg ablate SPEC.yaml``: train every variant alike, roll each out, evaluate, compare.

A spec names one dataset (generated on the spot with LAMMPS, or an existing one), one base
config shared by all variants, and per variant a list of ``--set`` style overrides::

    data: {generate: polymer, preset: tiny, n_systems: 6, seed: 0}   # or {path: DIR}
    config: ../polymer_baseline.yaml        # relative to the spec file
    set: [train.max_steps=300]              # shared overrides
    rollout: {steps: 40, save_every: 1, deterministic: false, seed: 0}
    evaluate: {group_by: length_group}      # optional: numbers per group of test systems too
    variants:
      baseline: []
      equivariant: [model.variant=equivariant, model.covariance=full]
      equivariant-no-refinement: [model.variant=equivariant, score.refine=false]

Every variant sees the same data, split, seed and step budget and is rolled out on the same
test systems. Variants whose configs differ only in how a rollout is refined
(:data:`REFINEMENT_KEYS`) share one trained run (that of the first of them), each rolled out
with its own refinement. Stages already done (a finished run, a written rollout, a report) are
skipped, so an interrupted ablation resumes. ``out/variants.json`` records each variant's run
and parameter count.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from eqcg.atomic import write_text_atomic
from eqcg.config import Config, load_config, save_config
from eqcg.errors import ConfigError
from eqcg.models.registry import check_variant
from eqcg.run_info import write_run_info

if TYPE_CHECKING:  # the runner imports torch: a spec loads without it
    from eqcg.simulate.runner import RolloutOptions

logger = logging.getLogger(__name__)

_DATA_KEYS = {"generate", "preset", "n_systems", "seed", "path", "jobs"}
_ROLLOUT_KEYS = {"steps", "save_every", "deterministic", "seed", "device"}
_EVALUATE_KEYS = {"group_by"}
_SPEC_KEYS = {"data", "config", "set", "rollout", "evaluate", "variants"}
# score keys read only when rolling out (eqcg.simulate.refinement.Refinement.from_config)
REFINEMENT_KEYS = ("refine", "langevin_steps", "step_size", "refine_levels", "step_schedule",
                   "refine_start", "denoise", "excluded_volume", "refine_keeps_com")
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
    unknown = sorted(set(found) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known})")


def load_spec(path: str | os.PathLike) -> AblationSpec:
    """Read and validate an ablation spec; every variant's config is validated too."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: ablation spec not found") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an ablation spec must be a mapping")
    _check_keys(raw, _SPEC_KEYS, str(path))
    for key in ("data", "config", "variants"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
    data = dict(raw["data"])
    _check_keys(data, _DATA_KEYS, f"{path}: data")
    if ("generate" in data) == ("path" in data):
        raise ConfigError(f"{path}: data needs exactly one of 'generate' or 'path'")
    if data.get("generate") not in (None, "polymer", "electrolyte"):
        raise ConfigError(f"{path}: data.generate must be polymer or electrolyte")
    rollout = {"steps": 20, "save_every": 1, "deterministic": False, "seed": 0,
               **(raw.get("rollout") or {})}
    _check_keys(rollout, _ROLLOUT_KEYS, f"{path}: rollout")
    evaluate = dict(raw.get("evaluate") or {})
    _check_keys(evaluate, _EVALUATE_KEYS, f"{path}: evaluate")
    variants = raw["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: variants must map names to lists of overrides")
    spec = AblationSpec(
        path=path,
        data=data,
        config=path.parent / raw["config"],
        shared=[str(s) for s in raw.get("set") or []],
        rollout=rollout,
        evaluate=evaluate,
        variants={str(k): [str(s) for s in (v or [])] for k, v in variants.items()},
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
    the same up to the rollout's refinement (:data:`REFINEMENT_KEYS`), itself if none."""
    def trained(name: str) -> dict[str, Any]:
        plain = variant_config(spec, name).to_dict()
        plain["score"] = {k: v for k, v in plain["score"].items() if k not in REFINEMENT_KEYS}
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
    if spec.data["generate"] == "polymer":
        from eqcg.systems.polymer import generate_polymer as generate
    else:
        from eqcg.systems.electrolyte import generate_electrolyte as generate
    generate(target, preset=spec.data.get("preset", "tiny"), seed=spec.data.get("seed", 0),
             n_systems=spec.data.get("n_systems"), jobs=spec.data.get("jobs"))
    return target


def run_ablation(
    spec_path: str | os.PathLike, out: str | os.PathLike, device: str = "auto"
) -> Path:
    """Run the ablation of ``spec_path`` into ``out``; return the comparison directory.

    Layout: ``out/data`` (if generated), ``out/runs/<variant>``, ``out/rollouts/<variant>``,
    ``out/reports/<variant>``, ``out/comparison``.
    """
    from eqcg.evaluate import compare
    from eqcg.simulate.refinement import Refinement
    from eqcg.simulate.runner import RolloutOptions

    spec = load_spec(spec_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, None, None, [], extra={"spec": str(spec.path)})
    data = _dataset(spec, out)
    steps = spec.rollout["steps"]
    rollout = RolloutOptions(save_every=spec.rollout["save_every"],
                             deterministic=spec.rollout["deterministic"],
                             seed=spec.rollout["seed"], device=spec.rollout.get("device", device))
    runs = training_runs(spec)
    reports, record = [], {}
    for name in spec.variants:
        config = variant_config(spec, name)
        run_dir = out / "runs" / runs[name]
        if runs[name] == name:
            _train_variant(config, data, run_dir, device)
        refinement = Refinement.from_config(config.score)
        rollout_dir = _roll_out_variant(name, run_dir, data, out / "rollouts" / name, steps,
                                        replace(rollout, refinement=refinement))
        reports.append(_evaluate_variant(rollout_dir, data, out / "reports" / name,
                                         spec.evaluate.get("group_by")))
        record[name] = {"run": str(run_dir), "parameters": _parameters(run_dir),
                        "score_evaluations_per_step":
                            refinement.score_evaluations(config.score.n_levels)}
        write_text_atomic(out / VARIANTS_FILE, json.dumps(record, indent=2))
    compare(reports, out / "comparison")
    return out / "comparison"


def _parameters(run_dir: Path) -> int:
    """Trainable parameters of the model a run holds (embedding, dynamics and score)."""
    from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST, build_simulator, load_checkpoint

    path = run_dir / CHECKPOINT_DIR / LAST
    simulator, _ = build_simulator(load_checkpoint(path), str(path))
    return sum(p.numel() for p in simulator.parameters() if p.requires_grad)


def _train_variant(config: Config, data: Path, run_dir: Path, device: str) -> Path:
    """Train (or finish training) one variant unless its run reached ``train.max_steps``."""
    from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint
    from eqcg.train.trainer import train

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
    from eqcg.simulate.rollout import RolloutFailure
    from eqcg.simulate.runner import run_rollout
    from eqcg.simulate.writer import RUNNING, rollout_status

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
    from eqcg.evaluate import evaluate

    if not (report_dir / "metrics.json").exists():
        evaluate(rollout_dir, data, report_dir, group_by=group_by)
    return report_dir
