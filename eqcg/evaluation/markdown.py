"""Small helpers that render numbers, tables and images as Markdown, and make data JSON-ready."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def json_ready(value: object) -> object:
    """``value`` with numpy scalars/arrays as Python values, tuples as lists, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt(value: object) -> str:
    """A table cell: 4 significant digits for numbers, ``n/a`` for missing, yes/no for flags."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (cells through :func:`fmt`; a ``|`` inside a cell is escaped)."""
    lines = ["| " + " | ".join(_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_escape(fmt(cell)) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def image(path: str, caption: str) -> str:
    """A Markdown image with its caption as alt text."""
    return f"![{caption}]({path})"
