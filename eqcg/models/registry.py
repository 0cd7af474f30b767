"""Variants by name: each builds a dynamics network and a matching score network.

A variant is a module of :mod:`eqcg.models` that calls :func:`register_variant` when imported
(the built-in ones are found by importing every module of the package; a variant defined
elsewhere registers itself the same way, e.g. from a test module). Its options are its own
dataclass, written in a config as the section ``model.<name>``. Configs pick a variant by name
(``model.variant``), never by a class path. Whatever is meant for all variants (the
equivariance table, the test-suite mixin) iterates over :func:`variants`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import eqcg.models
from eqcg.config import ModelConfig, build_section
from eqcg.errors import ConfigError
from eqcg.models.interface import DynamicsNetwork, ScoreNetwork

Build = Callable[[ModelConfig, Any, int], tuple[DynamicsNetwork, ScoreNetwork]]


@dataclass(frozen=True)
class Variant:
    """A named pair of networks.

    Attributes:
        name: config name (``model.variant``) and name of its options section.
        build: ``(model_config, options, history) -> (dynamics, score)``; ``options`` is an
            instance of :attr:`options` (``None`` for a variant without options).
        covariances: the ``model.covariance`` modes this variant supports, preferred first.
        description: one line for ``--help`` and tables.
        options: dataclass of the variant's options (``model.<name>``: typed fields with
            defaults; an optional ``validate(prefix, where)`` method checks values), or
            ``None``.
        equivariant: whether the variant claims E(3) equivariance: the shared tests and
            ``eqcg check-equivariance`` expect it to pass the checks, and a variant that does
            not claim it to fail them.
    """

    name: str
    build: Build
    covariances: tuple[str, ...]
    description: str
    options: type | None = None
    equivariant: bool = True

    def parse_options(self, model: ModelConfig, where: str) -> Any:
        """The typed options of this variant in ``model`` (defaults where none are given)."""
        section = model.options.get(self.name, {})
        prefix = f"model.{self.name}"
        if self.options is None:
            if section:
                raise ConfigError(f"{where}: variant {self.name!r} takes no options, but "
                                  f"{prefix} gives {', '.join(map(str, section))}")
            return None
        options = build_section(self.options, section, prefix, where)
        if hasattr(options, "validate"):
            options.validate(prefix, where)
        return options

    def networks(self, model: ModelConfig, history: int) -> tuple[DynamicsNetwork, ScoreNetwork]:
        """The dynamics and score networks for ``model`` and ``k = history``."""
        return self.build(model, self.parse_options(model, "model"), history)


_VARIANTS: dict[str, Variant] = {}
_discovered = False


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to the registry (a module-level call in the variant's module); a
    variant of the same name is replaced."""
    reserved = {f.name for f in dataclasses.fields(ModelConfig)}
    if variant.name in reserved:
        raise ValueError(f"variant name {variant.name!r} is a model config key ({variant.name})")
    if variant.options is not None and not dataclasses.is_dataclass(variant.options):
        raise TypeError(f"variant {variant.name!r}: options must be a dataclass")
    _VARIANTS[variant.name] = variant
    return variant


def variants() -> dict[str, Variant]:
    """All registered variants by name (importing the modules of :mod:`eqcg.models` first,
    which registers the built-in ones)."""
    global _discovered
    if not _discovered:
        for module in pkgutil.iter_modules(eqcg.models.__path__, "eqcg.models."):
            importlib.import_module(module.name)
        _discovered = True
    return dict(_VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    known = variants()
    if name not in known:
        raise ConfigError(f"unknown model.variant {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def check_variant(model: ModelConfig, where: str) -> ModelConfig:
    """Validate ``model`` against the registry; return it with its options resolved.

    Checks that ``model.variant`` is registered and supports ``model.covariance`` (the one
    place covariance support is checked), and that every options section names a registered
    variant and holds only its keys, with values of the right type. The returned config holds
    the full options (defaults filled in) of its variant and of every variant given a section,
    so a saved config records them.
    """
    known = variants()
    if model.variant not in known:
        raise ConfigError(
            f"{where}: unknown model.variant {model.variant!r}; known: {', '.join(sorted(known))}"
        )
    supported = known[model.variant].covariances
    if model.covariance not in supported:
        raise ConfigError(
            f"{where}: model.covariance {model.covariance!r} is not supported by variant "
            f"{model.variant!r} (supported: {', '.join(supported)})"
        )
    unknown = sorted(set(model.options) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key 'model.{unknown[0]}' (neither a model key nor a registered "
            f"variant's options; variants: {', '.join(sorted(known))})"
        )
    options = {}
    for name in sorted({model.variant, *model.options}):
        parsed = known[name].parse_options(model, where)
        if parsed is not None:
            options[name] = dataclasses.asdict(parsed)
    return dataclasses.replace(model, options=options)
