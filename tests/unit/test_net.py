"""fastcontain.net without root: IPAM, the lock across processes, the rules as text,
port parsing and the DNS files."""

from __future__ import annotations

import ipaddress
import multiprocessing
from pathlib import Path

import pytest

from fastcontain.errors import ConfigError, NetworkError
from fastcontain.net import dns, ipam, policy, store
from fastcontain.net.ports import Port, parse_network

NET = ipaddress.IPv4Network("10.213.7.0/29")  # hosts .1-.6; .1 is the gateway


def test_ipam_hands_out_each_address_once_and_honours_a_free_static_one() -> None:
    taken: list[str] = []
    while True:
        try:
            taken.append(str(ipam.allocate(NET, taken)))
        except NetworkError as e:
            assert "no free address" in str(e)
            break
    assert taken == [f"10.213.7.{i}" for i in range(2, 7)]
    assert str(ipam.allocate(NET, ["10.213.7.2"], "10.213.7.5")) == "10.213.7.5"
    with pytest.raises(NetworkError, match="in use"):
        ipam.allocate(NET, ["10.213.7.5"], "10.213.7.5")
    for bad in ("10.213.7.1", "10.213.7.0", "10.213.7.7"):
        with pytest.raises(ConfigError, match="reserved"):
            ipam.allocate(NET, [], bad)
    with pytest.raises(ConfigError, match="not in"):
        ipam.allocate(NET, [], "10.213.8.2")
    # after the last allocation, not from the start: a freed address is reused last
    assert str(ipam.allocate(NET, ["10.213.7.2"], hint=int(ipaddress.IPv4Address("10.213.7.4")))) == "10.213.7.4"
    assert str(ipam.allocate(NET, [], hint=int(ipaddress.IPv4Address("10.213.7.7")))) == "10.213.7.2"


def test_subnets_are_checked() -> None:
    assert ipam.parse_subnet("10.213.0.0/16").prefixlen == 16
    for bad in ("10.213.0.1/16", "10.213.0.0/30", "127.0.0.0/8", "nonsense", "fd00::/64"):
        with pytest.raises(ConfigError):
            ipam.parse_subnet(bad)


def _allocate_many(root: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    got = []
    for _ in range(n):
        with store.locked(root):
            net = store.load(root, "n")
            assert net is not None
            addr = ipam.allocate(ipaddress.IPv4Network(net.subnet), net.leases, hint=net.last + 1)
            net.leases[str(addr)] = store.Lease("0" * 16, None, None)
            net.last = int(addr)
            store.save(root, net)
            got.append(str(addr))
    out.put(got)


def test_the_lock_holds_across_processes(tmp_path: Path) -> None:
    root = str(tmp_path)
    with store.locked(root):
        store.save(root, store.Network("n", "10.213.0.0/24", "10.213.0.1", "fcbrx"))
    q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_allocate_many, args=(root, 20, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    flat = [a for r in results for a in r]
    assert len(flat) == 80 and len(set(flat)) == 80
    assert sorted(store.load(root, "n").leases) == sorted(flat)  # type: ignore[union-attr]


def test_the_host_table_says_the_policy() -> None:
    a = store.Network("a", "10.213.1.0/24", "10.213.1.1", "fcbra")
    a.leases["10.213.1.5"] = store.Lease("1" * 16, "web", None, [["tcp", "", 8080, 80], ["udp", "127.0.0.1", 53, 53]])
    b = store.Network("b", "10.213.2.0/24", "10.213.2.1", "fcbrb", internal=True)
    text = policy.host_table("fastcontain_t", "fastcontain /root *", [a, b], own_forwarding=True)
    assert text.startswith("add table inet fastcontain_t\ndelete table inet fastcontain_t\n")
    assert 'ip saddr 10.213.1.0/24 oifname != "fcbra" masquerade' in text
    assert "10.213.2.0/24" not in text  # internal: never masqueraded
    assert 'iifname "fcbrb" oifname != "fcbrb" drop' in text and 'iifname "fcbrb" drop' in text
    assert 'iifname "fcbra" oifname "fcbr*" drop' in text
    assert 'iifname != "fc*" oifname != "fc*" drop' in text
    assert "elements = { 8080 : 10.213.1.5 . 80 }" in text
    assert "elements = { 127.0.0.1 . 53 : 10.213.1.5 . 53 }" in text
    # the established/dnat accepts come before the drops between networks
    assert text.index("ct status dnat accept") < text.index('oifname "fcbr*" drop')
    assert "oifname != " not in policy.host_table("t", "c", [a], own_forwarding=False).split("chain forward")[1]
    ports = [Port("tcp", "", 8080, 80)]
    assert policy.port_elements("t", "10.0.0.2", ports, "delete") == \
        "delete element inet t tcp_any { 8080 : 10.0.0.2 . 80 }\n"


def test_the_egress_table_drops_all_but_the_list() -> None:
    text = policy.egress_table([ipaddress.IPv4Network("10.213.1.5/32"), ipaddress.IPv4Network("10.9.0.0/16")])
    assert "policy drop;" in text and "ip daddr { 10.213.1.5/32, 10.9.0.0/16 } accept" in text
    assert "ip daddr" not in policy.egress_table([])


def test_ports_and_network_names_parse() -> None:
    assert Port.parse("8080:80") == Port("tcp", "", 8080, 80)
    assert Port.parse("0.0.0.0:53:53/udp") == Port("udp", "", 53, 53)
    assert str(Port.parse("127.0.0.1:8443:443")) == "127.0.0.1:8443:443/tcp"
    assert parse_network("none") == ("none", None) and parse_network("container:db") == ("container", "db")
    assert parse_network("backend") == ("bridge", "backend")
    with pytest.raises(ConfigError):
        parse_network("bad name")


def test_dns_files(tmp_path: Path) -> None:
    text = dns.hosts("box", "10.213.1.5", "web", [("db", "10.213.1.6")])
    assert "10.213.1.5\tbox web\n" in text and text.endswith("10.213.1.6\tdb\n") and "127.0.0.1\tlocalhost" in text
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.53\nsearch example.test\n")
    assert dns.resolv_conf((), str(host)) == "nameserver 10.0.0.53\nsearch example.test\n"
    assert dns.resolv_conf(("10.1.1.1",), str(host)) == "nameserver 10.1.1.1\n"
    f = tmp_path / "hosts"
    dns.write(str(f), "long content\n" * 3)
    inode = f.stat().st_ino
    dns.write(str(f), "short\n")
    assert f.read_text() == "short\n" and f.stat().st_ino == inode  # in place: a bind mount keeps it
    assert store.bridge_name("/run/a", "x") != store.bridge_name("/run/b", "x")
    assert len(store.bridge_name("/run/a", "x")) <= 15 and store.table_name("/run/fastcontain") == "fastcontain"
