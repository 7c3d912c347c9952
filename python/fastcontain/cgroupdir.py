"""Removing a cgroup directory, in a module light enough for fastcontain-oci's `delete`
(cgroups.py pulls in typing and dataclasses: ~15 ms of every call)."""

import errno as _errno
import os
import time

from .errors import CgroupError


def rmdir(path: str, deadline: float) -> None:
    """rmdir with bounded retries (until time.monotonic() passes deadline): a cgroup is
    busy until its last process is reaped. A cgroup already gone is not an error."""
    delay = 0.0005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != _errno.EBUSY or time.monotonic() > deadline:
                hint = " (processes are still in it)" if e.errno == _errno.EBUSY else ""
                raise CgroupError(f"removing the cgroup {path} failed{hint}", path=path, errno=e.errno or 0) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
