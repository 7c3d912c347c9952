"""Network namespaces made ahead of their container, for warm pools.

Creating a network namespace is the most expensive part of a container's clone here
(~0.5 ms of the kernel's time, FACTS.md); a pool pays it on its refill thread instead:
`loopback()` unshares a new one in the calling thread only, brings `lo` up in it, keeps
a descriptor, and puts the thread back in its old namespace. The container's init joins
it with setns (the spec's `netns_fd`) instead of a CLONE_NEWNET; once the caller closed
its descriptor, the namespace lives exactly as long as the container.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct

from .errors import FastcontainError

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(FastcontainError):
    """Making a network namespace ahead failed; names the call and the errno."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise NetnsError(f"{what} failed: {_errno.errorcode.get(e, e)} ({os.strerror(e)})")


def loopback() -> int:
    """A new network namespace with lo up, as an O_CLOEXEC descriptor. Only the calling
    thread moves, and it is moved back before this returns."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET) for a prepared network namespace")
        try:
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    req = struct.pack("16sh22x", b"lo", 0)
                    flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
                    fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP | IFF_RUNNING))
            except BaseException:
                os.close(fd)
                raise
        finally:
            _check(_libc.setns(home, CLONE_NEWNET), "setns back to this thread's network namespace")
    finally:
        os.close(home)
    return fd
