"""Run configuration: typed sections with a comment on every default, loaded from YAML.

Loading validates as it goes: an unknown key, a value of the wrong type or an out-of-range
value raises :class:`~eqcg.errors.ConfigError` naming the key (``model.latent_dim``) and the
file. ``--set a.b=value`` overrides are applied with the same checks. The resolved config is
saved next to every run's outputs.

A variant's own options form a section under ``model`` named after it
(``model.equivariant: {lmax: 2}``). This module keeps such sections as plain mappings, so that
loading a config needs no torch; the variant registry (:mod:`eqcg.models.registry`) types and
checks them, with the same errors, when the variant is resolved.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eqcg.atomic import write_text_atomic
from eqcg.errors import ConfigError
from eqcg.yaml_files import read_yaml

logger = logging.getLogger(__name__)

@dataclass
class DataConfig:
    """Which frames become training examples and how atoms become beads."""

    history: int = 5  # k: history frames the dynamics GNN sees (paper: 20 electrolyte, 30 polymer)
    dilation: int = 1  # d: recorded frames per learned step (paper electrolyte: 100 = 0.2 ns)
    stride: int = 1  # frames between the starts of consecutive training windows
    cg_level: int = 7  # target atoms per bead for METIS (paper: 7 for the electrolyte)
    whole_molecule_max_atoms: int = 15  # molecules up to this size stay one bead (TFSI: 15)
    cg_seed: int = 0  # METIS seed: the mapping is deterministic given it
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train/val/test fractions, by system
    split_seed: int = 0  # seed of the system shuffle before splitting
    test_min_atoms: int = 0  # systems with at least this many atoms all go to test (0: off)


@dataclass
class ModelConfig:
    """Architecture; ``variant`` picks the dynamics and score networks from the registry."""

    variant: str = "baseline"  # registered variant: baseline / equivariant
    radius: float = 6.0  # cut-off of CG radius edges (Å or sigma; paper: 6 Å)
    embed_dim: int = 32  # width of the fine-level embedding GNN
    embed_layers: int = 2  # message-passing layers of the embedding GNN over fine bonds
    latent_dim: int = 64  # width of the dynamics/score latent features (paper: 128)
    message_passing_steps: int = 3  # processor steps of the dynamics GNN (paper: 7)
    score_message_passing_steps: int = 2  # processor steps of the score GNN
    mlp_layers: int = 2  # hidden layers of every MLP (paper: 2)
    # acceleration spread, one the variant supports: diagonal (baseline) / isotropic / full
    covariance: str = "diagonal"
    min_std: float = 0.05  # floor of the predicted acceleration std (normalised units)
    property_head: bool = False  # predict the whole-system Rg residual (one chain per system)
    # Gaussian noise vectors shared by the beads of each molecule (0: beads independent); a
    # molecule's beads move together over a learned step (eqcg.models.gaussian)
    shared_noise_rank: int = 0
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
    """Denoising score matching and annealed Langevin refinement."""

    sigma_begin: float = 1.0  # largest noise level (Å or sigma; paper: 10)
    sigma_end: float = 0.01  # smallest noise level (paper: 0.01)
    n_levels: int = 10  # geometric levels from sigma_begin to sigma_end (paper: 20)
    langevin_steps: int = 5  # Langevin steps per level at refinement (paper: 10)
    step_size: float = 5e-5  # Langevin step size eps at the smallest level (paper: 5e-5)
    # sampler (eqcg.simulate.langevin): Langevin with constant eps (reference) or ncsn eps
    # (s_i/s_min)²; level-to-level ancestral / geometric / ddim (one step per level)
    step_schedule: str = "geometric"
    refine: bool = True  # refine rollout steps with the score network
    refine_levels: int = 10  # levels refinement visits, geometric down to sigma_end (0: n_levels)
    # where the refinement ladder starts: top = sigma_begin (paper) / spread = each system's
    # predicted spread (RMS std of the dynamics Gaussian)
    refine_start: str = "top"
    denoise: bool = False  # end refinement with the noise-free step x + sigma_end² score
    excluded_volume: float = 0.0  # push beads closer than this apart (length; 0: off)
    # refinement keeps each molecule's centre of mass where the dynamics sample put it
    refine_keeps_com: bool = False
    # DSM noise levels: ladder = uniform over the n_levels (paper) / spread = log-uniform from
    # sigma_end to each system's predicted spread (the levels a spread-started sampler visits)
    training_levels: str = "ladder"


@dataclass
class TrainConfig:
    """Optimisation."""

    seed: int = 0  # seeds the initial weights and every random draw of training
    batch_size: int = 8  # windows (systems) per batch
    max_beads: int = 0  # bead budget of a batch (0: none): fewer windows of large systems
    max_steps: int = 2000  # optimisation steps in all
    lr: float = 2e-4  # Adam learning rate (paper: ~2e-4)
    lr_decay: float = 0.1  # learning rate multiplier reached at max_steps (exponential decay)
    grad_clip: float = 1.0  # max global gradient norm
    noise_begin: float = 0.0  # smallest history noise-augmentation sigma (Å or sigma)
    noise_end: float = 0.0  # largest history noise-augmentation sigma, drawn per system
    pushforward: bool = False  # add the NLL one step after the model's own sampled step
    score_weight: float = 1.0  # weight of the score-matching loss
    property_weight: float = 1.0  # weight of the Rg property loss (with model.property_head)
    val_every: int = 200  # steps between validations (also at the start and the end)
    val_windows: int = 256  # validation windows, evenly spaced over the validation systems
    log_every: int = 20  # steps between logged training losses
    checkpoint_every: int = 200  # steps between checkpoints of the last state


@dataclass
class Config:
    """A whole run: data, model, score refinement and training."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # where the config was read from (a file, a checkpoint), for error messages; not saved
    source: str = field(default="config", compare=False, metadata={"yaml": False})

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as a YAML config file writes it."""
        return {
            "data": _to_plain(dataclasses.asdict(self.data)),
            "model": self.model.to_dict(),
            "score": _to_plain(dataclasses.asdict(self.score)),
            "train": _to_plain(dataclasses.asdict(self.train)),
        }


# model.covariance is checked against the variant's own modes by the registry
_CHOICES = {
    "score.step_schedule": ("ncsn", "constant", "ancestral", "geometric", "ddim"),
    "score.refine_start": ("top", "spread"),
    "score.training_levels": ("ladder", "spread"),
}
_POSITIVE = {
    "data.history", "data.dilation", "data.stride", "data.cg_level", "model.radius",
    "model.embed_dim", "model.latent_dim", "model.message_passing_steps", "model.mlp_layers",
    "model.min_std", "score.sigma_begin", "score.sigma_end", "score.n_levels", "score.step_size",
    "train.batch_size", "train.max_steps", "train.lr", "train.lr_decay", "train.grad_clip",
    "train.val_every", "train.val_windows", "train.log_every", "train.checkpoint_every",
}
# keys that moved into a variant's section (configs and checkpoints written before the move)
MOVED_KEYS = {
    f"model.{name}": f"model.equivariant.{name}"
    for name in ("vector_channels", "lmax", "radial_basis", "avg_neighbors")
}


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(annotation)
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
    error if both places are given)."""
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    model = dict(model)
    moved = []
    for old, new in MOVED_KEYS.items():
        name = old.split(".")[1]
        if name not in model:
            continue
        section_name, new_name = new.split(".")[1:]
        section = model.get(section_name, {})
        if not isinstance(section, dict) or new_name in section:
            raise ConfigError(f"{where}: {old} and {new} are both given ({old} is the old name "
                              f"of {new}: keep only {new})")
        model[section_name] = {**section, new_name: model.pop(name)}
        moved.append(f"{old} -> {new}")
    if moved:
        logger.warning("%s: keys of an older eqcg moved: %s", where, ", ".join(moved))
    return {**data, "model": model}


def require_positive(section: Any, names: tuple[str, ...], prefix: str, where: str) -> None:
    """:class:`ConfigError` naming ``prefix.name`` and ``where`` unless every ``names``
    attribute of ``section`` is > 0."""
    for name in names:
        value = getattr(section, name)
        if not value > 0:
            raise ConfigError(f"{where}: {prefix}.{name} must be > 0, got {value}")


def _check(config: Config, where: str) -> None:
    for key in sorted(_POSITIVE):
        section, name = key.split(".")
        require_positive(getattr(config, section), (name,), section, where)
    plain = config.to_dict()
    for key, choices in _CHOICES.items():
        section, name = key.split(".")
        if plain[section][name] not in choices:
            raise ConfigError(
                f"{where}: {key} must be one of {', '.join(choices)}, got {plain[section][name]!r}"
            )
    if config.data.history < 2:
        raise ConfigError(f"{where}: data.history must be >= 2 (velocities need two frames)")
    if config.score.refine_levels < 0 or config.score.excluded_volume < 0:
        raise ConfigError(f"{where}: score.refine_levels and score.excluded_volume must be >= 0")
    if config.score.sigma_end > config.score.sigma_begin:
        raise ConfigError(f"{where}: score.sigma_end must not exceed score.sigma_begin")
    if config.data.test_min_atoms < 0:
        raise ConfigError(f"{where}: data.test_min_atoms must be >= 0 (0: off), got "
                          f"{config.data.test_min_atoms}")
    if config.model.shared_noise_rank < 0:
        raise ConfigError(f"{where}: model.shared_noise_rank must be >= 0 (0: independent "
                          f"beads), got {config.model.shared_noise_rank}")
    if config.train.max_beads < 0:
        raise ConfigError(f"{where}: train.max_beads must be >= 0 (0: no bead budget), got "
                          f"{config.train.max_beads}")
    if config.train.noise_begin > config.train.noise_end or config.train.noise_begin < 0:
        raise ConfigError(f"{where}: need 0 <= train.noise_begin <= train.noise_end")


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
    """Apply ``--set`` overrides to plain config data (validated later by the loader)."""
    for text in overrides:
        key, value = parse_override(text)
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
    "MOVED_KEYS", "Config", "DataConfig", "ModelConfig", "ScoreConfig", "TrainConfig",
    "apply_overrides", "build_section", "config_from_dict", "load_config", "require_positive",
    "save_config",
]
