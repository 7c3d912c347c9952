"""Address management: which address of a network's subnet a container gets.

Pure functions over a network's record; `store.locked()` makes the
read-allocate-write atomic across threads and processes. An address is never
handed out twice: the network address, the gateway (the bridge's own) and the
broadcast address are reserved, and every lease stays in the record until its
container is removed (or a sweep finds its owner gone).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from ..errors import ConfigError, NetworkError


def parse_subnet(text: str, field: str = "subnet") -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise ConfigError(field, text, f"not an IPv4 network in CIDR form ({e})") from None
    if net.prefixlen > 29:
        raise ConfigError(field, text, "too small: a network needs at least a /29 (gateway plus containers)")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
        raise ConfigError(field, text, "not a usable unicast range")
    return net


def gateway(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The bridge's address: the subnet's first host (docker's choice)."""
    return net.network_address + 1


def allocate(
    net: ipaddress.IPv4Network, taken: Iterable[str], requested: str | None = None, hint: int = 0
) -> ipaddress.IPv4Address:
    """A free address of `net`: `requested` when it is free, else the first free one
    at or after `hint` (the network's last allocation, so freed addresses are reused
    last and a quick reuse does not meet a dying namespace's neighbour entries)."""
    used = {ipaddress.IPv4Address(a) for a in taken}
    reserved = {net.network_address, gateway(net), net.broadcast_address}
    if requested is not None:
        try:
            addr = ipaddress.IPv4Address(requested)
        except ValueError:
            raise ConfigError("ip", requested, "not an IPv4 address") from None
        if addr not in net:
            raise ConfigError("ip", requested, f"not in the network's subnet {net}")
        if addr in reserved:
            raise ConfigError("ip", requested, f"reserved in {net} (network, gateway or broadcast address)")
        if addr in used:
            raise NetworkError(f"address {addr} is already in use on {net}")
        return addr
    first, size = int(net.network_address), net.num_addresses
    start = max(0, hint - first) % size
    for i in range(size):
        addr = ipaddress.IPv4Address(first + (start + i) % size)
        if addr not in reserved and addr not in used:
            return addr
    raise NetworkError(f"no free address left in {net} ({len(used)} leased)")
