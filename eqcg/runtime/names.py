"""Names that become file names or HDF5 groups: system, variant and species names.

A name is checked where it enters (``ingest --name``, an ablation spec's variants, a dataset
being written): it must be one path component that cannot climb out of its directory or open
an HDF5 subgroup.
"""

from __future__ import annotations

import unicodedata

from eqcg.errors import ConfigError, EqcgError

MAX_NAME_BYTES = 200  # file names are at most 255 bytes; room for suffixes such as ".pdb"


def check_name(name: object, what: str, error: type[EqcgError] = ConfigError) -> str:
    """``name`` if it is a safe single path component; else ``error`` naming ``what``
    (``--name``, ``variant``) and why."""
    if not isinstance(name, str) or not name:
        raise error(f"{what} {name!r}: must be a non-empty text")
    problem = None
    if name in (".", ".."):
        problem = "is a relative directory"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator ('/' or '\\'); it names a file or HDF5 group"
    elif name.startswith("-"):
        problem = "starts with '-' (it would read as a command-line option)"
    elif name != name.strip():
        problem = "starts or ends with white space"
    elif any(unicodedata.category(c).startswith("C") for c in name):
        problem = "contains a control or unprintable character"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem is not None:
        raise error(f"{what} {name!r}: {problem}; use letters, digits, '.', '_' or '-'")
    return name
