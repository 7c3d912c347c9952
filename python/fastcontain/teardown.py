"""Teardown off the critical path: `run()` returns once its container has exited and been
reaped; removing what it owned (the state dir with its overlay layer, later its cgroup)
continues on one background worker.

The queue is bounded (`MAX_PENDING`): when the worker falls behind, `defer` blocks the
caller until there is room, so teardowns cannot pile up. Everything pending is done by
`flush()` (also run at interpreter exit); a failure is kept and raised by the next
`flush()`, naming what could not be removed. If the process dies first, what was left
is unlocked and the next start's sweep removes it (state.sweep).
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
from typing import Callable

from .errors import FastcontainError

MAX_PENDING = int(os.environ.get("FASTCONTAIN_TEARDOWN_QUEUE", "64"))


class TeardownError(FastcontainError):
    """A background teardown failed; the message says which and why."""


class _Worker:
    def __init__(self, bound: int) -> None:
        self._queue: queue.Queue[tuple[Callable[[], None], str] | None] = queue.Queue(bound)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._errors: list[str] = []
        self._pid = os.getpid()

    def _ensure(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's worker is not ours
            self.__init__(self._queue.maxsize)  # type: ignore[misc]
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                t = threading.Thread(target=self._loop, name="fastcontain-teardown", daemon=True)
                t.start()
                self._thread = t

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, what = item
                try:
                    _wait_mount_ns_closed()  # what a state dir's removal needs gone first
                    fn()
                except BaseException as e:  # kept for flush(): a worker must not die
                    self._errors.append(f"{what}: {e}")
            finally:
                self._queue.task_done()

    def defer(self, fn: Callable[[], None], what: str) -> None:
        self._ensure()
        self._queue.put((fn, what))  # blocks while MAX_PENDING are waiting: the bound

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def flush(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            self._queue.join()
        _wait_mount_ns_closed()
        if self._errors:
            errors, self._errors = self._errors, []
            raise TeardownError("background teardown failed: " + "; ".join(errors))


_worker = _Worker(MAX_PENDING)


def _wait_mount_ns_closed() -> None:
    """Wait for the mount namespaces that finished containers held (spec hold_mount_ns,
    closed on a native thread: their teardown, the overlay's unmount above all, happens
    off the caller's path) to be gone; at once when there are none."""
    try:
        from . import _native
    except ImportError:  # no native module: nothing was held
        return
    wait = getattr(_native, "wait_mount_ns_closed", None)  # absent from the unit tests' stand-in
    if wait is not None:
        wait()


def defer(fn: Callable[[], None], what: str = "teardown") -> None:
    """Run `fn` on the teardown worker; blocks while the queue is full."""
    _worker.defer(fn, what)


def pending() -> int:
    """Teardowns queued or running."""
    return _worker.pending()


def flush() -> None:
    """Wait until every deferred teardown is done; raise TeardownError if any failed."""
    _worker.flush()


@atexit.register
def flush_reporting() -> None:
    """flush(), printing a failure on stderr instead of raising (at exit, in the CLI)."""
    try:
        flush()
    except TeardownError as e:
        print(f"fastcontain: {e}", file=sys.stderr)
