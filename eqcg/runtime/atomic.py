"""Atomic file writes: a file appears complete under its name or not at all.

Every checkpoint, dataset, mapping cache, rollout and record is written through
:func:`atomic_path` (or :func:`atomic_hdf5` for HDF5 files): to a temporary file beside the
target, flushed to disk, then renamed over the target, so an interrupted or failed write never
leaves a truncated file behind and the previous file stays as it was. The temporary is named
after its writer (:func:`~eqcg.runtime.stale.writer_tag`), so the next write of the target
removes one that a killed process left behind.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from eqcg.runtime.interrupt import raise_pending, uninterrupted
from eqcg.runtime.stale import remove_stale, writer_tag

if TYPE_CHECKING:  # the command line writes its small files without loading HDF5
    import h5py


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, for writers that look at it);
    once the block returns it is synced to disk and renamed over ``path``; if the block
    raises it is removed and ``path`` is left as it was. Temporaries of ``path`` left by dead
    processes are removed first (:func:`~eqcg.runtime.stale.remove_stale`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.stem}.tmp-"
    remove_stale(path.parent, prefix, path.suffix)
    tmp = path.with_name(f"{prefix}{writer_tag()}{path.suffix}")
    try:
        yield tmp
        sync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sync(path: str | os.PathLike) -> None:
    """Flush ``path``'s content to disk (where a full disk may first show)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


class _LatchedFile(io.RawIOBase):
    """The file HDF5 writes through (h5py's file-object driver): the first failed write (full
    disk, read-only, size limit) is kept, and it and every later write are discarded as if
    done. HDF5 cannot close a file whose writes fail without crashing the process; this one
    it closes normally, and :meth:`check` raises the kept error from Python. Positions and the
    file's end are kept as HDF5 believes them (discarded bytes read back as zeros)."""

    def __init__(self, path: Path, mode: str):
        super().__init__()
        self._raw = open(path, mode, buffering=0)  # closed by close()
        self._position = 0
        self._end = self._raw.seek(0, io.SEEK_END)
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._end}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        size = max(0, min(len(view), self._end - self._position))
        self._raw.seek(self._position)
        read = self._raw.readinto(view[:size]) or 0
        view[read:size] = bytes(size - read)  # written while the disk was failing
        self._position += size
        return size

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                self._raw.seek(self._position)
                done = 0
                while done < len(view):  # a write may take only part (near a size limit)
                    taken = self._raw.write(view[done:])
                    if not taken:
                        raise OSError(errno.EIO, "the file took no bytes", self._raw.name)
                    done += taken
            except OSError as exc:
                self.error = exc
        self._position += len(view)
        self._end = max(self._end, self._position)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if self.error is None:
            try:
                self._raw.truncate(size)
            except OSError as exc:
                self.error = exc
        self._end = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._raw.close()
        super().close()

    def check(self) -> None:
        """Raise the first failed write, if any."""
        if self.error is not None:
            raise self.error


class HDF5Output:
    """An HDF5 file being written by :func:`atomic_hdf5`: :attr:`file`, and :meth:`check`."""

    def __init__(self, file: h5py.File, latch: _LatchedFile):
        self.file, self._latch = file, latch

    def check(self) -> None:
        """Raise a failed write or a held-back interruption now (call between large parts)."""
        self._latch.check()
        raise_pending()


@contextmanager
def atomic_hdf5(path: str | os.PathLike, *, copy_of: str | os.PathLike | None = None
                ) -> Iterator[HDF5Output]:
    """An HDF5 file written atomically at ``path`` (as :func:`atomic_path`), empty or a copy of
    ``copy_of`` to change. A failed write raises its OSError, and Ctrl-C or SIGTERM (inside
    :func:`~eqcg.runtime.interrupt.interruptible`) their interruption, once HDF5 has closed the file
    (at :meth:`HDF5Output.check`, else when the block ends): the temporary file is removed and
    ``path`` is left as it was."""
    import h5py

    with atomic_path(path) as tmp, uninterrupted():
        if copy_of is not None:
            shutil.copyfile(copy_of, tmp)
        latch = _LatchedFile(tmp, "r+b" if copy_of is not None else "w+b")
        try:
            with h5py.File(latch, "a" if copy_of is not None else "w") as f:
                yield HDF5Output(f, latch)
        finally:
            latch.close()
        latch.check()
