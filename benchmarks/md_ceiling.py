"""The MD ceiling of a dataset: can its own MD rank Li+ (and every bead species') mobility?

    python benchmarks/md_ceiling.py --data ablation-work/electrolyte_transport/data \\
        --spec configs/ablation/electrolyte_transport.yaml \\
        --out results/md_ceiling/electrolyte_transport

For every chosen system (``--systems``: the config's test split by default, ``all``, or names),
coarse-grained with the config's CG settings: each bead species' diffusivity D (cm^2/s for real
units, length^2/time as well in the JSON) with its standard error over the whole trajectory,
and the D of its first and second half, each fitted on its own as ``eqcg evaluate`` fits
``reference_half1/2``. Over the systems, per species: the Spearman of half-1 vs half-2 D with
its bootstrap 95 % interval and the fractions of systems whose halves agree within 2x and
1.5x; the set can rank Li+ mobility when the Li Spearman is >= 0.9 (needs >= 3 systems).
``data.dilation`` sets the learned step of the chains' centre-of-mass fit window, as in
evaluate. Prints the tables and writes ``md_ceiling.json``, ``md_ceiling.md`` and
``md_ceiling.png`` (half-2 against half-1 D per species, log-log) into ``--out``
(:mod:`eqcg.evaluation.ceiling`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from eqcg.cg.mapping import CGSettings
from eqcg.commands.ablation import load_spec
from eqcg.config import load_config
from eqcg.data.store import load_dataset
from eqcg.errors import EqcgError
from eqcg.evaluation.ceiling import ceiling_markdown, md_ceiling, select_systems, write_ceiling


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="an eqcg dataset (directory or .h5)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="run config giving the CG settings, split and dilation")
    source.add_argument("--spec", help="an ablation spec: its base config with its shared "
                                       "settings (the variants share the data section)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.dilation=10")
    parser.add_argument("--systems", nargs="+", default=["test"], metavar="NAME",
                        help="'test' (the config's test split), 'all' or system names")
    parser.add_argument("--out", required=True, help="directory for the result files")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/md_ceiling.py",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.spec is not None:
            spec = load_spec(args.spec)
            config = load_config(spec.config, spec.shared + args.set)
        else:
            config = load_config(args.config, args.set)
        with load_dataset(args.data) as dataset:
            names = select_systems(dataset, config.data, args.systems)
            ceiling = md_ceiling(dataset, names, CGSettings.from_config(config.data),
                                 stride=config.data.dilation)
    except EqcgError as exc:
        raise SystemExit(f"md_ceiling: {exc}") from None
    paths = write_ceiling(ceiling, args.out, command)
    print(ceiling_markdown(ceiling, command=command))
    print("wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    main()
