"""A stand-in for fastcontain._native that runs the spec's argv as a plain host process,
and for the cgroup manager (no cgroup is made: the unit tier touches no kernel object).

It keeps the contract of _native.pyi (spawn, Child with pid/pidfd/returncode/start/wait/
poll/send_signal/close, SpawnError for a failed execve), so the Python layer's plumbing
(pipes, timeouts, teardown, exit codes) is tested without root or namespaces."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import types
from typing import Any, Mapping

import pytest

from fastcontain.errors import SpawnError


class Child:
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.proc: subprocess.Popen[bytes] | None = None
        self._pidfd = -1
        self.closed = False
        # like clone, keep the stdio the spec names: the caller closes its copies after spawn
        self._stdio = [os.dup(fd) if fd >= 0 else None for fd in spec["stdio"]]
        if not spec["wait_for_start"]:
            self._exec()

    def _exec(self) -> None:
        argv = self.spec["argv"]
        error = None
        if "/" not in argv[0] and shutil.which(argv[0]) is None or "/" in argv[0] and not os.path.exists(argv[0]):
            error = errno.ENOENT
        elif "/" in argv[0] and not os.access(argv[0], os.X_OK):
            error = errno.EACCES
        if error is not None:
            self._close_stdio()  # the child is gone: nothing keeps its stdio
            raise SpawnError(f"execve of {argv[0]} failed", step="execve", errno=error, path=argv[0])
        stdio = self._stdio
        try:
            self.proc = subprocess.Popen(argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
        finally:
            self._close_stdio()
        self._pidfd = os.pidfd_open(self.proc.pid)

    def _close_stdio(self) -> None:
        for fd in set(self._stdio) - {None}:
            os.close(fd)  # type: ignore[arg-type]
        self._stdio = [None, None, None]

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else os.getpid()

    @property
    def pidfd(self) -> int:
        return self._pidfd

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def usage(self) -> dict[str, float] | None:
        return None if self.returncode is None else {"utime": 0.0, "stime": 0.0, "maxrss": 0}

    @property
    def started(self) -> bool:
        return self.proc is not None

    @property
    def paused_before_pivot(self) -> bool:
        return bool(self.spec.get("pause_before_pivot")) and not getattr(self, "_resumed", False)

    def resume_setup(self) -> None:
        if not self.paused_before_pivot:
            raise SpawnError("the container does not wait before pivot_root", step="wait for the createRuntime and "
                             "createContainer hooks", errno=errno.EINVAL)
        self._resumed = True

    def start(self) -> None:
        if self.paused_before_pivot:
            raise SpawnError("the container waits before pivot_root: resume_setup() comes before start",
                             step="start", errno=errno.EINVAL)
        self._exec()

    def wait(self, timeout: float | None = None) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def send_signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_stdio()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self.closed = True


class Cgroup:
    """What api needs of fastcontain.cgroups.Cgroup, recording what was asked of it."""

    def __init__(self, cid: str, resources: Any, owner: str | None) -> None:
        self.id, self.resources, self.owner = cid, resources, owner
        self.fd: int | None = None
        self.dirs: dict[str, str] = {}  # none: a v1 attach goes through attach(); the CPU watchdog reads /proc
        self.needs_attach = False
        self.attached: list[int] = []
        self.kills = 0
        self.removed = False
        self.oom = 0

    def attach(self, pid: int) -> None:
        self.attached.append(pid)

    def kill(self) -> None:
        self.kills += 1

    def oom_kills(self) -> int:
        return self.oom

    def memory_peak(self) -> int | None:
        return None

    def stats(self) -> dict[str, int | None]:
        return {"cpu_usage_us": 0, "memory_current": None, "memory_peak": None, "pids_current": 1,
                "oom_kills": self.oom, "io_read_bytes": None, "io_write_bytes": None}

    def remove(self) -> None:
        assert not self.removed, "a cgroup is removed once"
        self.removed = True


class Manager:
    def __init__(self) -> None:
        self.cgroups: list[Cgroup] = []
        self.needs_attach = False  # what the next cgroups say (a v1 host's)
        self.oom = 0

    def create(self, cid: str, resources: Any = None, owner: str | None = None) -> Cgroup:
        cg = Cgroup(cid, resources, owner)
        cg.needs_attach, cg.oom = self.needs_attach, self.oom
        self.cgroups.append(cg)
        return cg


def install(monkeypatch: pytest.MonkeyPatch, spawn: Any = None) -> types.SimpleNamespace:
    """Put the fake in place of fastcontain._native and of the cgroup manager; returns
    it, recording the children (and, in `cgroups`, the fake manager)."""
    import fastcontain
    from fastcontain import cgroups

    children: list[Child] = []
    manager = Manager()
    monkeypatch.setattr(cgroups, "manager", lambda: manager)
    # its children share this process's network namespace: none is made ahead for them
    monkeypatch.setenv("FASTCONTAIN_NETNS_REFILL", "0")

    def default_spawn(spec: Mapping[str, Any]) -> Child:
        child = Child(spec)
        children.append(child)
        return child

    # compiling a seccomp filter is pure computation: the real one serves
    from fastcontain import _native as real

    fake = types.SimpleNamespace(
        spawn=spawn or default_spawn, Child=Child, children=children, cgroups=manager,
        compile_seccomp=real.compile_seccomp,
    )
    monkeypatch.setitem(sys.modules, "fastcontain._native", fake)
    monkeypatch.setattr(fastcontain, "_native", fake, raising=False)
    return fake
