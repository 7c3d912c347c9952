"""Per-run limits: wall-clock time (`timeout=`) and CPU time (`cpu_time=`).

Both end the whole container (SIGKILL to its init, which takes its pid
namespace with it). The CPU limit is a watchdog in the waiting process, not
RLIMIT_CPU: an rlimit counts each process on its own (a container of N busy
processes would get N times the limit) and its SIGXCPU is ignored by a pid
namespace's init, while the watchdog bounds the sum over the container. It
samples the container's CPU time every `CPU_INTERVAL` seconds, from its
cgroup when the caller knows one (`sampler`), otherwise from /proc: the
utime+stime of every live process of the tree under the init plus the
cutime+cstime of what they reaped. So a run may overshoot the limit by about
one interval, and CPU used by processes that were never reaped (orphans a
non-init PID 1 ignores) is not seen without a cgroup.
"""

from __future__ import annotations

import os
import time
from typing import Callable

CPU_INTERVAL = 0.05
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and every descendant, live or reaped by a live one."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            tasks = os.listdir(f"/proc/{p}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/children", "rb") as f:
                    stack.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                pass
    return total / _TICK


class Limits:
    """The limits of one run, checked by whoever waits for it."""

    def __init__(
        self,
        timeout: float | None = None,
        cpu_time: float | None = None,
        sampler: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (("timeout", timeout), ("cpu_time", cpu_time)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        self.timeout = timeout
        self.cpu_time = cpu_time
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self._sampler = sampler
        self._next_sample = self.started
        self.last_cpu: float | None = None

    def __bool__(self) -> bool:
        return self.timeout is not None or self.cpu_time is not None

    def interval(self) -> float | None:
        """How long a waiter may sleep before the next check (None: forever)."""
        now = time.monotonic()
        waits = []
        if self.deadline is not None:
            waits.append(self.deadline - now)
        if self.cpu_time is not None and self._sampler is not None:
            waits.append(self._next_sample - now)
        return max(0.0, min(waits)) if waits else None

    def check(self) -> str | None:
        """'wall' or 'cpu' when that limit is passed, else None."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return "wall"
        if self.cpu_time is not None and self._sampler is not None and now >= self._next_sample:
            self._next_sample = now + CPU_INTERVAL
            if self._sample() > self.cpu_time:
                return "cpu"
        return None

    def watch(self, pid: int, sampler: Callable[[], float] | None = None) -> None:
        """Start the clocks (the command has just started) and sample the CPU time of the
        process tree under `pid` (or `sampler`, a cgroup's)."""
        self.started = time.monotonic()
        self.deadline = None if self.timeout is None else self.started + self.timeout
        self._next_sample = self.started
        self._sampler = sampler or (lambda: tree_cpu_seconds(pid))

    def sample(self) -> float | None:
        """The CPU seconds of the last sample, the last one before a kill included."""
        return self.last_cpu

    def _sample(self) -> float:
        assert self._sampler is not None
        self.last_cpu = self._sampler()
        return self.last_cpu
