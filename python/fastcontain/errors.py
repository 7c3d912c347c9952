"""fastcontain's exceptions. Python owns the hierarchy; the Rust core converts to it
in one place (rust/src/py.rs) by name."""

from __future__ import annotations

import errno as _errno
import os
import subprocess

TYPE_CHECKING = False  # typing is not imported at run time (fastcontain-oci starts per call)
if TYPE_CHECKING:
    from typing import Any


class FastcontainError(Exception):
    """Base of every error fastcontain raises."""


class ConfigError(FastcontainError, ValueError):
    """An option is invalid. Raised before any kernel object exists."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")


class ImageError(FastcontainError):
    """An image could not be found, assembled or read."""


class SpawnError(FastcontainError, OSError):
    """A step of the container's start failed.

    `step` names the step (fastcontain._native.STEPS), `errno` the error the
    kernel returned and `path` the file involved, when there is one."""

    def __init__(self, message: str, *, step: str, errno: int, path: str | None = None) -> None:
        self.step = step
        self.path = path
        name = _errno.errorcode.get(errno, f"errno {errno}")
        text = f"{message}: {name} ({os.strerror(errno)})" if errno else message
        OSError.__init__(self, errno, text)
        # OSError's str() is "[Errno N] text"; keep the message as the user's line.
        self.args = (text,)

    def __str__(self) -> str:
        return str(self.args[0])


class NetworkError(FastcontainError):
    """A network could not be created, found, wired or removed (netlink, nftables, IPAM)."""


class CgroupError(FastcontainError):
    """A cgroup could not be made, limited, read or removed, or the host lacks a
    controller; names the controller or file, the value written and the errno."""

    def __init__(self, message: str, *, path: str | None = None, errno: int = 0) -> None:
        self.path = path
        self.errno = errno
        if errno:
            message = f"{message}: {_errno.errorcode.get(errno, errno)} ({os.strerror(errno)})"
        super().__init__(message)


class ContainerError(FastcontainError):
    """An operation on a container is not possible in its state."""


class TimeoutExpired(FastcontainError, subprocess.TimeoutExpired):
    """The container ran longer than its timeout. From run() it was killed (every
    process in it: `killed` is True); Container.wait(timeout) leaves it running.

    `limit` is "wall" (timeout=, wall-clock seconds) or "cpu" (cpu_time=, CPU
    seconds); `result` is the run's Result when it was killed (timed_out set)."""

    def __init__(
        self,
        cmd: Any,
        timeout: float,
        output: Any = None,
        stderr: Any = None,
        *,
        killed: bool = True,
        limit: str = "wall",
        result: Any = None,
    ) -> None:
        super().__init__(cmd, timeout, output, stderr)
        self.killed = killed
        self.limit = limit
        self.result = result

    def __str__(self) -> str:
        killed = " and was killed" if self.killed else ""
        if self.limit == "cpu":
            return f"container {self.cmd!r} used more than {self.timeout} CPU seconds{killed}"
        return f"container {self.cmd!r} timed out after {self.timeout} seconds{killed}"


class CalledProcessError(FastcontainError, subprocess.CalledProcessError):
    """check=True and the container's command failed; output is kept. `oom_killed`
    says the kernel's OOM killer ended it (read from its memory cgroup)."""

    oom_killed = False

    def __str__(self) -> str:
        if self.oom_killed:
            return f"container command {self.cmd!r} was killed by the OOM killer (its memory limit)"
        if self.returncode is not None and self.returncode < 0:
            return f"container command {self.cmd!r} died of signal {-self.returncode}"
        return f"container command {self.cmd!r} exited with status {self.returncode}"
