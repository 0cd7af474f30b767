"""Interruptions: SIGTERM (what batch schedulers send on preemption) is handled like Ctrl-C.

Inside :func:`interruptible` SIGINT and SIGTERM raise :class:`Interrupted`, a
:class:`KeyboardInterrupt`, so the code that saves state on Ctrl-C saves it on preemption too.
A signal that arrives inside an :func:`uninterrupted` block (an optimizer update, a write of
resumable state) is raised when the block ends, or earlier at a :func:`raise_pending` the block
calls where stopping is safe, so saved state is never half-updated. The
command line exits with ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_VERBS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Interrupted(KeyboardInterrupt):
    """An interruption by ``signum``; the message says what was saved and how to continue."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal behind ``exc`` (SIGINT for a plain :class:`KeyboardInterrupt`)."""
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


class _Deferral(threading.local):
    depth = 0
    pending: int | None = None


_deferral = _Deferral()


def _interruption(signum: int) -> Interrupted:
    name = signal.Signals(signum).name
    return Interrupted(f"{_VERBS[signal.Signals(signum)]} by {name}", signum)


def _handler(signum: int, frame: object) -> None:
    if _deferral.depth:
        _deferral.pending = signum
        return
    raise _interruption(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted`; the previous handlers
    are restored after. A signal that is ignored (or handled outside Python) is left alone;
    outside the main thread (where Python cannot install handlers) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: h for s in _SIGNALS if (h := signal.getsignal(s)) not in (signal.SIG_IGN, None)}
    for s in previous:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold back :func:`interruptible`'s signals until the block has finished."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
    if not _deferral.depth and _deferral.pending is not None:
        signum, _deferral.pending = _deferral.pending, None
        raise _interruption(signum)


def raise_pending() -> None:
    """Raise the interruption an :func:`uninterrupted` block is holding back, if any (a point
    in the block where stopping is safe); not inside an outer such block, which must finish."""
    if _deferral.depth <= 1 and _deferral.pending is not None:
        signum, _deferral.pending = _deferral.pending, None
        raise _interruption(signum)
