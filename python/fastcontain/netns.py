"""Network namespaces made ahead of their container, and reused.

Creating a network namespace is the most expensive part of a container's clone here
(~0.5 ms of the kernel's time, and ~0.4 ms more of deferred cleanup on a kworker once
it is gone, FACTS.md). Two ways around it:

- made ahead (warm pools): `loopback()` unshares a new one on this module's own
  thread, brings `lo` up in it and keeps a descriptor; `configure()` sets a veth end's
  address and route in one from the same thread, which joins it first.
- reused (every `network="none"` container: run, create, arun, isolated pools): a
  process-wide reserve of quiet namespaces with only `lo`, up (`Keeper`, below). A
  container takes one if there is one, else gets a new one in its clone (CLONE_NEWNET)
  and the Keeper opens it through the pidfd; once the container has exited and been
  reaped, the teardown worker gives it back only if the container could not have
  changed it (`may_return`) and nothing in it survives (`quiet_reason`: no socket, no
  TIME_WAIT, no fragment, `lo` the only link and up), else closes it (the kernel
  destroys it, as without reuse). At most RESERVE_MAX are kept; when a take leaves fewer
  than REFILL_LOW, this module's thread makes new ones (`loopback()`'s way) up to it.
  FASTCONTAIN_NETNS_REUSE=0 turns reuse off, FASTCONTAIN_NETNS_REFILL=0 the refill.

No thread anything else uses changes namespace. The container's init joins a namespace
given to it with setns (the spec's `netns_fd`) instead of a CLONE_NEWNET.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import re
import socket
import struct
import threading
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

from . import teardown as _teardown
from . import nativefn as _nativefn
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
    return _submit(fn).result()  # type: ignore[no-any-return]


def _submit(fn: Callable[[], T]) -> Any:
    """_in_thread's job, without waiting for it: its Future."""
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

    return _worker.submit(job)


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


# -- the reserve: namespaces given back by containers that could not change them ----------

RESERVE_MAX = int(os.environ.get("FASTCONTAIN_NETNS_RESERVE", "8"))
REFILL_LOW = 2  # made ahead when a take leaves fewer (FASTCONTAIN_NETNS_REFILL=0: never)
PIDFD_GET_NET_NAMESPACE = 0xFF04  # _IO(PIDFS_IOCTL_MAGIC, 4), Linux 6.11+; else /proc/PID/ns/net

# The capabilities a container may hold and still give its namespace back: docker's
# defaults (security.DEFAULT_CAPS) or fewer. None of them changes a network namespace:
# NET_RAW and NET_BIND_SERVICE only make sockets, which die with the processes (and a
# lingering one fails the quiet check); NET_ADMIN, SYS_ADMIN, BPF, ... are not in it.
_RETURNABLE_CAPS = frozenset((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
))

# What /proc/thread-self/net/sockstat{,6} must show as 0 in a namespace given back. Per
# namespace (TCP's orphan, alloc and mem are the host's): every socket of any family,
# TIME_WAIT entries (a later bind of that port would fail) and IP fragments queued.
_QUIET_KEYS = ("sockets used", "TCP inuse", "TCP tw", "UDP inuse", "UDPLITE inuse", "RAW inuse",
               "FRAG inuse", "FRAG memory")
_QUIET_KEYS6 = ("TCP6 inuse", "UDP6 inuse", "UDPLITE6 inuse", "RAW6 inuse", "FRAG6 inuse", "FRAG6 memory")


def reuse_enabled() -> bool:
    """FASTCONTAIN_NETNS_REUSE=0 gives every container a new network namespace."""
    return os.environ.get("FASTCONTAIN_NETNS_REUSE", "1") != "0" and RESERVE_MAX > 0


def refill_enabled() -> bool:
    """FASTCONTAIN_NETNS_REFILL=0: no namespace is made ahead when the reserve runs empty."""
    return os.environ.get("FASTCONTAIN_NETNS_REFILL", "1") != "0"


class _Reserve:
    """Descriptors of quiet network namespaces (lo up, nothing else), at most `limit`.
    Taken by containers about to spawn, given back by the teardown worker. Fork-safe: a
    child process starts with an empty reserve (the copies it inherited are closed at
    once by the at-fork hook; after a fork that bypassed it they are only forgotten:
    their numbers may be another file's by then, and O_CLOEXEC closes them at exec)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._fds: list[int] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.taken = self.returned = self.made = 0
        self._refilling = threading.Event()  # set while namespaces are made ahead (_refill)
        self.refused: dict[str, int] = {}
        self.opened: dict[str, int] = {}

    def _mine(self) -> None:  # under the lock
        if self._pid != os.getpid():
            self._fds, self._pid = [], os.getpid()

    def take(self) -> int | None:
        """A namespace, or None. When that leaves fewer than REFILL_LOW, the netns thread
        makes new ones up to it, so that containers that give none back (sockets left,
        NET_ADMIN, a name, ...) still join one made off their thread."""
        with self._lock:
            self._mine()
            fd = self._fds.pop() if self._fds else None
            if fd is not None:
                self.taken += 1
            refill = len(self._fds) < REFILL_LOW and not self._refilling.is_set() and refill_enabled()
            if refill:
                self._refilling.set()
        if refill:
            try:
                _submit(self._refill)
            except RuntimeError:  # at exit: the thread takes no more work
                self._refilling.clear()
        return fd

    def _refill(self) -> None:
        """On the netns thread: new namespaces (lo up) until the reserve holds REFILL_LOW."""
        try:
            while self._pid == os.getpid() and len(self._fds) < REFILL_LOW and reuse_enabled():
                fd = _loopback_here()  # (unshared from the last one's: each is new, none nested)
                with self._lock:
                    self.made += 1
                if not self.give(fd):
                    return
        except NetnsError:
            pass
        finally:
            self._refilling.clear()

    def settle(self) -> None:
        """Wait until no namespace is being made ahead (teardown.flush calls it)."""
        while self._refilling.is_set() and self._pid == os.getpid():
            time.sleep(0.001)

    def full(self) -> bool:
        return len(self._fds) >= self.limit and self._pid == os.getpid()

    def give(self, fd: int) -> bool:
        """Keep `fd` (True), or close it when the reserve is full or reuse is off."""
        with self._lock:
            self._mine()
            if fd in self._fds:
                return True
            if reuse_enabled() and len(self._fds) < self.limit:
                self._fds.append(fd)
                self.returned += 1
                return True
        os.close(fd)
        return False

    def refuse(self, fd: int, why: str) -> None:
        os.close(fd)
        with self._lock:
            key = why.split(":")[0]
            self.refused[key] = self.refused.get(key, 0) + 1

    def note(self, what: str) -> None:
        with self._lock:
            self.opened[what] = self.opened.get(what, 0) + 1

    def drain(self) -> int:
        """Close every namespace kept; how many."""
        with self._lock:
            self._mine()
            fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        return len(fds)

    def descriptors(self) -> frozenset[int]:
        with self._lock:
            self._mine()
            return frozenset(self._fds)

    def after_fork_in_child(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.__init__(self.limit)  # type: ignore[misc]


_reserve = _Reserve(RESERVE_MAX)
os.register_at_fork(after_in_child=_reserve.after_fork_in_child)
_teardown.on_flush(_reserve.settle)


def reserved() -> frozenset[int]:
    """The descriptors the reserve holds now (the leak check does not count them)."""
    return _reserve.descriptors()


def take() -> int | None:
    """A namespace from the reserve (the caller owns the descriptor), or None."""
    return _reserve.take()


def drain() -> int:
    """Close every network namespace the reserve holds (the kernel destroys them); how many."""
    return _reserve.drain()


def reserve_stats() -> dict[str, Any]:
    """size, limit, taken (containers that joined a namespace from the reserve),
    returned (put in it: given back, or made ahead), made (ahead, on an empty reserve),
    refused (why a namespace was not given back: {reason: count}) and opened (namespaces
    made by a container's clone, opened after it: captured, or missed because the
    container had exited already)."""
    r = _reserve
    with r._lock:
        r._mine()
        return {"size": len(r._fds), "limit": r.limit, "taken": r.taken, "returned": r.returned, "made": r.made,
                "refused": dict(r.refused), "opened": dict(r.opened)}


def may_join(config: Any, spec: Mapping[str, Any]) -> bool:
    """Whether a container of `config` (compiled into `spec`) may join a namespace from
    the reserve: network="none" with a namespace of its own, no other one given to it,
    no user namespace (its root may not join one owned by the host's)."""
    return (
        config.network == "none" and "net" in spec["namespaces"] and spec.get("netns_fd") is None
        and config.userns is None and not spec.get("userns") and reuse_enabled()
    )


def may_return(config: Any, spec: Mapping[str, Any]) -> str | None:
    """Why the network namespace of a container of `config` may not go back to the
    reserve once it is reaped (None: it may, if it is quiet then). It must not have been
    able to change the namespace (no capability beyond docker's defaults, not
    privileged, no user namespace: one would own it; /proc/sys read-only and reached by
    no bind mount; no sysctl), and nobody else may be in it once its init is reaped: a
    pid namespace of its own (every process of the container is gone with its init) and
    no name (`network="container:NAME"` joins only named containers; exec from other
    processes only reaches detached ones, which never use the reserve)."""
    if not reuse_enabled():
        return "off"
    if config.network != "none" or "net" not in spec["namespaces"]:
        return "network: not an isolated namespace of its own"
    if config.userns is not None or spec.get("userns"):
        return "userns: a user namespace would own it"
    if "pid" not in spec["namespaces"]:
        return "pid: without a pid namespace its processes may outlive its init"
    if config.name is not None:
        return "name: a named container may be joined (network=container:NAME)"
    if config.privileged:
        return "privileged"
    extra = set(spec.get("capabilities") or ()) - _RETURNABLE_CAPS
    if extra:
        return f"capabilities: {', '.join(sorted(extra))}"
    if "/proc/sys" not in (spec.get("readonly_paths") or ()):
        return "sysctl: /proc/sys is writable"
    if spec.get("sysctl"):
        return "sysctl: set at start"
    return None


def proc_reachable(mounts: Sequence[Mapping[str, Any]], mountinfo: Callable[[], str] | None = None) -> str | None:
    """A bind mount of `mounts` through which a container could reach a proc filesystem
    (/proc/sys writable there: uid 0 writes its namespace's sysctls with no capability),
    or None. Recursive binds are checked against the host's mount table (read once)."""
    table: list[tuple[str, str]] | None = None
    for m in mounts:
        if m.get("type") != "bind":
            continue
        src = os.path.realpath(str(m.get("source")))
        if src == "/" or src == "/proc" or src.startswith("/proc/"):
            return src
        if "rbind" in (m.get("options") or ()):
            if table is None:
                text = mountinfo() if mountinfo is not None else _read("/proc/self/mountinfo")
                table = [(f[4], line.split(" - ")[1].split()[0]) for line in text.splitlines()
                         if (f := line.split()) and " - " in line]
            below = src.rstrip("/") + "/"
            if any(fstype == "proc" and (point + "/").startswith(below) for point, fstype in table):
                return src
    return None


def quiet_reason(sockstat: str, sockstat6: str, dev: str, lo_flags: int) -> str | None:
    """Why a namespace whose /proc/thread-self/net/sockstat, sockstat6 and dev read so,
    and whose lo has `lo_flags`, is not quiet enough to reuse (None: it is)."""
    counts: dict[str, int] = {}
    for line in (sockstat + "\n" + sockstat6).splitlines():
        proto, _, rest = line.partition(":")
        words = rest.split()
        for k, v in zip(words[::2], words[1::2]):
            counts[f"{proto} {k}"] = int(v)
    for key in _QUIET_KEYS + (_QUIET_KEYS6 if sockstat6.strip() else ()):
        value = counts.get(key)
        if value is None:
            return f"sockstat: no {key!r}"
        if value:
            return f"sockets: {key} {value}"
    links = [line.split(":")[0].strip() for line in dev.splitlines()[2:] if ":" in line]
    if links != ["lo"]:
        return f"links: {', '.join(links) or 'none'}"
    if not lo_flags & IFF_UP:
        return "links: lo is down"
    return None


def _read(path: str, missing: str | None = None) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        if missing is None:
            raise
        return missing


def _read_bytes(path: str, missing: bytes | None = None) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if missing is None:
            raise
        return missing
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


# A quiet namespace's sockstat and sockstat6 as the kernel prints them (the numbers left
# free are the host's): matching them is quiet_reason's None at a tenth of its cost;
# anything else goes through quiet_reason, which names what it found.
_QUIET_SOCKSTAT = re.compile(rb"sockets: used 0\nTCP: inuse 0 orphan \d+ tw 0 alloc \d+ mem \d+\nUDP: inuse 0 mem \d+\n"
                             rb"UDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n")
_QUIET_SOCKSTAT6 = (b"TCP6: inuse 0\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n", b"")


def _quiet_here(fd: int) -> str | None:
    """quiet_reason of the namespace `fd`, joined by the calling thread (this module's)."""
    _check(_libc.setns(fd, CLONE_NEWNET), "setns into a used network namespace")
    dev = _read_bytes("/proc/thread-self/net/dev")
    sockstat = _read_bytes("/proc/thread-self/net/sockstat")
    sockstat6 = _read_bytes("/proc/thread-self/net/sockstat6", b"")
    # lo's flags last: the socket for the ioctl is one more in the namespace until it is
    # freed, which is not always done when close returns (sockstat counted it now and then)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
    return _judge(dev, sockstat, sockstat6, struct.unpack("16sh22x", got)[1])


def _quiet(fd: int) -> str | None:
    """quiet_reason of the namespace `fd`: read by the native peek thread (the GIL free
    meanwhile: no hop through this module's thread), else on this module's thread."""
    peek = _nativefn.get("netns_peek")
    if peek is None:
        return _in_thread(lambda: _quiet_here(fd))
    return _judge(*peek(fd))


def _judge(dev: bytes, sockstat: bytes, sockstat6: bytes, flags: int) -> str | None:
    """quiet_reason of what a namespace showed, a quiet one matched in one go first."""
    lines = dev.split(b"\n")
    if (flags & IFF_UP and len(lines) == 4 and lines[2].lstrip().startswith(b"lo:") and not lines[3]
            and sockstat6 in _QUIET_SOCKSTAT6 and _QUIET_SOCKSTAT.fullmatch(sockstat)):
        return None
    return quiet_reason(sockstat.decode(), sockstat6.decode(), dev.decode(), flags)


def _recycle(fd: int, config: Any, spec: Mapping[str, Any]) -> None:
    """On the teardown worker, once the container is reaped: back to the reserve or closed."""
    try:
        src = proc_reachable(spec.get("mounts") or ())
        why = f"proc: a bind mount of {src} reaches a proc filesystem" if src else None
        why = why or _quiet(fd)
    except BaseException as e:  # (at interpreter exit the netns thread takes no more work)
        why = f"check: {e}"
    if why is None:
        _reserve.give(fd)
    else:
        _reserve.refuse(fd, why)


_own: tuple[int, int] = (0, 0)


def _own_netns() -> int:
    """The inode of this process's network namespace (read once per process)."""
    global _own
    if _own[0] != os.getpid():
        _own = (os.getpid(), os.stat("/proc/self/ns/net").st_ino)
    return _own[1]


class Keeper:
    """One container's hold on its network namespace, for reuse. Made before the spawn
    (a namespace from the reserve goes in the spec as `netns_fd` when `may_join`);
    `hold(child)` after it: a container that may give its namespace back and got none
    from the reserve has it opened through its pidfd (or the descriptor it was given, a
    Pool's, is duplicated); `release()` once the child is killed and reaped (registered
    on the container's stack before the child, so it runs after): the teardown worker
    gives it back or closes it (see the module doc)."""

    __slots__ = ("fd", "_config", "_spec", "_child", "_why")

    def __init__(self, config: Any, spec: dict[str, Any], allowed: bool = True) -> None:
        self.fd: int | None = None
        self._config, self._spec, self._child = config, spec, None
        self._why = may_return(config, spec) if allowed else "detached: exec may reach it from any process"
        if allowed and may_join(config, spec):
            self.fd = _reserve.take()
            if self.fd is not None:
                spec["netns_fd"] = self.fd

    def hold(self, child: Any) -> None:
        self._child = child
        if self.fd is not None or self._why is not None or _reserve.full():
            return
        given = self._spec.get("netns_fd")
        try:
            if given is not None:
                self.fd = os.dup(given)  # (O_CLOEXEC)
            elif child.pidfd >= 0:
                try:
                    self.fd = fcntl.ioctl(child.pidfd, PIDFD_GET_NET_NAMESPACE)
                except OSError as e:
                    if e.errno != _errno.ENOTTY and e.errno != _errno.EINVAL:
                        raise
                    self.fd = os.open(f"/proc/{child.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # it exited already (ESRCH): its namespace goes as without reuse
            self.fd = None
        _reserve.note("captured" if self.fd is not None else "exited before it was opened")
        if self.fd is not None and os.fstat(self.fd).st_ino == _own_netns():
            os.close(self.fd)  # never ours (a stand-in child in unit tests is in it)
            self.fd = None

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        child, self._child = self._child, None
        if self._why is not None or child is None or child.returncode is None:
            os.close(fd)  # (never spawned, or not reaped: something may still be in it)
            return
        config, spec = self._config, self._spec
        if not _teardown.try_defer(lambda: _recycle(fd, config, spec), "checking a network namespace for reuse"):
            os.close(fd)  # (the worker is behind: never wait for it for the sake of reuse)
