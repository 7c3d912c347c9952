"""Who may talk to whom, as nftables rules. Python owns the policy; the kernel enforces it.

fastcontain's table on the host (one per runtime root, `inet fastcontain`, with
the root in its comment) is rebuilt as a whole, in one transaction, whenever a
network comes or goes; published ports are elements of its maps, added and
removed one by one as containers come and go. Nothing outside that table is
read or changed.

- Containers on different bridge networks cannot reach each other (forward
  between two bridges is dropped), except through a published port, as docker.
- An internal network reaches nothing outside itself: neither other networks,
  nor the host, nor the outside (input and forward from its bridge dropped,
  no masquerade, and its containers get no default route).
- Outbound traffic of other networks is masqueraded.
- Published ports are DNAT'ed for traffic to any local address, arriving from
  outside (prerouting) or sent by the host itself (output), loopback included:
  the bridge has route_localnet, and loopback sources are masqueraded onto it.
- If fastcontain turned IPv4 forwarding on, forwarding between interfaces that
  are not fastcontain's is dropped, so the host routes nothing it did not before.

Per container, an egress allow-list is a table in the container's own network
namespace (its output hook): loopback, replies and the listed peers pass,
everything else is dropped. It lives and dies with the namespace.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Iterable, Sequence

from .ports import PROTOCOLS, Port
from .store import Network


def _map(port: Port) -> str:
    return f"{port.proto}_{'addr' if port.host_ip else 'any'}"


def _element(port: Port, address: str) -> str:
    key = f"{port.host_ip} . {port.host_port}" if port.host_ip else f"{port.host_port}"
    return f"{key} : {address} . {port.container_port}"


def port_elements(table: str, address: str, ports: Iterable[Port], verb: str) -> str:
    """`add`/`delete` commands for the map elements of a container's published ports."""
    return "".join(f"{verb} element inet {table} {_map(p)} {{ {_element(p, address)} }}\n" for p in ports)


def host_table(table: str, comment: str, networks: Sequence[Network], own_forwarding: bool) -> str:
    """The whole table, replacing the old one atomically ("add" first, so "delete" cannot fail)."""
    maps: list[str] = []
    pre: list[str] = []
    out: list[str] = []
    post: list[str] = []
    fwd: list[str] = []
    inp: list[str] = []
    elements: dict[str, list[str]] = {}
    for net in networks:
        for address, lease in net.leases.items():
            for proto, host_ip, host_port, container_port in lease.ports:
                p = Port(proto, host_ip, host_port, container_port)
                elements.setdefault(_map(p), []).append(_element(p, address))
    for proto in PROTOCOLS:
        for kind, key in (("any", "inet_service"), ("addr", "ipv4_addr . inet_service")):
            name = f"{proto}_{kind}"
            items = elements.get(name)
            body = f" elements = {{ {', '.join(items)} }};" if items else ""
            maps.append(f"  map {name} {{ type {key} : ipv4_addr . inet_service;{body} }}")
        for rules in (pre, out):
            rules.append(f"    fib daddr type local dnat ip to ip daddr . {proto} dport map @{proto}_addr")
            rules.append(f"    fib daddr type local dnat ip to {proto} dport map @{proto}_any")
    fwd.append("    ct state established,related accept")
    for net in networks:
        br = json.dumps(net.bridge)
        if net.internal:
            fwd.append(f"    iifname {br} oifname != {br} drop")
            fwd.append(f"    oifname {br} iifname != {br} drop")
            inp.append(f"    iifname {br} ct state established,related accept")
            inp.append(f"    iifname {br} drop")
        else:
            post.append(f"    ip saddr {net.subnet} oifname != {br} masquerade")
        post.append(f"    oifname {br} ip saddr 127.0.0.0/8 ct status dnat masquerade")
    fwd.append("    ct status dnat accept")
    for net in networks:
        br = json.dumps(net.bridge)
        fwd.append(f"    iifname {br} oifname {br} accept")  # same network (seen here with br_netfilter)
        fwd.append(f'    iifname {br} oifname "fcbr*" drop')  # another network
    if own_forwarding:
        fwd.append('    iifname != "fc*" oifname != "fc*" drop')

    def chain(name: str, hook: str, kind: str, prio: int, rules: list[str]) -> str:
        head = f"  chain {name} {{\n    type {kind} hook {hook} priority {prio}; policy accept;\n"
        return head + "".join(r + "\n" for r in rules) + "  }"

    body = "\n".join(
        [f"  comment {json.dumps(comment)}"]
        + maps
        + [
            chain("prerouting", "prerouting", "nat", -100, pre),
            chain("output", "output", "nat", -100, out),
            chain("postrouting", "postrouting", "nat", 100, post),
            chain("forward", "forward", "filter", 0, fwd),
            chain("input", "input", "filter", 0, inp),
        ]
    )
    return f"add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n{body}\n}}\n"


def drop_table(table: str) -> str:
    return f"add table inet {table}\ndelete table inet {table}\n"


EGRESS_TABLE = "fastcontain_egress"


def egress_table(allowed: Sequence[ipaddress.IPv4Network]) -> str:
    """The container-side allow-list: everything not listed is dropped on output."""
    rules = ['    oifname "lo" accept', "    ct state established,related accept"]
    if allowed:
        rules.append(f"    ip daddr {{ {', '.join(str(n) for n in allowed)} }} accept")
    body = "".join(r + "\n" for r in rules)
    return (
        f"table inet {EGRESS_TABLE} {{\n  chain output {{\n    type filter hook output priority 0; policy drop;\n"
        f"{body}  }}\n}}\n"
    )
