"""Where a container's time goes: per-phase nanoseconds of each `run`, for benches.

    from fastcontain import profile
    with profile.record() as rec:
        fastcontain.run("busybox", ["true"])
    rec[0]   # {"resolve": ..., "compile": ..., "state": ..., "plan": ..., "clone": ...,
             #  "mounts": ..., "pivot": ..., "network": ..., "creds": ..., "exec": ...,
             #  "status": ..., "native_other": ..., "wait": ..., "teardown": ...}

Python phases (resolve the image, compile the spec, make the state dir, wait, the part of
the teardown on the caller's path) are timed around the calls; the native ones come from
`Child.timings` (building the plan, clone3, then the child's own steps until execve,
timestamped by the child itself). Recording is per thread and costs nothing when off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()
now = time.perf_counter_ns


@contextmanager
def record() -> Iterator[list[dict[str, int]]]:
    """Collect one dict of phase -> ns per container run by this thread inside the block."""
    stack: list[list[dict[str, int]]] = getattr(_local, "stack", None) or []
    _local.stack = stack
    rec: list[dict[str, int]] = []
    stack.append(rec)
    try:
        yield rec
    finally:
        stack[:] = [r for r in stack if r is not rec]


def active() -> bool:
    return bool(getattr(_local, "stack", None))


def emit(phases: dict[str, int]) -> None:
    for rec in getattr(_local, "stack", None) or ():
        rec.append(dict(phases))


class Phases:
    """Marks on one container's path: `mark(name)` ends the phase `name` now."""

    __slots__ = ("last", "phases")

    def __init__(self) -> None:
        self.last = now()
        self.phases: dict[str, int] = {}

    def mark(self, name: str) -> None:
        t = now()
        self.phases[name] = self.phases.get(name, 0) + t - self.last
        self.last = t

    def native(self, timings: dict[str, int], spent: str) -> None:
        """Split the native call that just ended (`spent`) into its parts: building the
        plan, clone3, the child's own steps (when it shared our memory), reading its
        status; what is left is the crossing into Rust ("native_other")."""
        total = self.phases.pop(spent, 0)
        inner = {"plan": timings.get("plan", 0)}
        if "child_clone" in timings:
            inner.update({k[len("child_"):]: v for k, v in timings.items() if k.startswith("child_")})
        else:
            inner["clone"] = timings.get("clone", 0)
        inner["status"] = timings.get("setup", 0)
        self.phases.update(inner)
        self.phases["native_other"] = max(0, total - sum(inner.values()))
