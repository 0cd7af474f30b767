"""Whether results that meet belong together: a rollout and its reference, reports compared.

A rollout records the content hash of the dataset it started from (``run.json``:
``dataset_hash``, :attr:`~eqcg.data.store.TrajectoryDataset.content_hash`); a reference with
another hash (another seed's systems under the same names, say) is refused unless forced, and
then the report says so. A reference's time axes must run forward. Reports put side by side
must be in one unit system and over the same systems (unless the comparison allows them mixed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from eqcg.data.store import TrajectoryDataset
from eqcg.errors import DataError
from eqcg.evaluation.results import METRICS_FILE, EvaluationSummary
from eqcg.runtime.boundary import doing, read_json
from eqcg.runtime.run_info import RUN_INFO_FILE


def rollout_record(rollout_dir: str | os.PathLike) -> dict:
    """What ``eqcg rollout`` recorded in the rollout's ``run.json`` (empty without one)."""
    path = Path(rollout_dir) / RUN_INFO_FILE
    return read_json(path, "the rollout's record") if path.is_file() else {}


def check_reference(rollout_dir: str | os.PathLike, reference: TrajectoryDataset,
                    force: bool = False) -> str | None:
    """``None`` when ``reference`` is the dataset the rollout started from (or the rollout
    records none); otherwise a :class:`DataError`, or with ``force`` the note the report
    carries."""
    record = rollout_record(rollout_dir)
    recorded = record.get("dataset_hash")
    if recorded is None:
        return None
    actual = reference.content_hash
    if actual == recorded:
        return None
    message = (f"the reference {reference.path} is not the dataset {rollout_dir} was rolled out "
               f"from ({record.get('data', 'unknown')}): its content hash is {actual[:16]}, the "
               f"rollout's dataset's {recorded[:16]}")
    if not force:
        raise DataError(f"{message}; evaluate against that dataset, or pass --force-reference "
                        "to compare anyway")
    return f"forced with --force-reference: {message}"


def check_time_axes(reference: TrajectoryDataset) -> None:
    """:class:`DataError` naming the first system and frame whose time does not advance."""
    for system in reference:
        time = np.asarray(system.time)
        stalled = np.flatnonzero(~(np.diff(time) > 0))
        if stalled.size:
            frame = int(stalled[0]) + 1
            raise DataError(f"{reference.path}: system {system.name!r}: frame {frame}: time "
                            f"{time[frame]} does not advance past {time[frame - 1]}; a reference "
                            "trajectory must run forward in time")


def read_report(report_dir: str | os.PathLike) -> EvaluationSummary:
    """The evaluation in ``report_dir``; a damaged ``metrics.json`` is a :class:`DataError`."""
    path = Path(report_dir) / METRICS_FILE
    with doing("reading the report", path):
        try:
            return EvaluationSummary.read(report_dir)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"reading the report {path}: not an evaluation eqcg wrote (missing "
                            f"or mistyped {exc})") from None


def _names(names: list[str], limit: int = 5) -> str:
    """Up to ``limit`` of ``names``, with how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_comparable(directories: list[Path], summaries: list[EvaluationSummary]) -> None:
    """:class:`DataError` unless all reports share one unit system and evaluate the same
    systems (a held-out subset or a partial rollout is legitimate, but one table would then
    put numbers over different systems side by side): the message names what differs."""
    def describe(summary: EvaluationSummary) -> str:
        units = summary.units
        return f"{units.get('name')} ({units.get('length')}, {units.get('time')})"

    first = summaries[0]
    for directory, summary in zip(directories[1:], summaries[1:]):
        if summary.units.get("name") != first.units.get("name"):
            raise DataError(
                f"{directories[0]} is in {describe(first)} units, {directory} in "
                f"{describe(summary)}: one table would mix them; compare reports of one unit "
                "system, or pass --allow-mixed")
        if set(summary.systems) != set(first.systems):
            only = [(d, sorted(set(a.systems) - set(b.systems)))
                    for d, a, b in ((directories[0], first, summary),
                                    (directory, summary, first))]
            differs = "; ".join(f"only in {d}: {_names(names)}" for d, names in only if names)
            raise DataError(
                f"{directories[0]} and {directory} evaluate different systems "
                f"({len(first.systems)} and {len(summary.systems)}; {differs}): one table "
                "would put numbers over different systems side by side; compare reports of "
                "the same systems, or pass --allow-mixed")
