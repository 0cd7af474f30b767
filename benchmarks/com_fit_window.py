"""Which MSD lag window measures a chain's centre-of-mass diffusivity best? An exact test.

    python benchmarks/com_fit_window.py --data ablation-work/polymer_medium/data

The built-in polymer chains are single chains in a Langevin bath without hydrodynamics, so the
centre of mass (COM) of each diffuses with exactly ``D = k T damp / M``
(:func:`eqcg.metrics.dynamics.exact_com_diffusivity`). For every candidate window this fits D
to each MD chain's COM MSD (a straight line with intercept, as ``eqcg evaluate`` does) and
reports the spread of ``D / D_exact`` over chains: median, mean, standard deviation, the 5-95 %
range and the fractions within 1.2x and 1.5x of exact. It also splits every trajectory into two
halves, fits each with the same window rule, and gives the halves' agreement over chains
(Spearman, within 1.5x, Pearson r²): the MD ceiling of a model-vs-MD comparison at that window.

Windows are lag fractions of the trajectory's longest lag, steps (frames of the dataset: one
learned step at ``data.dilation = 1``), or steps capped at the fraction window
(``PropertyOptions.com_fit_window_steps``, the rule evaluate applies). Writes
``<out>/com_fit_window.json`` and ``<out>/com_fit_window.md`` (default ``results/com_fit_window``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqcg.data.store import load_dataset
from eqcg.evaluation.markdown import json_ready, table
from eqcg.evaluation.properties import DEFAULT_OPTIONS, PropertyOptions, com_fit_window
from eqcg.metrics.agreement import agreement, within_factor
from eqcg.metrics.dynamics import exact_com_diffusivity, fit_diffusivity, mean_squared_displacement
from eqcg.metrics.structure import centres_of_mass

REPO = Path(__file__).resolve().parent.parent
FRACTION = DEFAULT_OPTIONS.fit_window_fraction  # the ends that capped windows obey


@dataclass(frozen=True)
class Window:
    """A candidate lag window: ``kind`` ``fraction`` (of the longest lag), ``steps`` (frames)
    or ``capped`` (steps, each end capped at its :data:`FRACTION` of the longest lag)."""

    kind: str
    first: float
    last: float

    @property
    def name(self) -> str:
        unit = "of span" if self.kind == "fraction" else "steps"
        capped = self.kind == "capped"
        cap = f", capped at {FRACTION[0]:g}-{FRACTION[1]:g} of span" if capped else ""
        return f"{self.first:g}-{self.last:g} {unit}{cap}"

    def lags(self, longest_lag: float, step: float) -> tuple[float, float]:
        """``(start, stop)`` lag times of a trajectory whose longest lag is ``longest_lag``."""
        if self.kind == "fraction":
            return self.first * longest_lag, self.last * longest_lag
        if self.kind == "steps":
            return self.first * step, self.last * step
        options = PropertyOptions(fit_window_fraction=FRACTION,
                                  com_fit_window_steps=(self.first, self.last))
        return com_fit_window(longest_lag, step, options)


CANDIDATES = (
    Window("fraction", 0.1, 0.5), Window("fraction", 0.01, 0.1), Window("fraction", 0.005, 0.1),
    Window("steps", 1, 5), Window("steps", 1, 10), Window("steps", 2, 10),
    Window("steps", 2, 20), Window("steps", 5, 20), Window("steps", 5, 50),
    Window("steps", 10, 50), Window("steps", 5, 100), Window("steps", 10, 100),
    Window("steps", 10, 200), Window("steps", 20, 400), Window("steps", 50, 500),
    Window("capped", 5, 50), Window("capped", 10, 200),
)


@dataclass
class Chain:
    """One MD chain: its COM trajectory ``(n_frames, 1, 3)``, frame times and exact D."""

    name: str
    com: np.ndarray
    time: np.ndarray
    exact: float


def read_chains(path: str) -> list[Chain]:
    """The chains of a polymer dataset whose exact COM diffusivity is known."""
    chains = []
    with load_dataset(path) as dataset:
        for system in dataset:
            top = system.topology
            molecules = top.molecules()
            exact = exact_com_diffusivity(system.attrs, system.units, top.masses, molecules)
            if exact is None:
                continue
            positions = np.asarray(system.positions[()], dtype=np.float64)
            chains.append(Chain(system.name, centres_of_mass(positions, top.masses, molecules),
                                np.asarray(system.time, dtype=np.float64), exact))
    return chains


def fitted(com: np.ndarray, time: np.ndarray, window: Window) -> float:
    """D of one COM trajectory over ``window`` (NaN where fewer than two lags fall in it)."""
    lag = time - time[0]
    try:
        start_stop = window.lags(lag[-1], lag[1])
        return fit_diffusivity(lag, mean_squared_displacement(com), window=start_stop).diffusivity
    except ValueError:
        return float("nan")


def window_statistics(chains: list[Chain], window: Window) -> dict[str, object]:
    """Spread of ``D / D_exact`` over chains and the agreement of the two halves' D."""
    ratio = np.array([fitted(c.com, c.time, window) / c.exact for c in chains])
    half = [c.time.shape[0] // 2 for c in chains]
    first = np.array([fitted(c.com[:h], c.time[:h], window) for c, h in zip(chains, half)])
    second = np.array([fitted(c.com[h:2 * h], c.time[h:2 * h], window)
                       for c, h in zip(chains, half)])
    finite = ratio[np.isfinite(ratio)]
    default = window == Window("capped", *DEFAULT_OPTIONS.com_fit_window_steps)
    out: dict[str, object] = {"window": window.name + (" (default)" if default else ""),
                              "n": int(finite.size)}
    if finite.size:
        out |= {"median": float(np.median(finite)), "mean": float(finite.mean()),
                "std": float(finite.std(ddof=1)) if finite.size > 1 else None,
                "p05": float(np.percentile(finite, 5)), "p95": float(np.percentile(finite, 95)),
                "within_1_2x": float(np.mean((finite >= 1 / 1.2) & (finite <= 1.2))),
                "within_1_5x": float(np.mean((finite >= 1 / 1.5) & (finite <= 1.5)))}
    try:
        halves = agreement(first, second)
        out |= {"halves_spearman": halves.spearman_rho,
                "halves_pearson_r2": halves.pearson_r_squared,
                "halves_within_1_5x": within_factor(first, second, 1.5)}
    except ValueError:
        out |= {"halves_spearman": None, "halves_pearson_r2": None, "halves_within_1_5x": None}
    out["ratios"] = {c.name: r for c, r in zip(chains, ratio)}
    return out


def markdown(rows: list[dict[str, object]], data: str, chains: list[Chain]) -> str:
    step = chains[0].time[1] - chains[0].time[0]
    span = chains[0].time[-1] - chains[0].time[0]
    columns = ["window", "n", "median", "mean", "std", "p05", "p95", "within_1_2x",
               "within_1_5x", "halves_spearman", "halves_within_1_5x", "halves_pearson_r2"]
    return "\n".join([
        "# Centre-of-mass diffusivity fit windows against the exact D", "",
        f"`python benchmarks/com_fit_window.py --data {data}`: {len(chains)} MD chains, "
        f"{chains[0].time.shape[0]} frames each, a step (frame) of {step:g} tau, span "
        f"{span:g} tau. Statistics of D x M / (kT damp) over chains (1 = exact); `halves_*`: "
        "agreement over chains of D from the first and second half of each trajectory, each "
        "fitted with the same window rule (the MD ceiling of a model-vs-MD comparison).", "",
        table(columns, [[row.get(c) for c in columns] for row in rows]), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="polymer dataset (directory or .h5)")
    parser.add_argument("--out", default=str(REPO / "results" / "com_fit_window"))
    args = parser.parse_args()
    chains = read_chains(args.data)
    if len(chains) < 3:
        raise SystemExit(f"{args.data}: {len(chains)} chains with an exact D; need 3")
    rows = [window_statistics(chains, window) for window in CANDIDATES]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "com_fit_window.json").write_text(json.dumps(json_ready(
        {"data": args.data, "n_chains": len(chains), "windows": rows}), indent=2))
    (out / "com_fit_window.md").write_text(markdown(rows, args.data, chains))


if __name__ == "__main__":
    main()
