"""Checks of user-supplied arguments shared by the Python API and the command line.

The Python functions (``train``, ``run_rollout``, ...) call these themselves, so a bad value
is a :class:`~eqcg.errors.ConfigError` naming the argument whether it came from the command
line or from Python. The command line also types every numeric option with a :class:`Range`,
so a value out of range is refused while the arguments are parsed, before any work.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eqcg.errors import ConfigError

if TYPE_CHECKING:  # the command line parses its options without loading torch
    import torch


def at_least(name: str, value: int, minimum: int) -> int:
    """``value`` if it is an integer ``>= minimum``; else a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def positive_number(name: str, value: float) -> float:
    """``value`` if it is a finite number > 0; else a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: an integer (``integer``) or a finite number, at
    least ``minimum`` (or above it, ``strict``) and at most ``maximum`` (``None``: no bound).

    Called with a string it is the ``type=`` of a command-line option (an out-of-range value is
    refused while the arguments are parsed); :meth:`check` validates a value from a config file
    or from Python.
    """

    minimum: float
    integer: bool = True
    strict: bool = False
    maximum: float | None = None

    def describe(self) -> str:
        """What a value must be, e.g. ``an integer >= 1``."""
        kind = "an integer" if self.integer else "a finite number"
        upper = f" and <= {self.maximum:g}" if self.maximum is not None else ""
        return f"{kind} {'>' if self.strict else '>='} {self.minimum:g}{upper}"

    def admits(self, value: object) -> bool:
        """Whether ``value`` (a number) is in range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if value < self.minimum or (self.strict and value == self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    def check(self, name: str, value: object) -> None:
        """:class:`ConfigError` naming ``name`` unless ``value`` is in range."""
        if not self.admits(value):
            raise ConfigError(f"{name} must be {self.describe()}, got {value!r}")

    def __call__(self, text: str) -> int | float:
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            value = None
        if value is None or not self.admits(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text}")
        return value


COUNT = Range(1)  # how many of something: >= 1
INDEX = Range(0)  # a frame, a step count that may be 0: >= 0
SEED = Range(0)  # random seeds are >= 0
POSITIVE = Range(0, integer=False, strict=True)  # lengths, times, temperatures: finite, > 0


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device of a ``--device`` value: ``auto`` (CUDA when present, else CPU),
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; one that is not available is a
    :class:`ConfigError` saying why."""
    import torch

    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"--device {name!r}: not a device (use auto, cpu, cuda, cuda:N or mps)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build ({torch.__version__}) has no CUDA support"
                   if torch.version.cuda is None else "no CUDA GPU is visible")
            raise ConfigError(f"--device {name}: CUDA is not available ({why}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"--device {name}: only {count} CUDA device(s) visible (cuda:0 to cuda:{count - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: unsupported device type (use cpu, cuda or mps)")
    return device
