"""Networks with real traffic: none, host, container:NAME and bridge networks, published
ports, the isolation policy, egress allow-lists, IPAM under concurrency, and cleanup.

Traffic goes only to containers, the host's loopback, the host's bridge addresses or a
stand-in outside host in a namespace the test makes (nettools.Outside)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import fastcontain
from fastcontain import net
from fastcontain.errors import ConfigError, NetworkError

from . import nettools
from .util import LIMIT, out, sh

pytestmark = pytest.mark.privileged

# A wget/nc that fails must fail fast (busybox 1.35 wget -T segfaults: `timeout` instead).
QUICK = 2


@pytest.fixture
def make_network() -> Iterator[Callable[..., net.Network]]:
    made: list[str] = []

    def make(internal: bool = False) -> net.Network:
        n = nettools.unique()
        name = f"fct{os.getpid() % 10000}n{n}"
        network = net.create(name, subnet=f"10.213.{n}.0/24", internal=internal)
        made.append(name)
        return network

    yield make
    for name in made:
        if net.get(name) is not None:
            net.remove(name)


@pytest.fixture
def outside() -> Iterator[nettools.Outside]:
    o = nettools.make_outside()
    yield o
    nettools.remove_outside(o)


def serving(network: str, name: str, **options: Any) -> fastcontain.Container:
    """A started container serving its /etc over HTTP on port 80 (its hostname at /hostname),
    once it listens (asked from the host, over the test's own bridge)."""
    c = fastcontain.Container.create(
        "busybox", ["httpd", "-f", "-p", "80", "-h", "/etc"], network=network, name=name, **options
    )
    c.start()
    try:
        nettools.fetch_ready(address(network, name), 80, send=b"GET /hostname HTTP/1.0\r\n\r\n")
    except BaseException:
        c.remove(force=True)
        raise
    return c


def address(network: str, name: str) -> str:
    n = net.get(network)
    assert n is not None
    return next(ip for ip, lease in n.leases.items() if lease.name == name)


def test_none_is_the_default_and_sees_only_lo() -> None:
    assert out("ls /sys/class/net; ip -4 route") == "lo\n"
    assert fastcontain.Config("busybox").network == "none"


def test_host_network_shares_the_hosts_links() -> None:
    links = out("ls /sys/class/net", network="host").split()
    assert sorted(links) == sorted(os.listdir("/sys/class/net"))


def test_two_containers_reach_each_other_by_name_and_address(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    # a waits for b by name: its /etc/hosts learns b when b is created
    with fastcontain.Container.create(
        "busybox",
        ["sh", "-c", f"httpd -p 80 -h /etc; for i in $(seq 100); do timeout {QUICK} wget -qO- http://b/hostname && exit 0;"
         " sleep 0.1; done; exit 1"],
        network=n.name, name="a", hostname="alpha",
    ) as a:
        a.start()
        with serving(n.name, "b", hostname="beta"):
            r = sh(f"timeout {QUICK} wget -qO- http://a/hostname; timeout {QUICK} wget -qO- http://{address(n.name, 'a')}/hostname;"
                   " cat /etc/hosts", network=n.name, name="c")
            assert r.stdout.startswith("alpha\nalpha\n")
            assert f"{address(n.name, 'b')}\tb\n" in r.stdout and " c\n" in r.stdout  # its own line: hostname, name
            assert a.wait(LIMIT) == 0 and a.logs(stderr=False) == b"beta\n"


def test_dns_files_are_the_containers_own(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    r = out("cat /etc/hostname /etc/resolv.conf; ip -4 -o addr show eth0; ip route", network=n.name,
            hostname="box", dns=["10.213.0.53"], ip=f"10.213.{n.subnet.split('.')[2]}.77")
    hostname, resolv, addr, *routes = r.splitlines()
    assert hostname == "box" and resolv == "nameserver 10.213.0.53"
    assert f"inet {n.subnet.rsplit('.', 1)[0]}.77/24" in addr
    assert routes[0].split() == ["default", "via", n.gateway, "dev", "eth0"]
    with open("/etc/hostname") as f:  # the host's files are untouched
        assert f.read().strip() != "box"


def test_published_port_answers_from_loopback_and_from_another_namespace(
    make_network: Callable[..., net.Network], outside: nettools.Outside
) -> None:
    n = make_network()
    port = 18000 + nettools.unique()
    with serving(n.name, "web", hostname="published", ports=[f"{port}:80"]):
        request = f"GET /hostname HTTP/1.0\r\n\r\n".encode()

        def get(address: str) -> bytes:
            return nettools.fetch_ready(address, port, send=request)

        assert get("127.0.0.1").endswith(b"published\n")
        reply = nettools.in_netns(outside.path, lambda: get(outside.host_ip))
        assert reply.endswith(b"published\n")
    # unpublished with the container
    with pytest.raises(OSError):
        nettools.fetch("127.0.0.1", port, timeout=1)


def test_two_networks_are_isolated(make_network: Callable[..., net.Network]) -> None:
    one, two = make_network(), make_network()
    with serving(one.name, "web"):
        target = address(one.name, "web")
        assert out(f"timeout {QUICK} wget -qO- http://{target}/hostname", network=one.name)  # same network: yes
        # (sh as PID 1: busybox timeout execs wget in its own place, and PID 1 ignores SIGTERM)
        r = fastcontain.run("busybox", ["sh", "-c", f"timeout {QUICK} wget -qO- http://{target}/hostname; echo rc=$?"],
                            network=two.name, capture_output=True, timeout=LIMIT)
        assert r.stdout.startswith(b"rc=") and r.stdout != b"rc=0\n"


def test_outbound_traffic_is_masqueraded(make_network: Callable[..., net.Network], outside: nettools.Outside) -> None:
    n = make_network()
    server = outside.serve()
    try:
        text = out(f"nc -w {QUICK * 2} {outside.ip} {server.port} </dev/null", network=n.name)
        assert text == "hello from outside\n"
        assert server.peers == [outside.host_ip]  # the host's address, not the container's
    finally:
        server.close()


def test_internal_network_has_no_way_out(make_network: Callable[..., net.Network], outside: nettools.Outside) -> None:
    inner, open_ = make_network(internal=True), make_network()
    server = outside.serve()
    host_side = nettools.Server(nettools.listener(inner.gateway))  # on the host, at the internal bridge
    try:
        script = (f"ip route; nc -w {QUICK} {outside.ip} {server.port} </dev/null; echo out=$?;"
                  f" nc -w {QUICK} {inner.gateway} {host_side.port} </dev/null; echo host=$?")
        r = out(script, network=inner.name)
        assert "default" not in r and "out=1" in r and "host=1" in r and "hello" not in r
        # even with a route of its own (given CAP_NET_ADMIN, it can add one), the kernel drops it
        r = out(f"ip route add default via {inner.gateway} && nc -w {QUICK} {outside.ip} {server.port} </dev/null;"
                " echo out=$?", network=inner.name, cap_add=["NET_ADMIN"])
        assert "out=1" in r and "hello" not in r
        # without CAP_NET_ADMIN (the default) it cannot even add the route
        assert "rc=2" in out(f"ip route add default via {inner.gateway}; echo rc=$?", network=inner.name)
        assert server.peers == [] and host_side.peers == []
        # the same from a network that is not internal gets through
        assert out(f"nc -w {QUICK * 2} {outside.ip} {server.port} </dev/null", network=open_.name).startswith("hello")
        with pytest.raises(ConfigError):
            fastcontain.run("busybox", ["true"], network=inner.name, ports=["18999:80"])
    finally:
        server.close()
        host_side.close()


def test_egress_allow_list_admits_what_it_lists_and_drops_the_rest(
    make_network: Callable[..., net.Network], outside: nettools.Outside
) -> None:
    n = make_network()
    server = outside.serve()
    try:
        with serving(n.name, "db"), serving(n.name, "cache"):
            probe = (f"timeout {QUICK} wget -qO- http://db/hostname >/dev/null; echo db=$(( $? == 0 ));"
                     f" timeout {QUICK} wget -qO- http://cache/hostname >/dev/null; echo cache=$(( $? == 0 ));"
                     f" nc -w {QUICK} {outside.ip} {server.port} </dev/null >/dev/null; echo out=$(( $? == 0 ))")
            assert out(probe, network=n.name, egress=["db"]).split() == ["db=1", "cache=0", "out=0"]
            assert out(probe, network=n.name, egress=[f"{outside.ip}/32"]).split() == ["db=0", "cache=0", "out=1"]
            assert out(probe, network=n.name, egress=[]).split() == ["db=0", "cache=0", "out=0"]
            assert out(probe, network=n.name).split() == ["db=1", "cache=1", "out=1"]
            # inbound stays open: db reaches a container whose egress is empty (replies pass)
            with serving(n.name, "locked", egress=[]):
                assert out(f"timeout {QUICK} wget -qO- http://locked/hostname", network=n.name, egress=["locked"])
        assert len(server.peers) == 2
    finally:
        server.close()


def test_concurrent_starts_get_distinct_addresses(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    found: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            for _ in range(3):
                found.append(out("ip -4 -o addr show eth0 | awk '{print $4}'", network=n.name).strip())
        except BaseException as e:
            errors.append(e)

    with fastcontain.Container.create("busybox", ["sleep", "60"], network=n.name) as keep:
        keep.start()
        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(found) == 18
        held = {address for address in net.get(n.name).leases}  # type: ignore[union-attr]
        assert len(held) == 1 and not any(f.split("/")[0] in held for f in found)
    assert net.get(n.name).leases == {}  # type: ignore[union-attr]


def test_static_ip_is_honoured_when_free(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    ip = n.subnet.rsplit(".", 1)[0] + ".99"
    with fastcontain.Container.create("busybox", ["sleep", "60"], network=n.name, ip=ip) as c:
        c.start()
        with pytest.raises(NetworkError, match="already in use"):
            fastcontain.run("busybox", ["true"], network=n.name, ip=ip)
        with pytest.raises(ConfigError, match="gateway"):
            fastcontain.run("busybox", ["true"], network=n.name, ip=n.gateway)
        assert list(net.get(n.name).leases) == [ip]  # type: ignore[union-attr]


def test_container_mode_joins_a_running_containers_network(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    with serving(n.name, "shared", hostname="sharer"):
        r = out(f"timeout {QUICK} wget -qO- http://127.0.0.1/hostname; ip -4 -o addr show eth0 | awk '{{print $4}}'",
                network="container:shared")
        assert r.split() == ["sharer", f"{address(n.name, 'shared')}/24"]
    with pytest.raises(ConfigError, match="no running container"):
        fastcontain.run("busybox", ["true"], network="container:nosuch")


def test_a_published_port_in_use_fails_cleanly(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    busy = nettools.listener("127.0.0.1")
    try:
        with pytest.raises(NetworkError, match="in use"):
            fastcontain.run("busybox", ["true"], network=n.name, ports=[f"127.0.0.1:{busy.getsockname()[1]}:80"])
        with serving(n.name, "first", ports=["18990:80"]):
            with pytest.raises(NetworkError, match="published by another container"):
                fastcontain.run("busybox", ["true"], network=n.name, ports=["18990:81"])
        assert net.get(n.name).leases == {}  # type: ignore[union-attr]
    finally:
        busy.close()


def test_removing_a_network_in_use_is_refused(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    with fastcontain.Container.create("busybox", ["sleep", "60"], network=n.name) as c:
        c.start()
        with pytest.raises(NetworkError, match="in use"):
            net.remove(n.name)
    with pytest.raises(ConfigError, match="no such network"):
        fastcontain.run("busybox", ["true"], network="fcnosuchnet")


def _host_view() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    return {
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link").splitlines()),
        "addresses": sorted(" ".join(line.split()[1:4]) for line in run("ip", "-o", "addr").splitlines()),
        "routes": run("ip", "route"),
        "rules": run("nft", "list", "ruleset"),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "ip_forward": open("/proc/sys/net/ipv4/ip_forward").read(),
    }


def test_many_bridged_containers_leave_the_host_as_it_was(make_network: Callable[..., net.Network]) -> None:
    """CI-sized (the bridge's port limit is 1,024: a leaked veth per container fails long runs)."""
    before = _host_view()
    n = make_network()
    count = int(os.environ.get("FASTCONTAIN_NET_CHURN", "200"))
    for i in range(count):
        r = fastcontain.run("busybox", ["true"], network=n.name, ports=[f"{19000 + i % 50}:80"] if i % 4 == 0 else ())
        assert r.returncode == 0
    assert net.get(n.name).leases == {}  # type: ignore[union-attr]
    net.remove(n.name)
    # the veths go with their namespaces, whose teardown the kernel finishes asynchronously
    deadline = time.monotonic() + 30
    while _host_view()["links"] != before["links"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _host_view() == before


def test_network_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from fastcontain import cli

    n = nettools.unique()
    name = f"fct{os.getpid() % 10000}c{n}"
    assert cli.main(["network", "create", "--subnet", f"10.213.{n}.0/24", "--internal", name]) == 0
    try:
        assert cli.main(["network", "ls"]) == 0
        assert f"10.213.{n}.0/24" in capsys.readouterr().out
        assert cli.main(["network", "inspect", name]) == 0
        assert '"internal": true' in capsys.readouterr().out
        assert cli.main(["network", "create", name]) == 125
        assert "already exists" in capsys.readouterr().err
        assert cli.main(["run", "--network", name, "-p", "80:80", "busybox", "true"]) == 125
    finally:
        assert cli.main(["network", "rm", name]) == 0
    assert cli.main(["network", "rm", name]) == 125


def test_sweep_removes_what_a_crashed_run_left(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    from fastcontain.net import bridge, store

    root = os.path.abspath(os.environ["FASTCONTAIN_ROOT"])
    with store.locked(root):  # a lease whose container is gone, with a published port
        rec = store.load(root, n.name)
        assert rec is not None
        rec.leases[n.subnet.rsplit(".", 1)[0] + ".5"] = store.Lease("0123456789abcdef", None, None,
                                                                     [["tcp", "", 18777, 80]])
        store.save(root, rec)
    stray = store.bridge_name(root, "crashed")  # a bridge whose network record is gone
    bridge.create_bridge(stray, "10.213.251.1", 24, f"fastcontain {root} crashed")
    removed = net.sweep(root)
    assert any("lease" in r for r in removed) and f"bridge {stray}" in removed
    assert net.get(n.name).leases == {}  # type: ignore[union-attr]
    assert bridge.index(stray) is None


def test_a_failure_while_wiring_leaves_nothing(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    with pytest.raises(NetworkError, match="no container named 'nosuch'"):
        fastcontain.run("busybox", ["true"], network=n.name, egress=["nosuch"], ports=["18991:80"])
    assert net.get(n.name).leases == {}  # type: ignore[union-attr]
    with pytest.raises(OSError):  # its port was never left published
        nettools.fetch("127.0.0.1", 18991, timeout=1)


def test_a_port_published_on_one_host_address_answers_only_there(make_network: Callable[..., net.Network]) -> None:
    n = make_network()
    port = 18300 + nettools.unique()
    with serving(n.name, "local", hostname="only-local", ports=[f"127.0.0.1:{port}:80"]):
        request = b"GET /hostname HTTP/1.0\r\n\r\n"
        assert nettools.fetch_ready("127.0.0.1", port, send=request).endswith(b"only-local\n")
        with pytest.raises(OSError):  # another of the host's addresses: not published there
            nettools.fetch(n.gateway, port, timeout=1, send=request)
