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

from . import nativefn as _nativefn
from .errors import FastcontainError

MAX_PENDING = int(os.environ.get("FASTCONTAIN_TEARDOWN_QUEUE", "64"))


class TeardownError(FastcontainError):
    """A background teardown failed; the message says which and why."""


class _Worker:
    """One daemon thread running deferred teardowns in order. Its queue is a C SimpleQueue
    with the bound and the count of unfinished work kept beside it under one plain lock:
    queue.Queue's Condition objects are Python code, run twice an item by the thread
    deferring (put, notify) and by the worker (get, task_done), each holding the GIL the
    threads starting containers wait for. A Condition is waited on, and notified, only
    when a caller finds the queue full or flushes."""

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._items: queue.SimpleQueue[tuple[Callable[[], None], str]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # callers wait here while `bound` items are queued
        self._idle = threading.Condition(self._lock)  # flush() waits here until nothing is unfinished
        self._queued = 0  # deferred and not yet taken by the worker
        self._unfinished = 0  # deferred and not yet done
        self._full_waiters = 0
        self._flushers = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._errors: list[str] = []
        self._pid = os.getpid()

    def _ensure(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's worker is not ours
            self.__init__(self._bound)  # type: ignore[misc]
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                t = threading.Thread(target=self._loop, name="fastcontain-teardown", daemon=True)
                t.start()
                self._thread = t

    def _loop(self) -> None:
        while True:
            fn, what = self._items.get()
            with self._lock:
                self._queued -= 1
                if self._full_waiters:
                    self._room.notify()
            try:
                _wait_mount_ns_closed()  # what a state dir's removal needs gone first
                fn()
            except BaseException as e:  # kept for flush(): a worker must not die
                self._errors.append(f"{what}: {e}")
            finally:
                with self._lock:
                    self._unfinished -= 1
                    if not self._unfinished and self._flushers:
                        self._idle.notify_all()

    def defer(self, fn: Callable[[], None], what: str) -> None:
        self._ensure()
        with self._lock:
            while self._queued >= self._bound:  # MAX_PENDING are waiting: the bound
                self._full_waiters += 1
                try:
                    self._room.wait()
                finally:
                    self._full_waiters -= 1
            self._queued += 1
            self._unfinished += 1
        self._items.put((fn, what))

    def try_defer(self, fn: Callable[[], None], what: str) -> bool:
        self._ensure()
        with self._lock:
            if self._queued >= self._bound:
                return False
            self._queued += 1
            self._unfinished += 1
        self._items.put((fn, what))
        return True

    def pending(self) -> int:
        return self._unfinished

    def full(self) -> bool:
        return self._queued >= self._bound

    def flush(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            with self._lock:
                while self._unfinished:
                    self._flushers += 1
                    try:
                        self._idle.wait()
                    finally:
                        self._flushers -= 1
        _wait_mount_ns_closed()
        for settle in _settlers:
            settle()
        if self._errors:
            errors, self._errors = self._errors, []
            raise TeardownError("background teardown failed: " + "; ".join(errors))


_worker = _Worker(MAX_PENDING)
_settlers: list[Callable[[], None]] = []


def on_flush(settle: Callable[[], None]) -> None:
    """Have flush() also wait for background work that is not on this worker's queue
    (`settle()` returns once it is done): network namespaces made ahead (netns.py)."""
    _settlers.append(settle)


def _wait_mount_ns_closed() -> None:
    """Wait for the mount namespaces that finished containers held (spec hold_mount_ns,
    closed on a native thread: their teardown, the overlay's unmount above all, happens
    off the caller's path) to be gone; at once when there are none."""
    wait = _nativefn.get("wait_mount_ns_closed")  # none: nothing was held
    if wait is not None:
        wait()


_batches = threading.local()


class batch:
    """What this thread defers inside goes to the worker as one item when the outermost
    batch ends, in the order deferred: one wake-up of the worker, one hand-over of the
    GIL to it and one wait for the held mount namespaces, where a run() made three
    (its network namespace's check, its cgroup, its state dir). A failure of one does
    not stop the others; each is reported by flush() under its own name. (A class, not
    a generator: it is on every run()'s path.)"""

    __slots__ = ("_items",)

    def __enter__(self) -> None:
        if getattr(_batches, "items", None) is not None:  # nested: the outermost submits
            self._items: list[tuple[Callable[[], None], str]] | None = None
            return
        self._items = _batches.items = []

    def __exit__(self, *exc: object) -> None:
        items = self._items
        if items is None:
            return
        _batches.items = None
        if len(items) == 1:
            _worker.defer(*items[0])
        elif items:
            _worker.defer(lambda: _run_all(items), "; ".join(what for _, what in items))


def _run_all(items: list[tuple[Callable[[], None], str]]) -> None:
    for fn, what in items:
        try:
            fn()
        except BaseException as e:  # kept for flush(), as the worker keeps its items'
            _worker._errors.append(f"{what}: {e}")


def defer(fn: Callable[[], None], what: str = "teardown") -> None:
    """Run `fn` on the teardown worker; blocks while the queue is full (in a batch():
    once the batch ends)."""
    items = getattr(_batches, "items", None)
    if items is not None:
        items.append((fn, what))
        return
    _worker.defer(fn, what)


def try_defer(fn: Callable[[], None], what: str = "background work") -> bool:
    """defer(), unless the queue is full: then nothing is queued and False (for work
    that may be skipped, such as checking a network namespace for reuse: netns.py)."""
    items = getattr(_batches, "items", None)
    if items is not None:
        if _worker.full():
            return False
        items.append((fn, what))
        return True
    return _worker.try_defer(fn, what)


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
