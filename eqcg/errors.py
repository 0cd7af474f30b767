"""Exceptions raised by eqcg: each one says what went wrong and where (file, frame, atom).

The command line catches :class:`EqcgError` and prints its message without a traceback.
"""


class EqcgError(Exception):
    """Base class of every error eqcg raises on purpose."""


class DataError(EqcgError):
    """Bad input data: wrong shapes, missing bonds, NaN coordinates, truncated files."""


class ConfigError(EqcgError):
    """An invalid configuration: unknown or mistyped key, bad value."""


class CheckpointError(EqcgError):
    """A checkpoint that cannot be read (corrupt, truncated, wrong format)."""


class SimulationError(EqcgError):
    """A simulation that failed: a LAMMPS error, or a learned rollout that exploded."""


class OutputError(EqcgError):
    """An output directory eqcg may not write: not a directory, holding another kind of output
    or a finished one, or being written by another process."""


class FileSystemError(EqcgError):
    """The operating system refused a read or write (read-only file system, no space left,
    permission, name too long): says which file and what was being done."""
