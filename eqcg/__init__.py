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

``train``, ``evaluate`` and ``simulate`` are also the names of subpackages
(``eqcg.train.trainer``, ``eqcg.evaluate.report``, ``eqcg.simulate.new_system``). Importing a
subpackage binds its name in ``eqcg``, so these names are the subpackages made callable:
``eqcg.train(...)`` calls :func:`eqcg.train.trainer.train` however often and in whatever order
the subpackages are used.
"""

import inspect
import sys
import types
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
    "CGSystem": "eqcg.graphs.system",
    "TypeVocabulary": "eqcg.graphs.system",
    "WindowDataset": "eqcg.graphs.windows",
    "Config": "eqcg.config",
    "load_config": "eqcg.config",
    "Simulator": "eqcg.models.simulator",
    "variants": "eqcg.models.registry",
    "system_kinds": "eqcg.systems.registry",
    "train": "eqcg.train.trainer",
    "load_simulator": "eqcg.models.checkpoint",
    "rollout": "eqcg.simulate.rollout",
    "RolloutConfig": "eqcg.config",
    "run_rollout": "eqcg.simulate.runner",
    "RolloutOptions": "eqcg.simulate.runner",
    "simulate": "eqcg.simulate.new_system",
    "SystemFiles": "eqcg.simulate.new_system",
    "BuiltinSystem": "eqcg.simulate.new_system",
    "evaluate": "eqcg.evaluate.report",
    "compare": "eqcg.evaluate.comparison",
    "measure_equivariance": "eqcg.equivariance",
    "run_ablation": "eqcg.ablation",
    "generate_polymer": "eqcg.systems.polymer",
    "generate_electrolyte": "eqcg.systems.electrolyte",
}

__all__ = sorted(_EXPORTS)
# exported functions named like their subpackage
_CALLABLE_PACKAGES = ("train", "evaluate", "simulate")


class _CallablePackage(types.ModuleType):
    """A subpackage that, called, calls the function of the same name that ``eqcg`` exports."""

    def _function(self) -> Any:
        name = self.__name__.rpartition(".")[2]
        return getattr(import_module(_EXPORTS[name]), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._function())


class _Eqcg(types.ModuleType):
    """``eqcg`` itself: makes :data:`_CALLABLE_PACKAGES` callable as the import binds them."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_PACKAGES and isinstance(value, types.ModuleType):
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Eqcg


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_PACKAGES:
        return import_module(f"{__name__}.{name}")  # binds the callable subpackage
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'eqcg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
