"""Temporaries named after the process writing them, and the removal of those a process left
behind when it died before it could remove them (SIGKILL, out of memory, a power cut).

A temporary's name ends in ``<host>-<pid>`` (:func:`writer_tag`): one whose writer ran on this
host and runs no longer is stale. Temporaries of other hosts (a shared file system) and of
running processes are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, the end of the names of its temporaries."""
    return f"{socket.gethostname()}-{os.getpid()}"


def process_running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(directory: str | os.PathLike, prefix: str, suffix: str = "") -> list[Path]:
    """Remove the temporaries ``<prefix><host>-<pid><suffix>`` (files or directories) in
    ``directory`` whose writer ran on this host and has died; the paths removed."""
    pattern = re.compile(re.escape(prefix) + r"(.+)-(\d+)" + re.escape(suffix))
    host = socket.gethostname()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match[1] != host:
            continue
        pid = int(match[2])
        if pid == os.getpid() or process_running(pid):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
