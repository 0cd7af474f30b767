"""Import paths of eqcg 0.1's modules, kept working for one release with a warning.

eqcg 0.2 named its packages so that none collides with a function of the public API
(``eqcg.training`` is the package, :func:`eqcg.train` the function) and grouped the
infrastructure under :mod:`eqcg.runtime` and the command-line entry points under
:mod:`eqcg.commands`. ``import eqcg.train.trainer`` and the like still work: a finder maps an
old name to its new module with a :class:`DeprecationWarning`. The old names of the three
packages that now collide with a function (``eqcg.train``, ``eqcg.evaluate``,
``eqcg.simulate``) are bound in ``eqcg`` by such an import; they are bound to a stand-in that
forwards attribute access to the new package and calls to the function, so ``eqcg.train(...)``
keeps working after ``import eqcg.train.trainer``. All of this goes in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

# old module name -> new one; an old package name also maps every module below it
MOVED = {
    "eqcg.train": "eqcg.training",
    "eqcg.evaluate": "eqcg.evaluation",
    "eqcg.simulate": "eqcg.simulation",
    "eqcg.equivariance": "eqcg.simulation.equivariance",
    **{f"eqcg.{name}": f"eqcg.runtime.{name}"
       for name in ("arguments", "atomic", "boundary", "distributed", "interrupt", "names",
                    "outputs", "profiling", "run_info", "yaml_files")},
    **{f"eqcg.{name}": f"eqcg.commands.{name}" for name in ("ablation", "cli", "info")},
}
# old package name -> (module, name) of the function of ``eqcg`` it now collides with
FUNCTIONS = {"eqcg.train": ("eqcg.training.trainer", "train"),
             "eqcg.evaluate": ("eqcg.evaluation.report", "evaluate"),
             "eqcg.simulate": ("eqcg.simulation.new_system", "simulate")}


def new_name(old: str) -> str | None:
    """The current name of the module eqcg 0.1 called ``old`` (``None``: not moved)."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class _CallablePackage(types.ModuleType):
    """Stand-in for an old package name that is now also a function of ``eqcg``: attributes
    come from the new package, a call goes to the function."""

    def __init__(self, old: str, package: types.ModuleType):
        super().__init__(old, package.__doc__)
        self.__path__ = package.__path__
        self._package = package

    def __getattr__(self, name: str) -> Any:
        return getattr(self._package, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, name = FUNCTIONS[self.__name__]
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


class _Alias(importlib.abc.Loader):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(f"{self.old} is now {self.new}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.new)
        return _CallablePackage(self.old, module) if self.old in FUNCTIONS else module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is the new one, already imported."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds eqcg 0.1's module names (:data:`MOVED`) as their new modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname)
        if new is None:
            return None
        found = importlib.util.find_spec(new)
        if found is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, _Alias(fullname, new),
            is_package=found.submodule_search_locations is not None)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): before the path finder, which would
    otherwise load a module below an old package name a second time from the new package's
    directory."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
