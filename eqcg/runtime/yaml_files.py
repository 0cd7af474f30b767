"""Reading eqcg's YAML files (configs, ablation specs) without silent surprises.

PyYAML keeps the last of two equal keys in a mapping and drops the first without a word: a
config with two ``train:`` sections, or a spec naming one variant twice, would run something
other than what it says. :func:`read_yaml` refuses them, naming both lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from eqcg.errors import ConfigError


class _RepeatedKey(ValueError):
    """A mapping that gives one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (``<<`` merges, whose keys
    may be overridden, excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: construct_mapping names it
                break
            if first is not None:
                raise _RepeatedKey(f"key {key!r} appears twice (lines {first} and {line}); the "
                                   "first would be dropped silently: keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document ``text`` (from ``where``); a :class:`ConfigError` for invalid YAML or
    a repeated key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _RepeatedKey as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """The YAML document in ``path`` (a ``what``: "config file", "ablation spec");
    :class:`ConfigError` when it is missing, unreadable, invalid or repeats a key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc})") from None
    return parse_yaml(text, str(path))
