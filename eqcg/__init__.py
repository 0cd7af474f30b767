"""eqcg: E(3)-equivariant learned coarse-grained molecular dynamics with huge time steps.

The objects a user touches, importable from ``eqcg`` (loaded on first use)::

    dataset = eqcg.load_dataset("data/polymer")               # trajectories on disk
    mapping = eqcg.compute_mapping(dataset[0].topology, eqcg.CGSettings(cg_level=3))
    config = eqcg.load_config("configs/polymer_equivariant.yaml")
    result = eqcg.train(config, "data/polymer", "runs/poly-eq")
    simulator, config, _ = eqcg.load_simulator("runs/poly-eq")
    eqcg.run_rollout("runs/poly-eq", "data/polymer", "rollouts/poly-eq", n_steps=100)
    eqcg.simulate("runs/poly-eq", eqcg.SystemFiles(topology="new.data",
                  trajectories=["new.dump"], timestep=0.01), "rollouts/new", n_steps=100)
    eqcg.evaluate("rollouts/poly-eq", "data/polymer", "reports/poly-eq")

The packages, lowest layer first: ``data`` (trajectories on disk) -> ``cg`` / ``systems`` /
``metrics`` -> ``graphs`` -> ``models`` -> ``simulation`` / ``training`` -> ``evaluation`` ->
``commands`` (the ``eqcg`` command line, ablations); beside them ``config`` and ``runtime``
(atomic writes, output ownership, interrupts, process groups) serve every layer. Module paths
of eqcg 0.1 (``eqcg.train.trainer``, ``eqcg.atomic``, ...) still import, with a
:class:`DeprecationWarning` (:mod:`eqcg.runtime.moved_modules`).
"""

from importlib import import_module
from typing import Any

from eqcg.runtime import moved_modules

__version__ = "0.2.0"

_EXPORTS = {
    "SystemTrajectory": "eqcg.data.trajectory",
    "Topology": "eqcg.data.trajectory",
    "TrajectoryDataset": "eqcg.data.store",
    "load_dataset": "eqcg.data.store",
    "write_dataset": "eqcg.data.store",
    "ingest": "eqcg.data.ingest",
    "CGSettings": "eqcg.cg.mapping",
    "CGMapping": "eqcg.cg.mapping",
    "compute_mapping": "eqcg.cg.mapping",
    "CGSystem": "eqcg.graphs.system",
    "TypeVocabulary": "eqcg.graphs.system",
    "WindowDataset": "eqcg.graphs.windows",
    "Config": "eqcg.config",
    "load_config": "eqcg.config",
    "Simulator": "eqcg.models.simulator",
    "variants": "eqcg.models.registry",
    "system_kinds": "eqcg.systems.registry",
    "train": "eqcg.training.trainer",
    "load_simulator": "eqcg.models.checkpoint",
    "rollout": "eqcg.simulation.rollout",
    "RolloutConfig": "eqcg.config",
    "run_rollout": "eqcg.simulation.runner",
    "RolloutOptions": "eqcg.simulation.runner",
    "simulate": "eqcg.simulation.new_system",
    "SystemFiles": "eqcg.simulation.new_system",
    "BuiltinSystem": "eqcg.simulation.new_system",
    "evaluate": "eqcg.evaluation.report",
    "compare": "eqcg.evaluation.comparison",
    "measure_equivariance": "eqcg.simulation.equivariance",
    "run_ablation": "eqcg.commands.ablation",
    "generate_polymer": "eqcg.systems.polymer",
    "generate_electrolyte": "eqcg.systems.electrolyte",
}

__all__ = sorted(_EXPORTS)
moved_modules.install()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'eqcg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
