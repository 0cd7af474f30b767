"""The MD ceiling of a dataset: how well its own MD ranks diffusivities over systems.

A model judged against the MD cannot rank systems by diffusivity better than the MD ranks them
itself. For each chosen system, coarse-grained with a run's CG settings, :func:`system_ceiling`
fits the diffusivity D of every bead species (and of the chains' centres of mass) over the
whole trajectory, with its standard error over beads, and over each half of it fitted as a
trajectory of its own: the numbers ``eqcg evaluate`` reports as the ``reference`` view and as
``reference_half1/2`` (:func:`~eqcg.evaluation.properties.dynamic_properties`,
:func:`~eqcg.evaluation.system_evaluation.trajectory_halves`). Over the systems, per species,
the halves' agreement (:func:`~eqcg.evaluation.aggregate.agreement_entry`: Spearman with its
bootstrap 95 % interval, the fractions within 1.5x and 2x; evaluate's ``md_halves``) is the MD
ceiling; the set can rank Li+ mobility when the Li Spearman is at least :data:`RANKS_AT`.

Command line: ``benchmarks/md_ceiling.py`` writes :func:`write_ceiling`'s files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqcg.cg.mapping import CGSettings
from eqcg.config import DataConfig
from eqcg.data.store import TrajectoryDataset
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import DataError
from eqcg.evaluation import plots
from eqcg.evaluation.aggregate import agreement_entry
from eqcg.evaluation.beads import reference_beads
from eqcg.evaluation.markdown import fmt, image, table
from eqcg.evaluation.properties import (
    DEFAULT_OPTIONS,
    PropertyOptions,
    TrajectoryProperties,
    dynamic_properties,
)
from eqcg.evaluation.results import AgreementEntry, Record
from eqcg.evaluation.system_evaluation import trajectory_halves
from eqcg.graphs.windows import split_of
from eqcg.metrics.agreement import MIN_SYSTEMS
from eqcg.metrics.dynamics import diffusivity_unit
from eqcg.runtime.atomic import write_text_atomic
from eqcg.units import unit_system

LI = "Li"  # the species whose ranking the verdict is about
RANKS_AT = 0.9  # the halves' Spearman at which a set can rank a species' mobility
PARTS = ("whole", "half1", "half2")  # the fits of each species: whole trajectory, each half
CEILING_FILES = ("md_ceiling.json", "md_ceiling.md", "md_ceiling.png")


@dataclass
class SystemCeiling(Record):
    """The diffusivities of one system's MD.

    Attributes:
        n_frames: frames of the whole trajectory (each half: ``n_frames // 2``).
        span: simulated time of the whole trajectory (ps or tau).
        conditions: ``temperature`` (K or LJ) and the salt attrs the system holds
            (:attr:`~eqcg.data.trajectory.SystemTrajectory.conditions`).
        n_beads: species -> its beads.
        diffusivity: species -> :data:`PARTS` -> the fit's record of ``metrics.json``
            (:meth:`~eqcg.evaluation.properties.TrajectoryProperties.summary`: ``value`` and
            ``stderr`` in cm^2/s for real units, ``value_native`` in length^2/time) plus
            ``stderr_native``; ``None`` where the fit failed.
    """

    n_frames: int
    span: float
    conditions: dict[str, float]
    n_beads: dict[str, int]
    diffusivity: dict[str, dict[str, dict[str, object] | None]]

    def value(self, species: str, part: str) -> float:
        """D of ``species`` over ``part`` in the reported unit (NaN: no fit or no species)."""
        record = self.diffusivity.get(species, {}).get(part)
        return float(record["value"]) if record is not None else float("nan")


@dataclass
class SpeciesCeiling(Record):
    """The MD ceiling of one species over the chosen systems.

    Attributes:
        agreement: half 1 (reference side) vs half 2 over the systems with both fits.
        ranks: the halves' Spearman is at least :data:`RANKS_AT` (``None``: fewer than
            :data:`~eqcg.metrics.agreement.MIN_SYSTEMS` systems).
    """

    agreement: AgreementEntry
    ranks: bool | None


@dataclass
class MDCeiling(Record):
    """The MD ceiling of a dataset (the JSON layout of ``md_ceiling.json``).

    Attributes:
        dataset: the dataset file.
        units: ``diffusivity`` (the reported unit), ``native`` (length^2/time), ``time``.
        cg_settings: the CG settings the systems were coarse-grained with.
        stride: frames per learned step (:func:`system_ceiling`).
        verdict: :func:`verdict`.
        species: species -> its ceiling over the systems, Li first.
        systems: system name -> its diffusivities.
    """

    dataset: str
    units: dict[str, str]
    cg_settings: dict[str, int]
    stride: int
    verdict: str
    species: dict[str, SpeciesCeiling]
    systems: dict[str, SystemCeiling]


def select_systems(
    dataset: TrajectoryDataset, data: DataConfig, which: Sequence[str]
) -> list[str]:
    """The systems ``which`` names: ``["test"]`` the test split of ``data`` (as training
    splits the dataset), ``["all"]`` every system, else the names themselves."""
    if list(which) == ["all"]:
        return dataset.names
    if list(which) == ["test"]:
        return split_of(dataset.names, [s.n_atoms for s in dataset.systems], data)[2]
    unknown = sorted(set(which) - set(dataset.names))
    if unknown:
        raise DataError(f"{dataset.path}: no systems {unknown}; it has {dataset.names}")
    return list(which)


def _diffusivities(props: TrajectoryProperties) -> dict[str, dict[str, object] | None]:
    """Species -> the D record of ``metrics.json`` with ``stderr_native`` added."""
    records = props.summary()["diffusivity"]
    for species, fit in props.diffusivity.items():
        if fit is not None:
            records[species]["stderr_native"] = fit.stderr
    return records


def system_ceiling(
    system: SystemTrajectory,
    settings: CGSettings,
    stride: int = 1,
    options: PropertyOptions = DEFAULT_OPTIONS,
) -> SystemCeiling:
    """D of every species of ``system`` coarse-grained with ``settings``, over the whole
    trajectory and each half; ``stride``: frames per learned step (the steps of the chains'
    centre-of-mass fit window, :attr:`PropertyOptions.com_fit_window_steps`)."""
    beads = reference_beads(system, settings)
    parts = dict(zip(PARTS, (beads, *trajectory_halves(beads)), strict=True))
    fits = {part: _diffusivities(dynamic_properties(traj, options, stride))
            for part, traj in parts.items()}
    species = list(fits["whole"])
    return SystemCeiling(
        n_frames=beads.n_frames, span=beads.span, conditions=system.conditions,
        n_beads={name: int((beads.species == i).sum())
                 for i, name in enumerate(beads.species_names)},
        diffusivity={name: {part: fits[part].get(name) for part in PARTS} for name in species})


def species_ceiling(systems: Sequence[SystemCeiling], species: str) -> SpeciesCeiling:
    """The halves' agreement of ``species``' D over ``systems``."""
    entry = agreement_entry(np.array([s.value(species, "half1") for s in systems]),
                            np.array([s.value(species, "half2") for s in systems]))
    rho = entry.spearman_rho
    return SpeciesCeiling(entry, None if rho is None or np.isnan(rho) else rho >= RANKS_AT)


def verdict(species: dict[str, SpeciesCeiling]) -> str:
    """Whether the set can rank Li+ mobility, in words."""
    if LI not in species:
        return f"no {LI} species: no Li+ verdict"
    rho = species[LI].agreement.spearman_rho
    if rho is None:
        return f"Li+ Spearman n/a (needs >= {MIN_SYSTEMS} systems): no Li+ verdict"
    if species[LI].ranks is None:
        return "Li+ Spearman undefined (a half's D is the same in every system): no Li+ verdict"
    if species[LI].ranks:
        return f"Li+ Spearman {rho:.3f} >= {RANKS_AT}: the set can rank Li+ mobility"
    return f"Li+ Spearman {rho:.3f} < {RANKS_AT}: the set cannot rank Li+ mobility"


def md_ceiling(
    dataset: TrajectoryDataset,
    names: Sequence[str],
    settings: CGSettings,
    stride: int = 1,
    options: PropertyOptions = DEFAULT_OPTIONS,
) -> MDCeiling:
    """The MD ceiling of systems ``names`` of ``dataset`` (see the module docstring)."""
    systems = {name: system_ceiling(dataset[name], settings, stride, options) for name in names}
    species = sorted(dict.fromkeys(name for s in systems.values() for name in s.diffusivity),
                     key=lambda name: name != LI)  # Li first, the rest in order of appearance
    per_species = {name: species_ceiling(list(systems.values()), name) for name in species}
    system = unit_system(dataset.units)
    return MDCeiling(
        dataset=str(dataset.path),
        units={"diffusivity": diffusivity_unit(dataset.units)[1],
               "native": f"{system.length}^2/{system.time}",
               "time": system.time},
        cg_settings={"cg_level": settings.cg_level,
                     "whole_molecule_max_atoms": settings.whole_molecule_max_atoms,
                     "seed": settings.seed},
        stride=stride, verdict=verdict(per_species), species=per_species, systems=systems)


def _interval(entry: AgreementEntry, statistic: str) -> str:
    low, high = entry.intervals.get(statistic, (None, None))
    return f"[{fmt(low)}, {fmt(high)}]" if low is not None else "n/a"


def _species_table(ceiling: MDCeiling) -> str:
    rows = []
    for name, result in ceiling.species.items():
        entry = result.agreement
        spearman = (fmt(entry.spearman_rho) if entry.spearman_rho is not None
                    else f"n/a (needs >= {MIN_SYSTEMS} systems)")
        rows.append([name, entry.n, spearman, _interval(entry, "spearman_rho"),
                     entry.within_2x, entry.within_1_5x, result.ranks])
    return table(["species", "systems", "Spearman half 1 vs 2", "95 % interval",
                  "within 2x", "within 1.5x", f"ranks (>= {RANKS_AT})"], rows)


def _system_table(ceiling: MDCeiling, species: str) -> str:
    conditions = list(dict.fromkeys(key for s in ceiling.systems.values()
                                    for key in s.conditions))
    rows = []
    for name, system in ceiling.systems.items():
        whole = system.diffusivity.get(species, {}).get("whole") or {}
        half1, half2 = system.value(species, "half1"), system.value(species, "half2")
        rows.append([name, *(system.conditions.get(key) for key in conditions),
                     system.n_beads.get(species), whole.get("value"), whole.get("stderr"),
                     half1, half2, half2 / half1 if half1 else None])
    unit = ceiling.units["diffusivity"]
    return table(["system", *conditions, "beads", f"D [{unit}]", "stderr", "D half 1",
                  "D half 2", "half 2 / half 1"], rows)


def ceiling_markdown(
    ceiling: MDCeiling, figure: str | None = None, command: str | None = None
) -> str:
    """``md_ceiling.md``: the verdict, the halves' agreement per species and, per species,
    each system's D with its standard error and the D of its halves (``figure``: the PNG's
    file name and ``command``: the command line, shown when given)."""
    n = len(ceiling.systems)
    names = f"{n} system{'' if n == 1 else 's'} ({', '.join(ceiling.systems)})"
    lines = [f"# MD ceiling of {ceiling.dataset}", ""]
    if command is not None:
        lines += [f"`{command}`", ""]
    units = ceiling.units
    native = (f" (the JSON also in {units['native']})"
              if units["native"] != units["diffusivity"] else "")
    lines += [f"**{ceiling.verdict}**", "",
              f"{names}; CG settings {ceiling.cg_settings}. "
              f"D in {units['diffusivity']}{native}, fitted as `eqcg evaluate` fits the "
              "reference MD; its standard error is over beads taken as independent (a lower "
              "bound for the beads of one molecule). Halves: the first and second half of each "
              "trajectory, each fitted on its own.", "", _species_table(ceiling)]
    if figure is not None:
        lines += ["", image(figure, "D of half 2 against half 1, per species")]
    for species in ceiling.species:
        lines += ["", f"## {species}", "", _system_table(ceiling, species)]
    return "\n".join(lines) + "\n"


def ceiling_figure(ceiling: MDCeiling, path: str | Path) -> Path:
    """A PNG of half-2 D against half-1 D, one log-log panel per species, with the identity
    line."""
    unit = ceiling.units["diffusivity"]
    systems = list(ceiling.systems.values())
    panels = [plots.Panel(f"{species}: Spearman {fmt(result.agreement.spearman_rho)}",
                          f"D half 1 [{unit}]", f"D half 2 [{unit}]", kind="scatter",
                          series={species: ([s.value(species, "half1") for s in systems],
                                            [s.value(species, "half2") for s in systems])},
                          log=True, names=list(ceiling.systems))
              for species, result in ceiling.species.items()]
    return plots.draw(path, panels)


def write_ceiling(ceiling: MDCeiling, out: str | Path, command: str | None = None) -> list[Path]:
    """Write :data:`CEILING_FILES` (JSON, Markdown, PNG) into the directory ``out``
    (``command``: the command line the Markdown shows)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_file, markdown_file, figure_file = (out / name for name in CEILING_FILES)
    write_text_atomic(json_file, json.dumps(ceiling.to_dict(), indent=2))
    ceiling_figure(ceiling, figure_file)
    write_text_atomic(markdown_file, ceiling_markdown(ceiling, figure_file.name, command))
    return [json_file, markdown_file, figure_file]
