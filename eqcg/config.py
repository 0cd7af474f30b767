"""Run configuration: typed sections with a comment on every default, loaded from YAML.

Loading validates as it goes: an unknown key, a value of the wrong type or an out-of-range
value raises :class:`~eqcg.errors.ConfigError` naming the key (``model.latent_dim``) and the
file. ``--set a.b=value`` overrides are applied with the same checks. The resolved config is
saved next to every run's outputs.

Every numeric key's range is declared once, on its field (:func:`bounded`); the loader checks
it, and the command line types the options it generates from a section with the same
:class:`~eqcg.runtime.arguments.Range` (:mod:`eqcg.commands.cli` builds the flags of
``rollout``/``simulate`` from :class:`RolloutConfig`). The ``rollout`` section is read only
when a trained model is rolled out: changing it does not change the model, so a run's
``config.yaml`` may edit it.

A variant's own options form a section under ``model`` named after it
(``model.equivariant: {lmax: 2}``). This module keeps such sections as plain mappings, so that
loading a config needs no torch; the variant registry (:mod:`eqcg.models.registry`) types and
checks them, with the same errors, when the variant is resolved.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eqcg.errors import ConfigError
from eqcg.runtime.arguments import Range
from eqcg.runtime.atomic import write_text_atomic
from eqcg.runtime.yaml_files import read_yaml

logger = logging.getLogger(__name__)

_SIZE = 10**6  # the largest count of anything that scales memory (steps, widths, windows)


def bounded(
    default: Any, minimum: float, *, strict: bool = False, maximum: float | None = None,
    help: str = "",
) -> Any:
    """A numeric config field with its range (integer when ``default`` is) and the one-line
    ``help`` of the command-line option generated from it."""
    integer = isinstance(default, int) and not isinstance(default, bool)
    return field(default=default, metadata={
        "help": help, "range": Range(minimum, integer=integer, strict=strict, maximum=maximum)})


def choice(default: str, choices: tuple[str, ...], help: str = "") -> Any:
    """A string config field that must be one of ``choices``."""
    return field(default=default, metadata={"help": help, "choices": choices})


def flag(default: bool, help: str = "") -> Any:
    """A boolean config field with the help of its ``--name/--no-name`` option."""
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    """Which frames become training examples and how atoms become beads."""

    # k: history frames the dynamics GNN sees (paper: 20 electrolyte, 30 polymer)
    history: int = bounded(5, 2, maximum=10_000)
    # d: recorded frames per learned step (paper electrolyte: 100 = 0.2 ns)
    dilation: int = bounded(1, 1, maximum=_SIZE)
    stride: int = bounded(1, 1, maximum=_SIZE)  # frames between starts of training windows
    cg_level: int = bounded(7, 1, maximum=_SIZE)  # target atoms per bead for METIS (paper: 7)
    # molecules up to this size stay one bead (TFSI: 15)
    whole_molecule_max_atoms: int = bounded(15, 0, maximum=_SIZE)
    cg_seed: int = bounded(0, 0)  # METIS seed: the mapping is deterministic given it
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train/val/test fractions, by system
    split_seed: int = bounded(0, 0)  # seed of the system shuffle before splitting
    # systems with at least this many atoms all go to test (0: off)
    test_min_atoms: int = bounded(0, 0)
    # systems named outright as validation / test (the rest split by the fractions left)
    val_systems: tuple[str, ...] = ()
    test_systems: tuple[str, ...] = ()


@dataclass
class ModelConfig:
    """Architecture; ``variant`` picks the dynamics and score networks from the registry."""

    variant: str = "baseline"  # registered variant: baseline / equivariant
    radius: float = bounded(6.0, 0, strict=True)  # cut-off of CG radius edges (Å or sigma)
    embed_dim: int = bounded(32, 1, maximum=4096)  # width of the fine-level embedding GNN
    # message-passing layers of the embedding GNN over fine bonds
    embed_layers: int = bounded(2, 0, maximum=64)
    # width of the dynamics/score latent features (paper: 128)
    latent_dim: int = bounded(64, 1, maximum=4096)
    # processor steps of the dynamics GNN (paper: 7)
    message_passing_steps: int = bounded(3, 1, maximum=64)
    score_message_passing_steps: int = bounded(2, 0, maximum=64)  # processor steps, score GNN
    mlp_layers: int = bounded(2, 1, maximum=64)  # hidden layers of every MLP (paper: 2)
    # acceleration spread, one the variant supports: diagonal (baseline) / isotropic / full
    covariance: str = "diagonal"
    # floor of the predicted acceleration std (normalised units)
    min_std: float = bounded(0.05, 0, strict=True)
    property_head: bool = False  # predict the whole-system Rg residual (one chain per system)
    # Gaussian noise vectors shared by the beads of each molecule (0: beads independent); a
    # molecule's beads move together over a learned step (eqcg.models.gaussian)
    shared_noise_rank: int = bounded(0, 0, maximum=64)
    # the system's thermostat temperature is an input of the dynamics and score networks
    temperature_input: bool = False
    # variant name -> its options, written as ``model.<variant>: {...}`` (none: the defaults);
    # plain mappings here, typed and checked by the variant registry
    options: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={"yaml": False})

    def to_dict(self) -> dict[str, Any]:
        """Plain data, each variant's options as the section ``<variant>``."""
        plain = {f.name: _to_plain(getattr(self, f.name)) for f in _yaml_fields(ModelConfig)}
        return {**plain, **_to_plain(self.options)}


@dataclass
class ScoreConfig:
    """Denoising score matching: the noise levels the score network is trained on."""

    sigma_begin: float = bounded(1.0, 0, strict=True)  # largest level (Å or sigma; paper: 10)
    sigma_end: float = bounded(0.01, 0, strict=True)  # smallest noise level (paper: 0.01)
    # geometric levels from sigma_begin to sigma_end (paper: 20)
    n_levels: int = bounded(10, 1, maximum=10_000)
    # DSM noise levels: ladder = uniform over the n_levels (paper) / spread = log-uniform from
    # sigma_end to each system's predicted spread (the levels a spread-started sampler visits)
    training_levels: str = choice("ladder", ("ladder", "spread"))


# refinement samplers (eqcg.simulation.langevin): Langevin steps at each level, or one
# level-to-level step per level
LANGEVIN_SCHEDULES = ("constant", "ncsn")
LEVEL_SCHEDULES = ("ancestral", "geometric", "ddim")
SCHEDULES = LANGEVIN_SCHEDULES + LEVEL_SCHEDULES


@dataclass
class RolloutConfig:
    """How a trained model steps when rolled out: sampling and score refinement.

    Read only by ``eqcg rollout``/``simulate`` (each field is also their ``--<field>`` flag):
    a run's ``config.yaml`` may change this section after training.
    """

    deterministic: bool = flag(False, "step with the mean acceleration, no sampling")
    refine: bool = flag(True, "refine every step with the score network")
    refine_levels: int = bounded(
        10, 0, maximum=10_000,
        help="noise levels refinement visits, geometric down to score.sigma_end "
             "(0: score.n_levels)")
    langevin_steps: int = bounded(
        5, 1, maximum=10_000, help="Langevin steps per level (Langevin schedules; paper: 10)")
    step_size: float = bounded(
        5e-5, 0, strict=True,
        help="Langevin step size at the smallest level (length²; paper: 5e-5)")
    schedule: str = choice(
        "geometric", SCHEDULES,
        help="sampler: Langevin constant / ncsn, or level-to-level ancestral / geometric / ddim "
             "(one step per level)")
    refine_start: str = choice(
        "top", ("top", "spread"),
        help="first level: top = score.sigma_begin / spread = each system's predicted spread")
    denoise: bool = flag(
        False, "end a Langevin refinement with the noise-free step x + sigma_end² score")
    excluded_volume: float = bounded(
        0.0, 0, help="push beads closer than this apart after refinement (length; 0: off)")
    keep_com: bool = flag(
        False, "refinement keeps each molecule's centre of mass where the dynamics sample put "
               "it")
    neighbor_search: str = choice(
        "verlet", ("verlet", "device"),
        help="verlet = vesin searches, reused while no bead has moved half the skin (one host "
             "read per network call) / device = every pair of each system checked on the "
             "device into fixed slots (no host read; small systems, GPUs)")

    def levels(self, model_levels: int) -> int:
        """Levels refinement visits for a model trained on ``model_levels`` levels."""
        return self.refine_levels or model_levels


@dataclass
class TrainConfig:
    """Optimisation."""

    seed: int = bounded(0, 0)  # seeds the initial weights and every random draw of training
    batch_size: int = bounded(8, 1, maximum=_SIZE)  # windows (systems) per batch
    # bead budget of a batch (0: none): fewer windows of large systems
    max_beads: int = bounded(0, 0)
    max_steps: int = bounded(2000, 1, maximum=10**9)  # optimisation steps in all
    lr: float = bounded(2e-4, 0, strict=True)  # Adam learning rate (paper: ~2e-4)
    # learning rate multiplier reached at max_steps (exponential decay)
    lr_decay: float = bounded(0.1, 0, strict=True)
    grad_clip: float = bounded(1.0, 0, strict=True)  # max global gradient norm
    # smallest history noise-augmentation sigma (Å or sigma)
    noise_begin: float = bounded(0.0, 0)
    noise_end: float = bounded(0.0, 0)  # largest history noise-augmentation sigma, per system
    pushforward: bool = False  # add the NLL one step after the model's own sampled step
    score_weight: float = bounded(1.0, 0)  # weight of the score-matching loss
    # weight of the Rg property loss (with model.property_head)
    property_weight: float = bounded(1.0, 0)
    # steps between validations (also at the start and the end)
    val_every: int = bounded(200, 1, maximum=10**9)
    # validation windows, evenly spaced over the validation systems
    val_windows: int = bounded(256, 1, maximum=_SIZE)
    log_every: int = bounded(20, 1, maximum=10**9)  # steps between logged training losses
    # steps between checkpoints of the last state
    checkpoint_every: int = bounded(200, 1, maximum=10**9)


@dataclass
class Config:
    """A whole run: data, model, score training, rollout and training."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # where the config was read from (a file, a checkpoint), for error messages; not saved
    source: str = field(default="config", compare=False, metadata={"yaml": False})

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as a YAML config file writes it."""
        return {
            "data": _to_plain(dataclasses.asdict(self.data)),
            "model": self.model.to_dict(),
            "score": _to_plain(dataclasses.asdict(self.score)),
            "rollout": _to_plain(dataclasses.asdict(self.rollout)),
            "train": _to_plain(dataclasses.asdict(self.train)),
        }


# keys that moved (configs and checkpoints written before the move): into a variant's section,
# and the rollout settings out of ``score``
MOVED_KEYS = {
    **{f"model.{name}": f"model.equivariant.{name}"
       for name in ("vector_channels", "lmax", "radial_basis", "avg_neighbors")},
    **{f"score.{name}": f"rollout.{name}"
       for name in ("refine", "refine_levels", "langevin_steps", "step_size", "refine_start",
                    "denoise", "excluded_volume")},
    "score.step_schedule": "rollout.schedule",
    "score.refine_keeps_com": "rollout.keep_com",
}


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is tuple and typing.get_args(annotation)[1:] == (Ellipsis,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return tuple(_coerce(v, typing.get_args(annotation)[0], key, where) for v in value)
    if origin is tuple:
        item_types = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(item_types):
            raise ConfigError(f"{where}: {key} must be a list of {len(item_types)} values")
        return tuple(_coerce(v, t, key, where) for v, t in zip(value, item_types))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key} has unsupported type {annotation}")


def _yaml_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are keys of its YAML section."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def build_section(cls: type, data: Any, prefix: str, where: str) -> Any:
    """The dataclass ``cls`` from the mapping ``data`` of section ``prefix`` (read from
    ``where``): unknown keys and values of the wrong type are :class:`ConfigError` s naming the
    key and ``where``; absent keys take their defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'config'} must be a mapping, got {data!r}")
    if cls is ModelConfig:
        data, options = _split_options(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _yaml_fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(
            f"{where}: unknown key {key!r} (known in {prefix or 'config'}: {', '.join(fields)})"
        )
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            values[name] = build_section(annotation, value, key, where)
        else:
            values[name] = _coerce(value, annotation, key, where)
    if cls is ModelConfig:
        values["options"] = options
    return cls(**values)


def _split_options(model: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``model`` data without its variant sections (mappings under names that are no
    :class:`ModelConfig` key), and those sections."""
    keys = {f.name for f in _yaml_fields(ModelConfig)}
    options = {
        name: dict(value) for name, value in model.items()
        if isinstance(name, str) and name not in keys and isinstance(value, dict)
    }
    return {k: v for k, v in model.items() if k not in options}, options


def _migrate(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with the :data:`MOVED_KEYS` of an older config moved to their new places (an
    error if both places are given); ``data`` itself is not changed."""
    data = copy.deepcopy(data)
    moved = []
    for old, new in MOVED_KEYS.items():
        *old_path, old_name = old.split(".")
        parent = _section(data, old_path)
        if parent is None or old_name not in parent:
            continue
        *new_path, new_name = new.split(".")
        target = data
        for part in new_path:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{where}: {'.'.join(new_path)} must be a mapping, got "
                                  f"{target!r}")
        if new_name in target:
            raise ConfigError(f"{where}: {old} and {new} are both given ({old} is the old name "
                              f"of {new}: keep only {new})")
        target[new_name] = parent.pop(old_name)
        moved.append(f"{old} -> {new}")
    if moved:
        logger.warning("%s: keys of an older eqcg moved: %s", where, ", ".join(moved))
    return data


def _section(data: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The mapping at ``path`` in ``data`` (``None`` where there is none)."""
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def require_positive(section: Any, names: tuple[str, ...], prefix: str, where: str) -> None:
    """:class:`ConfigError` naming ``prefix.name`` and ``where`` unless every ``names``
    attribute of ``section`` is > 0."""
    for name in names:
        value = getattr(section, name)
        if not value > 0:
            raise ConfigError(f"{where}: {prefix}.{name} must be > 0, got {value}")


def check_section(section: Any, prefix: str, where: str) -> None:
    """:class:`ConfigError` naming ``prefix.<key>`` and ``where`` for the first field of the
    dataclass ``section`` outside its declared range or choices (:func:`bounded`,
    :func:`choice`)."""
    for f in _yaml_fields(type(section)):
        value, key = getattr(section, f.name), f"{prefix}.{f.name}"
        if "range" in f.metadata:
            f.metadata["range"].check(f"{where}: {key}", value)
        if value not in f.metadata.get("choices", (value,)):
            raise ConfigError(f"{where}: {key} must be one of "
                              f"{', '.join(f.metadata['choices'])}, got {value!r}")


def _check(config: Config, where: str) -> None:
    for section in ("data", "model", "score", "rollout", "train"):
        check_section(getattr(config, section), section, where)
    if config.score.sigma_end > config.score.sigma_begin:
        raise ConfigError(f"{where}: score.sigma_end must not exceed score.sigma_begin")
    if config.train.noise_begin > config.train.noise_end:
        raise ConfigError(f"{where}: need train.noise_begin <= train.noise_end")


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """Build and validate a :class:`Config` from plain data (e.g. parsed YAML).

    Keys of older configs (:data:`MOVED_KEYS`) are moved to their new places, with a warning;
    variant sections stay plain mappings (checked by the registry).
    """
    data = data or {}
    if isinstance(data, dict):
        data = _migrate(data, where)
    config = build_section(Config, data, "", where)
    _check(config, where)
    return dataclasses.replace(config, source=where)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the dotted key and the YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. model.latent_dim=64")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to plain config data (validated later by the loader); a key
    of an older eqcg (:data:`MOVED_KEYS`) sets its new place."""
    for text in overrides:
        key, value = parse_override(text)
        if key in MOVED_KEYS:
            logger.warning("--set %s: %s is now %s", text, key, MOVED_KEYS[key])
            key = MOVED_KEYS[key]
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a section")
        node[parts[-1]] = value
    return data


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Parse ``path``; an ``extends: other.yaml`` key (relative to ``path``) is merged under it."""
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'extends' forms a cycle")
    data = read_yaml(path, "config file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be a file name, got {parent!r}")
    return _merge(_read_yaml(path.parent / parent, chain + (path.resolve(),)), data)


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> Config:
    """Load a YAML config file (following ``extends``), apply ``--set`` overrides, validate."""
    path = Path(path)
    return config_from_dict(apply_overrides(_read_yaml(path), list(overrides)), where=str(path))


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


__all__ = [
    "LANGEVIN_SCHEDULES", "LEVEL_SCHEDULES", "MOVED_KEYS", "SCHEDULES", "Config", "DataConfig",
    "ModelConfig", "RolloutConfig", "ScoreConfig", "TrainConfig", "apply_overrides", "bounded",
    "build_section", "check_section", "choice", "config_from_dict", "flag", "load_config",
    "require_positive", "save_config",
]
