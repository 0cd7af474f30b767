"""Variants by name: each builds a dynamics network and a matching score network.

A variant registers itself with :func:`register_variant`; configs pick one by name
(``model.variant``), never by a class path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from eqcg.config import ModelConfig
from eqcg.errors import ConfigError
from eqcg.models.interface import DynamicsNetwork, ScoreNetwork

_BUILTIN_MODULES = ("eqcg.models.baseline", "eqcg.models.equivariant")


@dataclass(frozen=True)
class Variant:
    """A named pair of networks.

    Attributes:
        name: config name (``model.variant``).
        build: ``(model_config, history) -> (dynamics, score)``.
        covariances: the ``model.covariance`` modes this variant supports.
        description: one line for ``--help`` and tables.
    """

    name: str
    build: Callable[[ModelConfig, int], tuple[DynamicsNetwork, ScoreNetwork]]
    covariances: tuple[str, ...]
    description: str


_VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to the registry (a module-level call in the variant's module)."""
    _VARIANTS[variant.name] = variant
    return variant


def variants() -> dict[str, Variant]:
    """All registered variants by name (importing the built-in ones first)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(_VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    known = variants()
    if name not in known:
        raise ConfigError(f"unknown model.variant {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def check_variant(model: ModelConfig, where: str) -> None:
    """Validate ``model.variant`` and that it supports ``model.covariance``."""
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
