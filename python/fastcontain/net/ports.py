"""Published ports and the other network options of a container, parsed and checked.

`-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]` as docker spells it. These
functions only look at the text (Config calls them before anything exists).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import ConfigError

PROTOCOLS = ("tcp", "udp")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")


@dataclass(frozen=True)
class Port:
    """A published port: host_ip:host_port -> container_port (host_ip "" is every local address)."""

    proto: str
    host_ip: str
    host_port: int
    container_port: int

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{host}{self.host_port}:{self.container_port}/{self.proto}"

    @classmethod
    def parse(cls, text: object, field: str = "ports") -> Port:
        if isinstance(text, Port):
            return text
        if not isinstance(text, str):
            raise ConfigError(field, text, "expected '[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]'")
        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        if proto not in PROTOCOLS:
            raise ConfigError(field, text, f"unknown protocol {proto!r} (tcp or udp)")
        parts = spec.split(":")
        if len(parts) == 2:
            host_ip, host_port, container_port = "", parts[0], parts[1]
        elif len(parts) == 3:
            host_ip, host_port, container_port = parts
        else:
            raise ConfigError(field, text, "expected '[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]' (both ports given)")
        if host_ip in ("0.0.0.0", ""):
            host_ip = ""
        else:
            try:
                ipaddress.IPv4Address(host_ip)
            except ValueError:
                raise ConfigError(field, text, f"host address {host_ip!r} is not an IPv4 address") from None
        numbers = []
        for which, value in (("host port", host_port), ("container port", container_port)):
            if not value.isdigit() or not 1 <= int(value) <= 65535:
                raise ConfigError(field, text, f"{which} {value!r} is not a port number (1-65535)")
            numbers.append(int(value))
        return cls(proto, host_ip, numbers[0], numbers[1])


def parse_network(value: object) -> tuple[str, str | None]:
    """("none"|"host"|"container"|"bridge", the network or container name)."""
    if not isinstance(value, str) or not value:
        raise ConfigError("network", value, "expected none, host, container:NAME or a network name")
    if value in ("none", "host"):
        return value, None
    if value.startswith("container:"):
        target = value.partition(":")[2]
        if not _NAME.match(target):
            raise ConfigError("network", value, "container:NAME needs the name (or id) of a running container")
        return "container", target
    if not _NAME.match(value) or len(value) > 64:
        raise ConfigError("network", value, "a network name matches [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 64)")
    return "bridge", value


def parse_egress(item: object, field: str = "egress") -> str:
    """A CIDR, an address, or the name of a peer container on the same network."""
    if not isinstance(item, str) or not item:
        raise ConfigError(field, item, "expected a CIDR, an IPv4 address or a container name")
    try:
        return str(ipaddress.IPv4Network(item, strict=False))
    except ValueError:
        pass
    if not _NAME.match(item) or item[0].isdigit() and item.replace(".", "").isdigit():
        raise ConfigError(field, item, "not a CIDR, an IPv4 address or a container name")
    return item


def parse_address(item: object, field: str) -> str:
    try:
        return str(ipaddress.IPv4Address(item))  # type: ignore[arg-type]
    except ValueError:
        raise ConfigError(field, item, "not an IPv4 address") from None
