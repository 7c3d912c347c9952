"""The result of a run: everything a judge or a benchmark harness asks, in one object."""

from __future__ import annotations

import subprocess
from typing import Any, Mapping


class Result(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """A CompletedProcess (args, returncode, stdout, stderr) with:

    - `exit_code`: the exit status, or None when a signal ended the process
      (then `signal` is its number; `returncode` is -signal, as subprocess's).
      Under `init=True` a command killed by signal N exits the init with 128+N,
      as docker's --init does: exit_code is 128+N and signal None.
    - `timed_out`: None, "wall" (`timeout=` passed) or "cpu" (`cpu_time=` passed).
    - `oom_killed`: whether the kernel's OOM killer killed a process of the
      container, read from its memory cgroup (never guessed from a SIGKILL;
      always False on a v1/hybrid host without a memory limit, where there is
      no memory cgroup to tell).
    - `wall_time`: seconds from the moment the caller saw the command start (its
      execve) to the moment it saw it exit.
    - `cpu_time` (= `user_time` + `system_time`): CPU seconds of the container's
      first process and every descendant it reaped, from waitid's rusage; with
      `cpu_time=` set, at least the watchdog's last sample of the whole tree
      (a container killed at its limit leaves children nobody reaped).
    - `peak_memory`: bytes. The container's memory cgroup's peak (memory.peak,
      memory.max_usage_in_bytes: every process together) where it has one;
      otherwise the largest resident set of its first process or of any
      descendant it reaped (ru_maxrss: a per-process peak, not the sum). None
      when rusage cannot tell it: the kernel folds a process's memory from
      before its execve into its ru_maxrss, and the container's first process
      is cloned from the caller, so a peak at or below the caller's own peak
      RSS may be the caller's and is not reported.
    """

    def __init__(
        self,
        args: Any,
        returncode: int,
        stdout: Any = None,
        stderr: Any = None,
        *,
        timed_out: str | None = None,
        wall_time: float = 0.0,
        usage: Mapping[str, float] | None = None,
        oom_killed: bool = False,
        cpu_seen: float | None = None,
        peak_memory: int | None = None,
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.exit_code: int | None = returncode if returncode >= 0 else None
        self.signal: int | None = -returncode if returncode < 0 else None
        self.timed_out = timed_out
        self.oom_killed = oom_killed
        self.wall_time = wall_time
        self.user_time: float | None = usage["utime"] if usage else None
        self.system_time: float | None = usage["stime"] if usage else None
        self.cpu_time: float | None = usage["utime"] + usage["stime"] if usage else None
        if cpu_seen is not None and (self.cpu_time is None or cpu_seen > self.cpu_time):
            self.cpu_time = cpu_seen  # what a cpu_time= watchdog saw of processes killed unreaped
        self.peak_memory: int | None = int(usage["maxrss"]) if usage and "maxrss" in usage else None
        if peak_memory is not None:
            self.peak_memory = peak_memory

    def __repr__(self) -> str:
        parts = [f"args={self.args!r}", f"returncode={self.returncode}"]
        if self.timed_out:
            parts.append(f"timed_out={self.timed_out!r}")
        if self.oom_killed:
            parts.append("oom_killed=True")
        if self.cpu_time is not None:
            parts.append(f"cpu_time={self.cpu_time:.3f}")
        parts.append(f"wall_time={self.wall_time:.3f}")
        if self.peak_memory is not None:
            parts.append(f"peak_memory={self.peak_memory}")
        for name in ("stdout", "stderr"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)!r}")
        return f"Result({', '.join(parts)})"
