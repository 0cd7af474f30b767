"""Checks of user-supplied arguments shared by the Python API and the command line.

The Python functions (``train``, ``run_rollout``, ...) call these themselves, so a bad value
is a :class:`~eqcg.errors.ConfigError` naming the argument whether it came from the command
line or from Python.
"""

from __future__ import annotations

import torch

from eqcg.errors import ConfigError


def at_least(name: str, value: int, minimum: int) -> int:
    """``value`` if it is an integer ``>= minimum``; else a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device of a ``--device`` value: ``auto`` (CUDA when present, else CPU),
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; one that is not available is a
    :class:`ConfigError` saying why."""
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
