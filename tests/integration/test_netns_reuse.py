"""Network namespaces reused from container to container (fastcontain/netns.py): a quiet
one is given back and joined by the next; one that may have been changed, that someone
else may be in, or that still holds a socket or a TIME_WAIT is never given back; the
switch, the bound and fork safety. Identities are the namespace's inode: equal inodes
of two namespaces alive at once mean one namespace; a destroyed namespace's inode
number may be given to a new one, so "different" is only asserted against
namespaces held alive (the reserve's)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import fastcontain
from fastcontain import netns, teardown

from .util import LIMIT, out, subid_file

pytestmark = pytest.mark.privileged

NS = "readlink /proc/self/ns/net"


def inode(text: str) -> int:
    """net:[4026532180] -> 4026532180"""
    return int(text.strip().split("[")[1].rstrip("]"))


def reserved_inodes() -> set[int]:
    return {os.fstat(fd).st_ino for fd in netns.reserved()}


def primed() -> int:
    """An empty reserve, then one namespace in it, given back by a plain container; its inode."""
    netns.drain()
    ino = inode(out(NS + "; sleep 0.05"))  # (a container gone before its namespace was opened gives none)
    teardown.flush()
    assert reserved_inodes() == {ino}, netns.reserve_stats()
    return ino


@pytest.fixture(autouse=True)
def reuse_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTCONTAIN_NETNS_REUSE", raising=False)
    # (what the reserve holds is exact here: nothing made ahead but in its own test)
    monkeypatch.setenv("FASTCONTAIN_NETNS_REFILL", "0")


def test_a_quiet_namespace_is_joined_by_the_next_container() -> None:
    first = primed()
    taken = netns.reserve_stats()["taken"]
    second = inode(out(NS))
    assert second == first != os.stat("/proc/self/ns/net").st_ino
    assert netns.reserve_stats()["taken"] == taken + 1
    teardown.flush()
    assert reserved_inodes() == {first}
    # lo is up in it, as in a new one
    assert "UP" in out("ip link show lo") and out("ping -c1 -W2 127.0.0.1 >/dev/null && echo ok") == "ok\n"


def test_create_arun_and_an_isolated_pool_reuse_it_too() -> None:
    ino = primed()
    with fastcontain.Container.create("busybox", ["sh", "-c", NS]) as c:
        c.start()
        assert c.wait(timeout=LIMIT) == 0
        assert inode(c.logs().decode()) == ino
    teardown.flush()
    r = asyncio.run(fastcontain.arun("busybox", ["sh", "-c", NS], capture_output=True, text=True))
    assert inode(r.stdout) == ino
    teardown.flush()
    assert reserved_inodes() == {ino}
    with fastcontain.Pool("busybox", size=1) as pool:  # its slot's namespace comes from the reserve
        assert pool.wait_ready(LIMIT)
        assert reserved_inodes() == set()
        assert inode(pool.run(["sh", "-c", NS], capture_output=True, text=True).stdout) == ino
        teardown.flush()
        assert ino in reserved_inodes() or netns.reserve_stats()["size"] == 0  # (the refill may have taken it again)


def test_a_time_wait_is_never_reused() -> None:
    primed()
    refused = netns.reserve_stats()["refused"].get("sockets", 0)
    # HTTP/1.0: the server closes first, so its side of the connection waits in TIME_WAIT
    # (~60 s); the container waits until sockstat shows it, then ends with it in place
    script = (f"{NS}; mkdir /tmp/w && echo hi > /tmp/w/i && httpd -p 127.0.0.1:8080 -h /tmp/w && "
              "wget -q -O- http://127.0.0.1:8080/i && for i in $(seq 50); do "
              "grep -q ' tw [1-9]' /proc/net/sockstat && break; sleep 0.1; done; grep TCP: /proc/net/sockstat")
    text = out(script).splitlines()
    ino, tcp = inode(text[0]), text[-1]
    assert text[1] == "hi" and " tw 0 " not in tcp, tcp
    teardown.flush()
    assert netns.reserve_stats()["refused"].get("sockets", 0) == refused + 1
    assert ino not in reserved_inodes()
    nxt = out(f"{NS}; grep TCP: /proc/net/sockstat; httpd -p 127.0.0.1:8080 -h /tmp && echo bound").splitlines()
    assert " tw 0 " in nxt[1] and nxt[2] == "bound", nxt


def test_a_socket_bound_in_one_is_not_seen_by_the_next() -> None:
    first = primed()
    # a TCP listener and a unix socket (syslogd's /dev/log), gone with the container
    sockets = "{ netstat -ant; netstat -anx; } | grep -c -e :7777 -e /dev/log"
    text = out(f"{NS}; nc -l -p 7777 & syslogd -n -O /tmp/log & sleep 0.3; {sockets}").splitlines()
    assert inode(text[0]) == first and text[1] == "2", text
    teardown.flush()
    assert reserved_inodes() == {first}  # the processes, and their sockets, are gone: quiet
    text = out(f"{NS}; {sockets}; nc -l -p 7777 & sleep 0.3; netstat -ltn | grep -c :7777").splitlines()
    assert inode(text[0]) == first and text[1:] == ["0", "1"], text


@pytest.mark.parametrize("options", [
    {"cap_add": ["NET_ADMIN"]},
    {"privileged": True},
    {"name": "fc-netns-named"},
])
def test_a_container_that_could_change_it_or_be_joined_gives_nothing_back(options: dict[str, object]) -> None:
    ino = primed()
    assert inode(out(NS, **options)) == ino  # a clean one may be joined
    teardown.flush()
    assert reserved_inodes() == set()  # but it is not given back: closed


def test_what_net_admin_changed_is_not_seen_by_the_next() -> None:
    primed()
    out("ip addr add 10.213.77.1/32 dev lo && ip link set lo mtu 1280", cap_add=["NET_ADMIN"])
    teardown.flush()
    shown = out("ip addr show lo")
    assert "10.213.77.1" not in shown and "mtu 1280" not in shown, shown


def test_a_user_namespace_container_neither_joins_nor_gives_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subid_file(tmp_path / "subuid", monkeypatch, 3_100_000)
    ino = primed()
    assert inode(out(NS, userns="auto")) != ino  # (both alive: the reserve holds ino)
    teardown.flush()
    assert reserved_inodes() == {ino}


def test_a_joined_namespace_is_never_given_back() -> None:
    netns.drain()
    with fastcontain.Container.create("busybox", ["sleep", "600"], name="fc-netns-target") as target:
        target.start()
        ino = os.stat(f"/proc/{target.pid}/ns/net").st_ino
        with fastcontain.Container.create("busybox", ["sleep", "600"], network="container:fc-netns-target") as joiner:
            joiner.start()
            assert os.stat(f"/proc/{joiner.pid}/ns/net").st_ino == ino
            target.remove(force=True)
            teardown.flush()
            assert ino not in reserved_inodes()  # the joiner is still in it
            assert out(NS) and ino not in reserved_inodes()
    teardown.flush()
    assert ino not in reserved_inodes()


def test_the_switch_gives_every_container_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    ino = primed()
    monkeypatch.setenv("FASTCONTAIN_NETNS_REUSE", "0")
    stats = netns.reserve_stats()
    for _ in range(3):
        assert inode(out(NS)) != ino  # not the one the reserve holds
    teardown.flush()
    after = netns.reserve_stats()
    assert (after["taken"], after["returned"], reserved_inodes()) == (stats["taken"], stats["returned"], {ino})


def test_the_reserve_is_bounded() -> None:
    netns.drain()
    limit = netns.reserve_stats()["limit"]
    containers = [fastcontain.Container.create("busybox", ["sleep", "600"]) for _ in range(limit + 3)]
    try:
        for c in containers:
            c.start()
        inodes = {os.stat(f"/proc/{c.pid}/ns/net").st_ino for c in containers}
        assert len(inodes) == limit + 3
    finally:
        for c in containers:
            c.remove(force=True)
    teardown.flush()
    kept = reserved_inodes()
    assert len(kept) == limit and kept <= inodes  # the rest were closed


def test_a_forked_child_does_not_use_the_parents_reserve() -> None:
    ino = primed()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            mine = netns.reserved()
            got = inode(out(NS))
            teardown.flush()
            os.write(write, f"{len(mine)} {got}\n".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        reply = f.read().split()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and reply[0] == "0", reply
    assert int(reply[1]) != ino  # its container got its own: the parent's is still held here
    assert reserved_inodes() == {ino}


def test_a_low_reserve_gets_namespaces_made_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    netns.drain()
    monkeypatch.setenv("FASTCONTAIN_NETNS_REFILL", "1")
    made, taken = netns.reserve_stats()["made"], netns.reserve_stats()["taken"]
    for _ in range(3):  # NET_ADMIN: none is given back, yet each after the first joins one made ahead
        text = out(f"{NS}; ip link show lo", cap_add=["NET_ADMIN"])
        assert "UP" in text.splitlines()[1], text  # lo up, as in a new one
        teardown.flush()  # (waits for those being made)
    stats = netns.reserve_stats()
    # the first found none (REFILL_LOW made), each later one took one (and one was made)
    assert (stats["made"] - made, stats["taken"] - taken) == (netns.REFILL_LOW + 2, 2)
    assert len(reserved_inodes()) == netns.REFILL_LOW
    netns.drain()


def test_the_native_peek_and_the_netns_thread_see_the_same() -> None:
    from fastcontain import _native

    quiet = netns.loopback()  # lo up, nothing in it

    def lo_down() -> int:  # on the netns thread: a namespace left as unshare makes it
        netns._check(netns._libc.unshare(netns.CLONE_NEWNET), "unshare")
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    down = netns._in_thread(lo_down)
    try:
        for fd, expect in ((quiet, None), (down, "lo")):
            native = netns._judge(*_native.netns_peek(fd))
            thread = netns._in_thread(lambda: netns._quiet_here(fd))
            assert native == thread and (native is None if expect is None else expect in native), (native, thread)
        assert netns._quiet(quiet) is None
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with pytest.raises(OSError, match="setns"):
                _native.netns_peek(null)  # no namespace
        finally:
            os.close(null)
        # the peek thread went home each time: this process's namespace is what it was
        assert netns._judge(*_native.netns_peek(quiet)) is None
        assert os.stat("/proc/self/ns/net").st_ino == netns._own_netns()
    finally:
        os.close(quiet)
        os.close(down)
