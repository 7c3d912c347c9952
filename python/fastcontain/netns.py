"""Network namespaces made ahead of their container, for warm pools.

Creating a network namespace is the most expensive part of a container's clone here
(~0.5 ms of the kernel's time, FACTS.md); a pool pays it on its refill thread instead:
`loopback()` unshares a new one on this module's own thread, brings `lo` up in it and
keeps a descriptor; `configure()` sets a veth end's address and route in one from the
same thread, which joins it first. No thread anything else uses changes namespace.
The container's init joins it with setns (the spec's `netns_fd`) instead of a
CLONE_NEWNET; once the caller closed its descriptor, the namespace lives exactly as
long as the container.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct
import threading
from typing import Any, Callable, TypeVar

from .errors import FastcontainError

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class NetnsError(FastcontainError):
    """Making a network namespace ahead failed; names the call and the errno."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise NetnsError(f"{what} failed: {_errno.errorcode.get(e, e)} ({os.strerror(e)})")


def loopback() -> int:
    """A new network namespace with lo up, as an O_CLOEXEC descriptor. Made on this
    module's thread (it unshares and brings lo up), so no thread of this process that
    anything else uses ever changes namespace."""
    return _in_thread(_loopback_here)


def _loopback_here() -> int:
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET) for a prepared network namespace")
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16sh22x", b"lo", 0)
            flags = struct.unpack("16sh22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP | IFF_RUNNING))
    except BaseException:
        os.close(fd)
        raise
    return fd


_worker: Any = None
_worker_pid = 0
_worker_lock = threading.Lock()


def _in_thread(fn: Callable[[], T]) -> T:
    """fn() on this module's own thread, which nothing else uses: each job starts by
    entering its namespace (setns, or unshare for a new one), so none relies on where
    the one before left the thread; after each, the thread goes back to the process's
    namespace, so it keeps none alive (a namespace lives while a thread is in it)."""
    global _worker, _worker_pid
    with _worker_lock:
        if _worker is None or _worker_pid != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            _worker = ThreadPoolExecutor(1, thread_name_prefix="fastcontain-netns")
            _worker_pid = os.getpid()

    def job() -> T:
        try:
            return fn()
        finally:  # /proc/self is the main thread's: the process's namespace
            home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check(_libc.setns(home, CLONE_NEWNET), "setns back to the process's network namespace")
            finally:
                os.close(home)

    return _worker.submit(job).result()  # type: ignore[no-any-return]


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("=H2x4s8x", socket.AF_INET, socket.inet_aton(address))


# struct rtentry (route(8)'s SIOCADDRT) as linux/route.h lays it out, native alignment:
# pad1, dst, gateway, genmask, flags, pad2, pad3, pad4, metric, dev, mtu, window, irtt
_RTENTRY = "@L16s16s16sHhLPhPLLH0L"


SIOCADDRT, SIOCSIFADDR, SIOCSIFNETMASK = 0x890B, 0x8916, 0x891C
RTF_UP, RTF_GATEWAY = 0x1, 0x2


def _configure_here(name: str, address: str, prefix: int, gateway: str | None) -> None:
    """eth0's address, netmask, up and default route in the calling thread's netns, with
    the ioctls the container's init would use (rust sys::interface_up)."""
    ifname = name.encode()
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for req, value, what in ((SIOCSIFADDR, address, "address"), (SIOCSIFNETMASK, mask, "netmask")):
            try:
                fcntl.ioctl(s.fileno(), req, struct.pack("16s16s8x", ifname, _sockaddr_in(value)))
            except OSError as e:
                raise NetnsError(f"setting the {what} {value} of {name} in a prepared network namespace failed: "
                                 f"{_errno.errorcode.get(e.errno or 0, e.errno)} ({e.strerror})") from None
        ifreq = struct.pack("16sh22x", ifname, 0)
        try:
            got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq)
            assert isinstance(got, bytes)
            flags = struct.unpack("16sh22x", got)[1]
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", ifname, flags | IFF_UP | IFF_RUNNING))
        except OSError as e:
            raise NetnsError(f"bringing {name} up in a prepared network namespace failed: "
                             f"{_errno.errorcode.get(e.errno or 0, e.errno)} ({e.strerror})") from None
        if gateway is not None:
            dev = ctypes.create_string_buffer(ifname)  # rt_dev points at it during the ioctl
            rt = struct.pack(_RTENTRY, 0, _sockaddr_in("0.0.0.0"), _sockaddr_in(gateway), _sockaddr_in("0.0.0.0"),
                             RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, ctypes.addressof(dev), 0, 0, 0)
            try:
                fcntl.ioctl(s.fileno(), SIOCADDRT, rt)
            except OSError as e:
                raise NetnsError(f"adding the default route via {gateway} in a prepared network namespace failed: "
                                 f"{_errno.errorcode.get(e.errno or 0, e.errno)} ({e.strerror})") from None


def configure(netns_fd: int, name: str, address: str, prefix: int, gateway: str | None) -> None:
    """Configure interface `name` (a veth end already in the namespace) of the network
    namespace `netns_fd`: its IPv4 address/prefix, up, and a default route via `gateway`.

    Done on this module's thread, which joins the namespace first, so no thread of
    this process that anything else uses (the netlink worker above all: pyroute2
    opens its sockets lazily, wherever its thread is then) ever changes namespace."""
    def work() -> None:
        _check(_libc.setns(netns_fd, CLONE_NEWNET), "setns into a prepared network namespace")
        _configure_here(name, address, prefix, gateway)

    _in_thread(work)
