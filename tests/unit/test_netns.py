"""The reserve of reused network namespaces, without the kernel: which containers may
join one and give theirs back, what counts as quiet, the reserve's bound, its fork
safety and its switch. (tests/integration/test_netns_reuse.py runs it for real.)"""

from __future__ import annotations

import os
from typing import Any

import pytest

from fastcontain import netns
from fastcontain.config import Config
from fastcontain.security import DEFAULT_CAPS, READONLY_PATHS

QUIET = """sockets: used 0
TCP: inuse 0 orphan 3 tw 0 alloc 7 mem 214
UDP: inuse 0 mem 5
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""
QUIET6 = """TCP6: inuse 0
UDP6: inuse 0
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
"""
DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
"""


def spec(**over: Any) -> dict[str, Any]:
    """The keys of a compiled spec that the reserve looks at, as a default container's."""
    s: dict[str, Any] = {
        "namespaces": ["mount", "pid", "uts", "ipc", "net", "cgroup"],
        "capabilities": list(DEFAULT_CAPS),
        "readonly_paths": list(READONLY_PATHS),
        "mounts": [],
    }
    s.update(over)
    return s


@pytest.fixture(autouse=True)
def reuse_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTCONTAIN_NETNS_REUSE", raising=False)
    monkeypatch.setenv("FASTCONTAIN_NETNS_REFILL", "0")  # (its own test below)


def test_a_default_container_may_join_and_give_back() -> None:
    c = Config(image="busybox")
    assert netns.may_join(c, spec())
    assert netns.may_return(c, spec()) is None
    # fewer capabilities (cap_drop, a user other than root) change nothing
    assert netns.may_return(c, spec(capabilities=["CAP_CHOWN"])) is None


@pytest.mark.parametrize("config, over, reason", [
    (Config(image="busybox", cap_add=["NET_ADMIN"]), {"capabilities": list(DEFAULT_CAPS) + ["CAP_NET_ADMIN"]},
     "capabilities: CAP_NET_ADMIN"),
    (Config(image="busybox"), {"capabilities": ["CAP_SYS_ADMIN"]}, "capabilities: CAP_SYS_ADMIN"),
    (Config(image="busybox"), {"capabilities": ["CAP_BPF"]}, "capabilities: CAP_BPF"),
    (Config(image="busybox", privileged=True), {}, "privileged"),
    (Config(image="busybox", name="fc-web"), {}, "name: a named container may be joined (network=container:NAME)"),
    (Config(image="busybox"), {"userns": {"uid_map": [(0, 100000, 65536)]}}, "userns: a user namespace would own it"),
    (Config(image="busybox", namespaces=["mount", "net"]), {"namespaces": ["mount", "net"]},
     "pid: without a pid namespace its processes may outlive its init"),
    (Config(image="busybox"), {"readonly_paths": ["/proc/bus"]}, "sysctl: /proc/sys is writable"),
    (Config(image="busybox"), {"sysctl": {"net.ipv4.ip_forward": "1"}}, "sysctl: set at start"),
    (Config(image="busybox", network="host"), {"namespaces": ["mount", "pid"]},
     "network: not an isolated namespace of its own"),
])
def test_what_keeps_a_namespace_from_going_back(config: Config, over: dict[str, Any], reason: str) -> None:
    assert netns.may_return(config, spec(**over)) == reason


def test_only_an_isolated_container_without_a_namespace_given_joins_one() -> None:
    assert not netns.may_join(Config(image="busybox", network="host"), spec(namespaces=["mount", "pid"]))
    assert not netns.may_join(Config(image="busybox"), spec(netns_fd=7))  # a Pool's, container:NAME's
    assert not netns.may_join(Config(image="busybox"), spec(userns={"uid_map": []}))
    # a privileged or named container may join a clean one (it is only not given back)
    assert netns.may_join(Config(image="busybox", privileged=True), spec())
    assert netns.may_join(Config(image="busybox", name="fc-x"), spec())


def test_the_switch_turns_both_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTCONTAIN_NETNS_REUSE", "0")
    assert not netns.reuse_enabled()
    assert not netns.may_join(Config(image="busybox"), spec())
    assert netns.may_return(Config(image="busybox"), spec()) == "off"
    r = netns._Reserve(4)
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    assert r.give(fd) is False and r.descriptors() == frozenset()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_quiet_means_no_socket_no_time_wait_only_lo_up() -> None:
    up = netns.IFF_UP | netns.IFF_RUNNING
    assert netns.quiet_reason(QUIET, QUIET6, DEV, up) is None
    assert netns.quiet_reason(QUIET, "", DEV, up) is None  # IPv6 off: no sockstat6
    tw = QUIET.replace("tw 0", "tw 1")
    assert netns.quiet_reason(tw, QUIET6, DEV, up) == "sockets: TCP tw 1"
    used = QUIET.replace("used 0", "used 2")
    assert netns.quiet_reason(used, QUIET6, DEV, up) == "sockets: sockets used 2"
    frag = QUIET6.replace("FRAG6: inuse 0 memory 0", "FRAG6: inuse 1 memory 900")
    assert netns.quiet_reason(QUIET, frag, DEV, up) == "sockets: FRAG6 inuse 1"
    assert netns.quiet_reason(QUIET, QUIET6, DEV + "  eth0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", up) == "links: lo, eth0"
    assert netns.quiet_reason(QUIET, QUIET6, DEV, 0) == "links: lo is down"
    # a format this code does not know is no proof of quiet
    assert netns.quiet_reason(QUIET.replace("tw 0 ", ""), QUIET6, DEV, up) == "sockstat: no 'TCP tw'"
    assert netns.quiet_reason("", "", DEV, up) == "sockstat: no 'sockets used'"


def test_binds_that_reach_a_proc_filesystem() -> None:
    table = ("22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
             "30 1 8:1 / /srv/chroot rw - ext4 /dev/vda1 rw\n"
             "31 30 0:40 / /srv/chroot/proc rw - proc proc rw\n")
    read = lambda: table  # noqa: E731
    bind = lambda src, opt="rbind": {"type": "bind", "source": src, "target": "/x", "options": [opt]}  # noqa: E731
    assert netns.proc_reachable([bind("/")], read) == "/"
    assert netns.proc_reachable([bind("/proc/sys", "bind")], read) == "/proc/sys"
    assert netns.proc_reachable([bind("/srv/chroot")], read) == "/srv/chroot"  # proc mounted below it
    assert netns.proc_reachable([bind("/srv/chroot", "bind")], read) is None  # not recursive: not below
    assert netns.proc_reachable([bind("/srv")], read) == "/srv"
    assert netns.proc_reachable([bind("/etc"), {"type": "tmpfs", "source": "tmpfs", "target": "/tmp"}], read) is None
    assert netns.proc_reachable([], None) is None


def _fds(n: int) -> list[int]:
    return [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(n)]


def test_the_reserve_is_bounded_and_closes_the_excess() -> None:
    r = netns._Reserve(3)
    fds = _fds(5)
    assert [r.give(fd) for fd in fds] == [True, True, True, False, False]
    assert r.descriptors() == frozenset(fds[:3])
    for fd in fds[3:]:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert r.full()
    got = r.take()
    assert got == fds[2] and not r.full()  # last in, first out
    assert r.give(got) and r.give(got) and len(r.descriptors()) == 3  # kept once, and not closed
    os.fstat(got)
    assert r.drain() == 3 and r.take() is None
    for fd in fds[:3]:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_forked_child_does_not_use_the_parents_reserve() -> None:
    r = netns._Reserve(4)
    fds = _fds(2)
    for fd in fds:
        r.give(fd)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the at-fork hook is the module reserve's; this one sees the new pid
        try:
            ok = r.take() is None and r.descriptors() == frozenset() and netns.reserved() == frozenset()
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    assert r.descriptors() == frozenset(fds)  # the parent's are untouched
    r.drain()


def test_the_at_fork_hook_closes_the_childs_copies() -> None:
    fds = _fds(2)
    for fd in fds:
        assert netns._reserve.give(fd)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                closed = 0
                for fd in fds:
                    try:
                        os.fstat(fd)
                    except OSError:
                        closed += 1
                os.write(write, bytes([closed]))
            finally:
                os._exit(0)
        os.close(write)
        assert os.read(read, 1) == bytes([2])
        os.close(read)
        os.waitpid(pid, 0)
        assert netns.reserved() == frozenset(fds)
    finally:
        netns.drain()


class FakeChild:
    def __init__(self, returncode: int | None = 0) -> None:
        self.returncode = returncode
        self.pid = os.getpid()
        self.pidfd = -1


def test_a_keeper_takes_from_the_reserve_and_gives_back_after_the_reap(monkeypatch: pytest.MonkeyPatch) -> None:
    deferred: list[Any] = []
    monkeypatch.setattr("fastcontain.teardown.try_defer", lambda fn, what: deferred.append(fn) or True)
    monkeypatch.setattr(netns, "_quiet", lambda fd: None)  # the namespace is quiet
    monkeypatch.setattr(netns, "_reserve", netns._Reserve(4))
    fd = _fds(1)[0]
    netns._reserve.give(fd)
    s = spec()
    k = netns.Keeper(Config(image="busybox"), s)
    assert s["netns_fd"] == fd and k.fd == fd and netns.reserved() == frozenset()
    k.hold(FakeChild())
    k.release()
    assert len(deferred) == 1 and netns.reserved() == frozenset()  # the check runs on the teardown worker
    deferred[0]()
    assert netns.reserved() == frozenset([fd])
    assert netns.reserve_stats()["taken"] == 1 and netns.reserve_stats()["returned"] == 2
    netns.drain()


def test_a_keeper_closes_what_may_not_go_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fastcontain.teardown.try_defer", lambda fn, what: pytest.fail("nothing to check"))
    monkeypatch.setattr(netns, "_reserve", netns._Reserve(4))
    for config, child in ((Config(image="busybox", privileged=True), FakeChild()),  # may not go back
                          (Config(image="busybox"), FakeChild(returncode=None))):  # not reaped
        fd = _fds(1)[0]
        netns._reserve.give(fd)
        k = netns.Keeper(config, spec())
        assert k.fd == fd
        k.hold(child)
        k.release()
        with pytest.raises(OSError):
            os.fstat(fd)
    k = netns.Keeper(Config(image="busybox"), spec())  # an empty reserve: the clone makes one
    assert k.fd is None
    k.release()  # nothing held (never spawned)


def test_a_namespace_that_is_not_quiet_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_quiet", lambda fd: "sockets: TCP tw 1")
    monkeypatch.setattr(netns, "_reserve", netns._Reserve(4))
    fd = _fds(1)[0]
    netns._recycle(fd, Config(image="busybox"), spec())
    with pytest.raises(OSError):
        os.fstat(fd)
    assert netns.reserve_stats()["refused"] == {"sockets": 1} and netns.reserved() == frozenset()


def test_a_keeper_never_keeps_this_process_namespace() -> None:
    s = spec(netns_fd=os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
    try:
        k = netns.Keeper(Config(image="busybox"), s)
        k.hold(FakeChild())  # a Pool's descriptor is duplicated: here it is ours
        assert k.fd is None
    finally:
        os.close(s["netns_fd"])


def test_the_fast_match_accepts_only_what_quiet_reason_accepts() -> None:
    variants = [QUIET, QUIET.replace("tw 0", "tw 1"), QUIET.replace("used 0", "used 1"),
                QUIET.replace("UDP: inuse 0", "UDP: inuse 1"), QUIET.replace("FRAG: inuse 0 memory 0", "FRAG: inuse 0 memory 8"),
                QUIET.replace("orphan 3", "orphan 0"), QUIET + "EXTRA: inuse 0\n", QUIET.replace("tw 0 ", "")]
    for v in variants:
        fast = netns._QUIET_SOCKSTAT.fullmatch(v.encode()) is not None
        assert not fast or netns.quiet_reason(v, QUIET6, DEV, netns.IFF_UP) is None, v
    assert netns._QUIET_SOCKSTAT.fullmatch(QUIET.encode())
    assert QUIET6.encode() in netns._QUIET_SOCKSTAT6


def test_a_low_reserve_is_refilled_on_the_netns_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTCONTAIN_NETNS_REFILL", "1")
    queued: list[Any] = []
    monkeypatch.setattr(netns, "_submit", lambda fn: queued.append(fn))
    made = _fds(5)
    monkeypatch.setattr(netns, "_loopback_here", lambda: made.pop())
    r = netns._Reserve(4)
    first = _fds(1)[0]
    r.give(first)
    assert r.take() == first and len(queued) == 1  # fewer than REFILL_LOW left: refill
    assert r.take() is None and len(queued) == 1  # (not twice while one runs)
    queued.pop()()
    assert len(r.descriptors()) == netns.REFILL_LOW and r.made == netns.REFILL_LOW and not r._refilling.is_set()
    r.settle()  # returns at once: nothing is being made
    assert r.take() is not None and len(queued) == 1
    monkeypatch.setenv("FASTCONTAIN_NETNS_REFILL", "0")
    queued.pop()()
    r.drain()
    assert r.take() is None and queued == []  # off: nothing more is made
    os.close(first)
    for fd in made:
        os.close(fd)


def test_flush_waits_for_namespaces_being_made() -> None:
    from fastcontain import teardown

    assert netns._reserve.settle in teardown._settlers


def test_a_keeper_never_waits_for_a_full_teardown_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fastcontain.teardown.try_defer", lambda fn, what: False)
    monkeypatch.setattr(netns, "_reserve", netns._Reserve(4))
    fd = _fds(1)[0]
    netns._reserve.give(fd)
    k = netns.Keeper(Config(image="busybox"), spec())
    k.hold(FakeChild())
    k.release()  # closed at once: reuse is not worth a wait
    with pytest.raises(OSError):
        os.fstat(fd)
