"""Network definitions and their leases, persisted under the runtime root.

Layout (next to the containers' state, see fastcontain.state):

    <root>/networks/lock          flock'ed exclusively around every read-modify-write
    <root>/networks/<name>.json   one network: subnet, bridge, internal, leases

A lease is {address: {"container": id, "name": ..., "hosts": path, "ports": [...]}}.
The lock is an flock on a file opened anew by each holder, so it excludes other
threads of this process as well as other processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import NetworkError
from .. import state as _state

_thread_lock = threading.RLock()
_depth = threading.local()


@dataclass
class Lease:
    container: str
    name: str | None
    hosts: str | None  # the container's /etc/hosts in its state dir (kept up to date with peers)
    ports: list[list[Any]] = field(default_factory=list)  # [proto, host_ip, host_port, container_port]

    def to_json(self) -> dict[str, Any]:
        return {"container": self.container, "name": self.name, "hosts": self.hosts, "ports": self.ports}


@dataclass
class Network:
    name: str
    subnet: str
    gateway: str
    bridge: str
    internal: bool = False
    leases: dict[str, Lease] = field(default_factory=dict)
    last: int = 0  # the last address handed out, as an int (IPAM's hint)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "bridge": self.bridge,
            "internal": self.internal,
            "last": self.last,
            "leases": {ip: lease.to_json() for ip, lease in self.leases.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Network:
        leases = {ip: Lease(**v) for ip, v in d.get("leases", {}).items()}
        return cls(d["name"], d["subnet"], d["gateway"], d["bridge"], bool(d.get("internal")), leases, d.get("last", 0))


def directory(root: str | None = None) -> str:
    return os.path.join(os.path.abspath(root or _state.default_root()), "networks")


def bridge_name(root: str, name: str) -> str:
    """`fcbr` and 8 hex digits of (root, name): unique per runtime root, 12 characters."""
    digest = hashlib.sha256(f"{os.path.abspath(root)}\0{name}".encode()).hexdigest()
    return f"fcbr{digest[:8]}"


def table_name(root: str) -> str:
    """fastcontain's nftables table for this runtime root."""
    root = os.path.abspath(root)
    if root == _state.DEFAULT_ROOT:
        return "fastcontain"
    return "fastcontain_" + hashlib.sha256(root.encode()).hexdigest()[:8]


@contextmanager
def locked(root: str | None = None) -> Iterator[str]:
    """Hold the networks lock (re-entrant within a thread); yields the directory."""
    d = directory(root)
    with _thread_lock:
        depth = getattr(_depth, "n", 0)
        if depth:
            _depth.n = depth + 1
            try:
                yield d
            finally:
                _depth.n = depth
            return
        os.makedirs(d, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _depth.n = 1
            yield d
        finally:
            _depth.n = 0
            os.close(fd)


def load(root: str | None, name: str) -> Network | None:
    path = os.path.join(directory(root), f"{name}.json")
    try:
        with open(path) as f:
            return Network.from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise NetworkError(f"the network record {path} is corrupt: {e}") from None


def load_all(root: str | None) -> list[Network]:
    d = directory(root)
    try:
        names = sorted(n[:-5] for n in os.listdir(d) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    return [n for n in (load(root, name) for name in names) if n is not None]


def save(root: str | None, net: Network) -> None:
    """Write atomically (rename), so a crash leaves the old record or the new one."""
    d = directory(root)
    path = os.path.join(d, f"{net.name}.json")
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(net.to_json(), f)
    os.rename(tmp, path)


def delete(root: str | None, name: str) -> None:
    try:
        os.unlink(os.path.join(directory(root), f"{name}.json"))
    except FileNotFoundError:
        pass
