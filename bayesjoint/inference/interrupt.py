"""Clean interrupts: one SIGINT (Ctrl-C) or SIGTERM stops every chain and keeps what was drawn.

While :meth:`bayesjoint.JointInversion.sample` runs, :class:`StopSignals` holds the handlers of
SIGINT and SIGTERM. The first signal raises :class:`StopSampling` in the main process at once
(or, while a checkpoint is being written, right after the write), which leaves PyMC's sampling
loop whatever ``cores`` is: with one process no further chain starts, with several PyMC's
parallel sampler aborts its worker processes as the exception passes. Worker processes started
during the run that are still alive afterwards are terminated. Further signals while the run is
being wound up are ignored, so the draws are kept; the previous handlers are restored on return.
The draws kept are then handed to the caller in :class:`SamplingInterrupted`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["SamplingInterrupted", "StopSampling", "StopSignals", "exit_status"]

_log = logging.getLogger("bayesjoint")

#: The signals that stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    """Return the shell's exit status for a process stopped by ``signum`` (``128 + signum``).

    Examples
    --------
    >>> import signal
    >>> exit_status(signal.SIGINT), exit_status(signal.SIGTERM)
    (130, 143)
    """
    return 128 + int(signum)


class StopSampling(BaseException):
    """Raised inside the sampling loop by the first stop signal (internal).

    A :class:`BaseException` that is not a :class:`KeyboardInterrupt`, so that PyMC's per-chain
    ``except KeyboardInterrupt`` does not swallow it and start the next chain.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class SamplingInterrupted(KeyboardInterrupt):
    """A sampling run stopped by SIGINT or SIGTERM; carries the draws it kept.

    Attributes
    ----------
    signal_name : str
        ``"SIGINT"`` or ``"SIGTERM"``.
    exit_status : int
        130 for SIGINT, 143 for SIGTERM (``128 + signal number``), what a command exits with.
    idata : arviz.InferenceData or None
        The kept draws (None when no draw was kept, e.g. stopped while tuning): chains shorter
        than the longest are padded with NaN; the provenance says ``interrupted`` (the signal),
        ``complete = 0`` and ``draws_per_chain`` (the draws kept per chain).
    draws_per_chain : list of int
        Draws kept per chain (tuning draws are never kept).
    draws : int
        Draws per chain requested.
    checkpoint : str or None
        The checkpoint file the kept draws were written to.

    Notes
    -----
    A subclass of :class:`KeyboardInterrupt`, so an uncaught interrupt stops a program as Ctrl-C
    always does; catch it to keep going with the draws::

        try:
            idata = problem.sample(checkpoint="run.nc")
        except bj.SamplingInterrupted as stop:
            idata = stop.idata
    """

    def __init__(
        self,
        signum: int,
        idata: Any,
        draws_per_chain: list[int],
        draws: int,
        checkpoint: str | None = None,
    ):
        self.signal_name = signal.Signals(signum).name
        self.exit_status = exit_status(signum)
        self.idata = idata
        self.draws_per_chain = [int(n) for n in draws_per_chain]
        self.draws = int(draws)
        self.checkpoint = checkpoint
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line: the signal and the draws kept per chain (and where they are)."""
        where = f"; written to {self.checkpoint!r}" if self.checkpoint and self.idata else ""
        if not any(self.draws_per_chain):
            kept = "no draws kept (stopped before the first kept draw)"
        else:
            kept = (
                f"kept {sum(self.draws_per_chain)} draws: {self.draws_per_chain} of "
                f"{self.draws} per chain"
            )
        return f"sampling interrupted by {self.signal_name}: {kept}{where}"


class _DieWithParent:
    """After-fork hook: a forked sampler worker dies with the process that started it.

    PyMC's chain workers block on a pipe to the parent; when the parent is killed outright
    (SIGKILL, no handler runs) the pipe never closes for them, since each inherits the others'
    ends, and they would wait forever. On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the
    kernel to kill the worker when its parent dies.
    """

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self) -> None:
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            return
        if os.getppid() != self.parent:  # the parent died before the request took effect
            os._exit(1)


_STARTED_BY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RECORDING = {"count": 0, "start": None}
_RECORDING_LOCK = threading.Lock()
#: ``BaseProcess.start`` as multiprocessing defines it (the patch always calls this one, so a
#: thread that starts a process while the last context exits never finds it missing).
_ORIGINAL_START = multiprocessing.process.BaseProcess.start


def _recording_start(self: Any) -> None:
    """``BaseProcess.start`` that notes which thread started the process."""
    _STARTED_BY[self] = threading.get_ident()
    _ORIGINAL_START(self)


def _record_starts(on: bool) -> None:
    """Note the starting thread of every multiprocessing process while a context needs it."""
    process = multiprocessing.process.BaseProcess
    with _RECORDING_LOCK:
        if on:
            if _RECORDING["count"] == 0:
                _RECORDING["start"] = process.start
                process.start = _recording_start
            _RECORDING["count"] += 1
        else:
            _RECORDING["count"] -= 1
            if _RECORDING["count"] == 0:
                process.start = _RECORDING["start"]
                _RECORDING["start"] = None


class StopSignals:
    """Context manager that turns the first SIGINT/SIGTERM into :class:`StopSampling`.

    Handlers are installed only in the main thread (Python delivers signals there); elsewhere
    the context does nothing. On exit the previous handlers come back, and the multiprocessing
    children that the thread which entered the context started inside it (the sampler's chain
    workers) and that are still alive are terminated; processes started by other threads of
    the program are left alone.

    Attributes
    ----------
    signum : int or None
        The first stop signal received.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferred = 0
        self._pending = False
        self._previous: dict[int, Any] = {}
        self._children_before: set[Any] = set()
        self._die_with_parent: _DieWithParent | None = None
        self._thread: int | None = None
        self._recording = False

    def __enter__(self) -> StopSignals:
        self._children_before = set(multiprocessing.active_children())
        self._thread = threading.get_ident()
        _record_starts(True)
        self._recording = True
        try:
            if sys.platform.startswith("linux"):
                # registered while this context holds the hook (a weak registry): forks made
                # elsewhere, after the context, are left alone
                self._die_with_parent = _DieWithParent()
                multiprocessing.util.register_after_fork(
                    self._die_with_parent, _DieWithParent.__call__
                )
            if threading.current_thread() is threading.main_thread():
                for sig in STOP_SIGNALS:
                    self._previous[sig] = signal.signal(sig, self._handle)
        except BaseException:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous.clear()
            _record_starts(False)
            self._recording = False
            raise
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # already stopping: let the wind-up finish
            _log.warning("bayesjoint: %s ignored; keeping the draws", signal.Signals(signum).name)
            return
        self.signum = signum
        if self._deferred:
            self._pending = True
            return
        raise StopSampling(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a stop signal until the block (e.g. writing a checkpoint) has finished."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        if not self._deferred and self._pending:
            self._pending = False
            raise StopSampling(self.signum)

    def __exit__(self, *exc: Any) -> None:
        self._die_with_parent = None
        try:
            self.reap()
        finally:
            if self._recording:
                self._recording = False
                _record_starts(False)
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._previous = {}

    def reap(self) -> list[int]:
        """Terminate the children this context's thread started in it; return their pids."""
        stopped = []
        for child in multiprocessing.active_children():
            if child in self._children_before or _STARTED_BY.get(child) != self._thread:
                continue
            stopped.append(child.pid)
            child.terminate()
            child.join(5)
            if child.is_alive():  # pragma: no cover - a worker ignoring SIGTERM
                child.kill()
                child.join(5)
        return stopped
