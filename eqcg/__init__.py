"""eqcg: E(3)-equivariant learned coarse-grained molecular dynamics with huge time steps.

The objects a user touches, importable from ``eqcg`` (loaded on first use)::

    dataset = eqcg.load_dataset("data/polymer")               # trajectories on disk
    mapping = eqcg.compute_mapping(dataset[0].topology, eqcg.CGSettings(cg_level=3))
    config = eqcg.load_config("configs/polymer_equivariant.yaml")
    result = eqcg.train(config, "data/polymer", "runs/poly-eq")
    simulator, config, _ = eqcg.load_simulator("runs/poly-eq")
    eqcg.run_rollout("runs/poly-eq", "data/polymer", "rollouts/poly-eq", n_steps=100)
    eqcg.evaluate("rollouts/poly-eq", "data/polymer", "reports/poly-eq")
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

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
    "CGSystem": "eqcg.data.graph",
    "TypeVocabulary": "eqcg.data.graph",
    "WindowDataset": "eqcg.data.windows",
    "Config": "eqcg.config",
    "load_config": "eqcg.config",
    "Simulator": "eqcg.models.simulator",
    "variants": "eqcg.models.registry",
    "train": "eqcg.train.trainer",
    "load_simulator": "eqcg.train.checkpoint",
    "rollout": "eqcg.simulate.rollout",
    "Refinement": "eqcg.simulate.rollout",
    "run_rollout": "eqcg.simulate.runner",
    "evaluate": "eqcg.evaluate.report",
    "compare": "eqcg.evaluate.report",
    "measure_equivariance": "eqcg.equivariance",
    "run_ablation": "eqcg.ablation",
    "generate_polymer": "eqcg.systems.polymer",
    "generate_electrolyte": "eqcg.systems.electrolyte",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'eqcg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
