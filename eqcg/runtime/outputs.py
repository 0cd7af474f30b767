"""Output directories that say what they hold and who is writing them.

Every command that writes a directory claims it with :func:`claim_output` before any work:

* a marker, ``DIR/.eqcg-output.json``, says which :data:`KINDS` of output the directory holds
  (written once, on the first claim); directories written before markers existed are
  recognised by their files (:data:`KINDS`). A directory of another kind is refused, so
  ``eqcg rollout RUN --out RUN`` cannot overwrite a run.
* a lock, ``DIR/.eqcg-lock``, created exclusively and removed when the command ends, names the
  writer (pid, host, command, start). A second writer is refused while the first is alive;
  a lock left by a process that died on this host is reported and taken over.
* a finished output (the kind's first file exists) is refused unless the command continues it
  (``resume``) or replaces it (``overwrite``); so is a directory without a marker that holds
  files (a user's own files, or an output of an eqcg older than markers).
* with ``overwrite``, the files the directory held wait in a hidden folder while the command
  writes, and come back if a write fails (full disk, read-only) or the command ends before
  writing its output: only a finished replacement, or a new output that is a result of its own
  (a rollout that blew up keeps its frames, an interrupted one is resumable), removes them.

A directory the claim created is removed again when the command fails before writing
anything into it. :func:`check_output_file` does the same checks for a single output file.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from eqcg.errors import FileSystemError, OutputError
from eqcg.runtime.atomic import write_text_atomic
from eqcg.runtime.boundary import describe_os_error, doing, os_error_path
from eqcg.runtime.stale import process_running, remove_stale, writer_tag

F = TypeVar("F", bound=Callable[..., Any])
MARKER_FILE = ".eqcg-output.json"
LOCK_FILE = ".eqcg-lock"
_STAGING = ".eqcg-staging-"
_PREVIOUS = ".eqcg-previous-"
_LISTED = 5  # files an error message names before abbreviating
#: Each kind of output and the files that mark it, the first meaning "finished".
KINDS: dict[str, tuple[str, ...]] = {
    "dataset": ("dataset.h5",),
    "run": ("checkpoints/last.pt", "checkpoints", "config.yaml", "metrics.csv"),
    "rollout": ("rollout.h5",),
    "report": ("metrics.json", "report.md"),
    "comparison": ("comparison.json", "comparison.md"),
    "ablation": ("variants.json",),
}


def output_kind(directory: str | os.PathLike) -> str | None:
    """The kind of output ``directory`` holds: its marker's, else the first kind whose files
    it has (an output older than markers), else ``None``."""
    directory = Path(directory)
    marker = directory / MARKER_FILE
    if marker.is_file():
        with doing("reading the output marker", marker):
            record = json.loads(marker.read_text(encoding="utf-8"))
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind in KINDS:
            return kind
    return next((kind for kind, files in KINDS.items()
                 if any((directory / name).exists() for name in files)), None)


def check_output(directory: Path, kind: str, *, resume: bool = False, overwrite: bool = False,
                 option: str = "--out") -> None:
    """Refuse to write ``kind`` into ``directory`` when it is a file, holds another kind of
    output, or holds a finished one and neither ``resume`` nor ``overwrite`` is given."""
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{option} {directory}: {'it' if existing == directory else existing} "
                          f"is an existing file, not a directory for the {kind}")
    if not directory.is_dir():
        return
    holder = _read_lock(directory / LOCK_FILE) if (directory / LOCK_FILE).exists() else None
    if holder is not None and _alive(holder):
        raise _being_written(directory, holder, option)
    held = output_kind(directory)
    if held is not None and held != kind:
        raise OutputError(f"{option} {directory}: holds {_article(held)} {held}, not "
                          f"{_article(kind)} {kind}; choose another {option}")
    finished = KINDS[kind][0]
    if held == kind and (directory / finished).exists() and not (resume or overwrite):
        raise OutputError(f"{option} {directory}: already holds {_article(kind)} {kind} "
                          f"({finished}); {_remedy(kind)}, or choose another {option}")
    unmarked = [] if (directory / MARKER_FILE).exists() else _user_entries(directory)
    if unmarked and not (resume or overwrite):
        listed = ", ".join(sorted(p.name for p in unmarked)[:_LISTED])
        more = f" and {len(unmarked) - _LISTED} more" if len(unmarked) > _LISTED else ""
        raise OutputError(f"{option} {directory}: holds files eqcg did not mark as its output "
                          f"({listed}{more}); pass --overwrite to write the {kind} into it "
                          f"anyway (replacing files of the same names), or choose another "
                          f"{option}")


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False,
                      option: str = "--out") -> Path:
    """Refuse to write the single file ``path`` when it is a directory, lies below a file, or
    exists and ``overwrite`` is not given; returns it as a :class:`Path`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give the name of a file")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is an existing file, not a directory")
    if path.exists() and not overwrite:
        raise OutputError(f"{option} {path}: exists already; pass --overwrite to replace it, "
                          f"or choose another {option}")
    return path


def _user_entries(directory: Path) -> list[Path]:
    """What ``directory`` holds beyond eqcg's own lock and hidden working files."""
    return [p for p in directory.iterdir()
            if p.name != LOCK_FILE and not p.name.startswith((_STAGING, _PREVIOUS))]


@contextmanager
def claim_output(directory: str | os.PathLike, kind: str, *, resume: bool = False,
                 overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Check ``directory`` (:func:`check_output`), create it, mark it as ``kind`` and hold its
    lock for the block; yields the directory."""
    directory = Path(directory)
    check_output(directory, kind, resume=resume, overwrite=overwrite, option=option)
    created = not directory.exists()
    with doing("creating the output directory", directory):
        directory.mkdir(parents=True, exist_ok=True)
    lock, finished = None, False
    try:
        lock = _acquire(directory, option)
        with (_kept_until_replaced(directory, KINDS[kind][0]) if overwrite
              else nullcontext()):
            marker = directory / MARKER_FILE
            if not marker.exists():
                with doing("marking the output directory", marker):
                    write_text_atomic(marker, json.dumps({"kind": kind, "created": _now()}))
            yield directory
        finished = True
    finally:
        if lock is not None:
            _release(lock)
        if created and not finished:
            _remove_if_unused(directory)


def claims_output(kind: str, directory: str) -> Callable[[F], F]:
    """Decorate a function that writes ``kind`` into its argument named ``directory``: the
    directory is claimed (:func:`claim_output`) for each call, with the function's own
    ``resume`` and ``overwrite`` arguments where it has them, and the function writes into a
    staging directory (:func:`staged_output`) whose files replace the old ones only once it
    returns: a failure (full disk, Ctrl-C) leaves the previous output as it was."""
    def decorate(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def claimed(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            with claim_output(given[directory], kind, resume=given.get("resume", False),
                              overwrite=given.get("overwrite", False)) as out, \
                    staged_output(out) as staging:
                bound.arguments[directory] = staging
                try:
                    return function(*bound.args, **bound.kwargs)
                except OSError as exc:
                    raise _named(exc, kind, staging, out) from exc
        return claimed  # type: ignore[return-value]
    return decorate


def _named(exc: OSError, kind: str, staging: Path, out: Path) -> FileSystemError:
    """``exc`` as a :class:`FileSystemError`: ``writing the <kind> <file>: <reason>`` for a
    file being staged (named by where it was to go), ``<file>: <reason>`` for another file,
    ``writing the <kind> into <out>: <reason>`` where the error names no file."""
    path = os_error_path(exc)
    if path is not None and Path(path).is_relative_to(staging):
        return FileSystemError(describe_os_error(
            exc, f"writing the {kind}", out / Path(path).relative_to(staging)))
    if path is None:
        return FileSystemError(describe_os_error(exc, f"writing the {kind} into", out))
    return FileSystemError(describe_os_error(exc))


@contextmanager
def _kept_until_replaced(directory: Path, finished: str) -> Iterator[None]:
    """Move what ``directory`` holds into a hidden folder for the block. It is removed when the
    block returns, or ends otherwise with a new ``finished`` file in place (a rollout that blew
    up keeps its frames, an interrupted one is resumable); otherwise (a failed write, an error
    before anything was written) what the block wrote is removed and the previous files move
    back. Folders that dead processes left are removed first."""
    remove_stale(directory, _PREVIOUS)
    previous = directory / f"{_PREVIOUS}{writer_tag()}"
    kept = [p for p in _user_entries(directory) if p.name != MARKER_FILE]
    with doing("setting the previous output aside in", previous):
        previous.mkdir(exist_ok=True)
        for path in kept:
            os.replace(path, previous / path.name)
    try:
        yield
    except BaseException as exc:
        failed_write = isinstance(exc, OSError | FileSystemError)
        if failed_write or not (directory / finished).exists():
            for path in _user_entries(directory):
                if path.name != MARKER_FILE:
                    _remove(path)
            for path in kept:
                os.replace(previous / path.name, path)
        shutil.rmtree(previous, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def staged_output(directory: Path) -> Iterator[Path]:
    """Yield an empty staging directory inside ``directory``; once the block returns, its
    files are renamed over those of ``directory`` (sub-directories merged), else removed.
    Staging directories of dead processes are removed first
    (:func:`~eqcg.runtime.stale.remove_stale`)."""
    remove_stale(directory, _STAGING)
    staging = directory / f"{_STAGING}{writer_tag()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = directory / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def _remedy(kind: str) -> str:
    return {"run": "pass --resume to continue it",
            "rollout": "pass --resume to continue it or --overwrite to replace it"
            }.get(kind, "pass --overwrite to replace it")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _holder() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
            "since": _now()}


def _acquire(directory: Path, option: str) -> Path:
    """Create ``directory``'s lock file exclusively; refuse a live holder, take over a dead
    one's (with a warning)."""
    lock = directory / LOCK_FILE
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if _alive(holder):
                raise _being_written(directory, holder, option) from None
            warnings.warn(f"{directory}: removed the stale lock of {_describe(holder)}, which "
                          "is no longer running; its output may be incomplete", stacklevel=4)
            lock.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise FileSystemError(describe_os_error(exc, "locking the output directory", lock)
                                  ) from exc
        with doing("locking the output directory", lock), os.fdopen(descriptor, "w") as f:
            json.dump(_holder(), f)
        return lock
    raise OutputError(f"{option} {directory}: another process keeps taking its lock {lock}")


def _being_written(directory: Path, holder: dict[str, object], option: str) -> OutputError:
    return OutputError(
        f"{option} {directory}: is being written by {_describe(holder)}; wait for it to finish "
        f"or choose another {option} (if no eqcg command is writing there, remove "
        f"{directory / LOCK_FILE})")


def _read_lock(lock: Path) -> dict[str, object]:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(holder: dict[str, object]) -> bool:
    """Whether the lock's writer may still run: it does on this host, or it is elsewhere or
    unknown (an unreadable lock, perhaps being written this instant)."""
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return True
    return process_running(pid)


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "an unknown process (unreadable lock)"
    return (f"process {holder.get('pid')} on {holder.get('host')} "
            f"({holder.get('command') or 'eqcg'}, since {holder.get('since')})")


def _release(lock: Path) -> None:
    """Remove ``lock`` if this process still holds it."""
    if _read_lock(lock).get("pid") == os.getpid():
        lock.unlink(missing_ok=True)


def _remove_if_unused(directory: Path) -> None:
    """Remove ``directory`` if it holds nothing but this module's marker and lock."""
    try:
        if {p.name for p in directory.iterdir()} <= {MARKER_FILE, LOCK_FILE}:
            for name in (MARKER_FILE, LOCK_FILE):
                (directory / name).unlink(missing_ok=True)
            directory.rmdir()
    except OSError:
        pass
