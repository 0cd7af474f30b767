"""Count the host-device synchronisations a piece of code would make on CUDA, on any device.

On CUDA, ``torch.cuda.set_sync_debug_mode`` reports every synchronising call; on the CPU nothing
waits, so this counter names the calls that *would* wait: reading a tensor's value on the host
(``.item()``, ``bool(t)``, ``int(t)``, ``.tolist()``, ``.numpy()``, ``.cpu()``) and the
operators whose output size or error check needs the device's result first (``nonzero``,
boolean-mask indexing, ``unique``, ``torch.linalg`` calls that check for failures, ...).
Operators are seen through a :class:`~torch.utils._python_dispatch.TorchDispatchMode`;
``tolist``, ``numpy`` and ``cpu``, which do not reach the dispatcher for CPU tensors, are
counted by wrapping the :class:`torch.Tensor` methods while the counter is active. Checks that
PyTorch makes on the CPU only (``one_hot``'s class range; CUDA relies on a device assert) are
not counted. Each sync is recorded with the innermost line of ``eqcg`` that caused it.

    with HostSyncCounter() as counter:
        run()
    len(counter.syncs), counter.kinds()  # how many, and how many of each kind
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# operators that make the host wait for the device on CUDA, whatever their arguments
SYNCING_OPERATORS = frozenset({
    aten._local_scalar_dense.default,  # .item(), bool(t), int(t), float(t)
    aten.is_nonzero.default,
    aten.nonzero.default,  # also torch.where(condition)
    aten.masked_select.default,
    aten.equal.default,
    aten._linalg_check_errors.default,  # linalg.inv, cholesky, solve, ... (not their _ex forms)
    aten._linalg_eigh.default,  # checks convergence inside its kernel
    aten.linalg_matrix_exp.default,  # picks its degree from norms read on the host
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,  # sizes its output by the largest value
})
# host reads that reach no operator for CPU tensors
HOST_READS = ("tolist", "numpy", "cpu")
# functions whose syncs happen on the CPU only: (module, name)
CPU_ONLY_CHECKS = ((torch.nn.functional, "one_hot"),)
_PACKAGE = str(Path(__file__).resolve().parents[1])


class HostSync(NamedTuple):
    """One synchronisation: what (operator or method) and where (``eqcg/...py:line``)."""

    kind: str
    site: str


class HostSyncCounter(TorchDispatchMode):
    """A context manager recording host-device synchronisations (see the module docstring).

    Attributes:
        syncs: every synchronisation recorded, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[HostSync] = []
        self._paused = 0
        self._patched: list[tuple[object, str, Callable[..., Any]]] = []

    def kinds(self) -> Counter[str]:
        """``{operator or method: count}`` of the recorded syncs."""
        return Counter(sync.kind for sync in self.syncs)

    def __enter__(self) -> HostSyncCounter:
        for name in HOST_READS:
            self._patch(torch.Tensor, name, self._counted(f"Tensor.{name}"))
        for owner, name in CPU_ONLY_CHECKS:
            self._patch(owner, name, self._uncounted)
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()
        super().__exit__(*exc)

    def _patch(self, owner: object, name: str,
               wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        original = getattr(owner, name)
        self._patched.append((owner, name, original))
        setattr(owner, name, wrap(original))

    def _counted(self, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
            def counted(*args: Any, **kwargs: Any) -> Any:
                self._record(kind)
                return method(*args, **kwargs)

            return counted

        return wrap

    def _uncounted(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def uncounted(*args: Any, **kwargs: Any) -> Any:
            self._paused += 1
            try:
                return function(*args, **kwargs)
            finally:
                self._paused -= 1

        return uncounted

    def _record(self, kind: str) -> None:
        if not self._paused:
            self.syncs.append(HostSync(kind, _site()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _synchronises(func, args, kwargs):
            self._record(str(func))
        return func(*args, **kwargs)


def _synchronises(func: Any, args: tuple, kwargs: dict) -> bool:
    """Whether the call ``func(*args, **kwargs)`` makes the host wait on CUDA."""
    if func in SYNCING_OPERATORS:
        return True
    if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
        return any(i is not None and i.dtype == torch.bool for i in args[1])  # mask -> nonzero
    return func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None


def _site() -> str:
    """``eqcg/<file>:<line>`` of the innermost frame in the package outside this module, or
    ``""``."""
    for frame in reversed(traceback.extract_stack()):
        path = str(Path(frame.filename).resolve())
        if path.startswith(_PACKAGE) and not path.endswith("host_syncs.py"):
            return f"eqcg{path[len(_PACKAGE):]}:{frame.lineno}"
    return ""
