"""The operating system's and the decoders' errors, worded as eqcg errors.

:func:`doing` wraps a step that reads or writes files: an :class:`OSError` raised inside it
becomes a :class:`~eqcg.errors.FileSystemError`, a :class:`UnicodeError` or a JSON/YAML decode
error a :class:`~eqcg.errors.DataError`, each saying what was being done, to which file, and
why in words (``writing the dataset out/dataset.h5: no space left on device``).
:func:`describe_os_error` words any OSError, h5py's included (they carry the errno only in
their message); the command line uses it as its last resort.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from eqcg.errors import DataError, EqcgError, FileSystemError

_REASONS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (over the file-size limit)",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory",
    errno.EEXIST: "it exists already",
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.EIO: "input/output error (failing disk or lost network file system)",
}
_H5_ERRNO = re.compile(r"errno = (\d+)")
_H5_NAME = re.compile(r"(?:file ?name|name) = '([^']*)'")


def os_error_number(exc: OSError) -> int | None:
    """The errno of ``exc``, read from the message where h5py leaves ``exc.errno`` unset."""
    if exc.errno is not None:
        return exc.errno
    found = _H5_ERRNO.search(str(exc))
    return int(found.group(1)) if found else None


def os_error_reason(exc: OSError) -> str:
    """Why ``exc`` happened, in words (``no space left on device``)."""
    number = os_error_number(exc)
    if number in _REASONS:
        return _REASONS[number]
    if number is not None:
        return os.strerror(number).lower()
    return exc.strerror or str(exc).split("(")[0].strip() or type(exc).__name__


def os_error_path(exc: OSError) -> str | None:
    """The file ``exc`` is about, if it says."""
    if exc.filename is not None:
        return os.fsdecode(exc.filename)
    found = _H5_NAME.search(str(exc))
    return found.group(1) if found else None


def describe_os_error(exc: OSError, what: str = "", path: str | os.PathLike | None = None) -> str:
    """``<what> <path>: <reason>``, the path taken from ``exc`` where not given."""
    where = str(path) if path is not None else os_error_path(exc)
    subject = " ".join(part for part in (what, where) if part)
    return f"{subject}: {os_error_reason(exc)}" if subject else os_error_reason(exc)


@contextmanager
def doing(what: str, path: str | os.PathLike) -> Iterator[None]:
    """Within the block, an OSError is a :class:`FileSystemError` and a decode error a
    :class:`DataError`, both saying ``<what> <path>: <reason>``; eqcg's own errors pass."""
    try:
        yield
    except EqcgError:
        raise
    except OSError as exc:
        raise FileSystemError(describe_os_error(exc, what, path)) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                        f"offset {exc.start})") from None
    except UnicodeError as exc:
        raise DataError(f"{what} {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {path}: not valid JSON (line {exc.lineno}, column "
                        f"{exc.colno}: {exc.msg}); the file is damaged or cut short") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{what} {path}: not valid YAML ({exc})") from None


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON content of ``path``; errors as in :func:`doing` (``reading <what> <path>``)."""
    with doing(f"reading {what}", path):
        return json.loads(Path(path).read_text(encoding="utf-8"))
