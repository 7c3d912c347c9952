"""Pools of real containers: slots made ahead, isolated and bridged runs (with real
traffic between two pooled containers and to a published port on loopback), nothing
left after close."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import fastcontain
from fastcontain import net
from fastcontain.errors import ConfigError

from . import nettools
from .util import LIMIT

pytestmark = pytest.mark.privileged


def test_pool_runs_isolated_containers_from_ready_slots(session_dirs):
    with fastcontain.Pool("busybox", size=4, hostname="pooled") as pool:
        assert pool.wait_ready(LIMIT)
        outs = [pool.run(["sh", "-c", "echo $$ $(hostname); touch /written"], capture_output=True, text=True, check=True)
                for _ in range(20)]
        assert {o.stdout for o in outs} == {"1 pooled\n"}
        assert pool.hits >= 4
        r = pool.run(["sh", "-c", "test -e /written"])  # a fresh writable layer every time
        assert r.returncode == 1
        with pool.container(["sleep", "3600"]) as c:
            c.start()
            c.kill()
            assert c.wait(timeout=LIMIT) == -9
    fastcontain.teardown.flush()
    assert [e for e in os.listdir(session_dirs.root) if e not in ("lock", "names", "networks")] == []


@pytest.fixture
def pool_network() -> Iterator[net.Network]:
    n = nettools.unique()
    network = net.create(f"fct{os.getpid() % 10000}p{n}", subnet=f"10.213.{n}.0/24")
    try:
        yield network
    finally:
        fastcontain.teardown.flush()
        net.remove(network.name)


def _eth0(pool: fastcontain.Pool, **options: object) -> str:
    return pool.run(["sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}'"], capture_output=True, text=True,
                    check=True, **options).stdout.strip()  # type: ignore[arg-type]


def test_bridged_pool_slots_are_wired_ahead_and_carry_real_traffic(session_dirs, pool_network):
    n = pool_network
    with fastcontain.Pool("busybox", size=3, network=n.name) as pool:
        assert pool.wait_ready(LIMIT)
        # each ready slot holds a lease, and its veth is on the bridge before any container
        leases = net.get(n.name).leases  # type: ignore[union-attr]
        assert len(leases) == 3
        assert sum(1 for name in os.listdir(f"/sys/class/net/{n.bridge}/brif") if name.startswith("fcp")) >= 3
        r = pool.run(["sh", "-c", "ls /sys/class/net; ip -4 route; cat /etc/hostname"], capture_output=True,
                     text=True, check=True)
        eth0, lo, default, _, hostname = r.stdout.splitlines()
        assert (eth0, lo) == ("eth0", "lo") and default.startswith(f"default via {n.gateway} dev eth0"), r.stdout
        assert len(hostname) == 12, r.stdout
        assert _eth0(pool).startswith(n.subnet.rsplit(".", 1)[0] + ".")
        # two pooled bridged containers: one serves, the other fetches from it by address
        with pool.container(["httpd", "-f", "-p", "80", "-h", "/etc"]) as server:
            server.start()
            ip = next(ip for ip, lease in net.get(n.name).leases.items()  # type: ignore[union-attr]
                      if lease.container == server.id)
            assert nettools.fetch_ready(ip, 80, send=b"GET /hostname HTTP/1.0\r\n\r\n").endswith(
                f"{server.id[:12]}\n".encode())
            got = pool.run(["sh", "-c", f"timeout 5 wget -qO- http://{ip}/hostname"], capture_output=True, text=True)
            assert got.stdout == f"{server.id[:12]}\n", got
        # a port published for one run, reached from the host's loopback
        port = 19500 + nettools.unique()
        with pool.container(["httpd", "-f", "-p", "80", "-h", "/etc"], ports=[f"127.0.0.1:{port}:80"]) as web:
            web.start()
            reply = nettools.fetch_ready("127.0.0.1", port, send=b"GET /hostname HTTP/1.0\r\n\r\n")
            assert reply.endswith(f"{web.id[:12]}\n".encode()), reply
        # the port is free again at once, for the next run that asks
        assert pool.run(["true"], ports=[f"127.0.0.1:{port}:80"]).returncode == 0
        assert pool.hits >= 5
    fastcontain.teardown.flush()
    assert net.get(n.name).leases == {}  # type: ignore[union-attr]
    assert str(port) not in _port_elements()
    assert [e for e in os.listdir(session_dirs.root) if e not in ("lock", "names", "networks")] == []


def _port_elements() -> str:
    from fastcontain.net import nft, store

    maps = nft.host().run(f"list table inet {store.table_name(fastcontain.state.default_root())}", "listing")
    return "".join(line for line in maps.splitlines() if "elements" in line)


def test_a_bridged_pool_run_that_changes_the_network_gets_its_own(session_dirs, pool_network):
    n = pool_network
    with fastcontain.Pool("busybox", size=2, network=n.name) as pool:
        assert pool.wait_ready(LIMIT)
        ip = n.subnet.rsplit(".", 1)[0] + ".77"
        assert _eth0(pool, ip=ip) == f"{ip}/24"  # a static ip: not the slot's lease
        r = pool.run(["sh", "-c", "ls /sys/class/net; cat /etc/hosts"], network="none", capture_output=True, text=True,
                     check=True)
        assert r.stdout.split()[0] == "lo" and n.subnet.rsplit(".", 1)[0] not in r.stdout, r.stdout
        ro = pool.run(["sh", "-c", "cat /etc/hostname; ls /sys/class/net"], readonly_rootfs=True, capture_output=True,
                      text=True, check=True)
        assert ro.stdout.split()[1:] == ["eth0", "lo"], ro.stdout  # its own network, DNS files bound


def test_a_bridged_pool_refuses_shared_ports_and_addresses(pool_network):
    with pytest.raises(ConfigError, match="per run"):
        fastcontain.Pool("busybox", size=2, network=pool_network.name, ports=["18080:80"])
    with pytest.raises(ConfigError, match="one address"):
        fastcontain.Pool("busybox", size=2, network=pool_network.name, ip="10.213.1.5")


CRASHING_POOL = """
import os, sys, fastcontain
pool = fastcontain.Pool("busybox", size=3, network=sys.argv[1])
assert pool.wait_ready(30)
print(len(pool._ready), flush=True)
os._exit(0)  # killed with its slots ready: no close, no teardown
"""


def test_a_crashed_bridged_pool_is_swept(session_dirs, pool_network):
    import subprocess
    import sys
    import time

    from fastcontain import cgroups, state

    n = pool_network
    r = subprocess.run([sys.executable, "-c", CRASHING_POOL, n.name], capture_output=True, text=True, timeout=LIMIT)
    assert r.stdout.strip() == "3", r.stderr
    left = [e for e in os.listdir(session_dirs.root) if e not in ("lock", "names", "networks")]
    assert len(left) == 3 and len(net.get(n.name).leases) == 3  # type: ignore[union-attr]
    # what the dead process held went with it: its namespaces, so their veths
    deadline = time.monotonic() + LIMIT
    while any(x.startswith("fcp") for x in os.listdir(f"/sys/class/net/{n.bridge}/brif")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(x.startswith("fcp") for x in os.listdir(f"/sys/class/net/{n.bridge}/brif"))
    # the sweeps remove the rest: leases, state dirs, cgroups
    assert len(net.sweep()) == 3
    assert net.get(n.name).leases == {}  # type: ignore[union-attr]
    assert sorted(state.sweep()) == sorted(left)
    assert sorted(cgroups.manager().sweep(state.owner_alive)) == sorted(left)
