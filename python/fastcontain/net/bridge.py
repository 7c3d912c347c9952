"""Links on the host through pyroute2 (netlink; nothing shells out to `ip`).

Every call here works in the caller's (the host's) network namespace: nothing
in this module ever changes namespace, so pyroute2's sockets, which 0.9 opens
lazily, cannot land in the wrong one. What must happen inside a container's
namespace is done by the container's own init (its eth0 address and route,
see the native spec's `interface`) or by a thread that joins it (nft.in_netns).

Names: bridges `fcbr` + 8 hex digits, container ends `fcv` + 12 hex digits of
the container id (`fcp` for a pool's slot, wired ahead); each bridge's alias says "fastcontain <root> <network>", so a
sweep can tell its own, and orphans of a runtime root that is gone.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, Iterator

from ..errors import NetworkError

ALIAS = "fastcontain"


class _Netlink:
    """The process's IPRoute, driven from one thread of its own: pyroute2 0.9 keeps an
    asyncio loop and sockets per calling thread, so calls from many threads would
    leave a socket behind for each; one worker keeps exactly one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: Any = None
        self._ipr: Any = None

    def _open(self) -> Any:
        try:
            from pyroute2 import IPRoute
        except ImportError:
            raise NetworkError("bridge networks need pyroute2 (pip install pyroute2)") from None
        self._ipr = IPRoute()

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="fastcontain-netlink")
                    self._pool.submit(self._open).result()
            def work() -> Any:
                result = getattr(self._ipr, name)(*args, **kwargs)
                return list(result) if hasattr(result, "__next__") else result

            return self._pool.submit(work).result()

        return call


_ipr = _Netlink()


def ipr() -> Any:
    """This process's netlink socket in the host namespace (see _Netlink)."""
    return _ipr


def _code(e: BaseException) -> int:
    return int(getattr(e, "code", 0) or 0)


def _fail(what: str, e: BaseException) -> NetworkError:
    code = _code(e)
    name = errno.errorcode.get(code, str(code))
    return NetworkError(f"{what} failed: {name} ({os.strerror(code) if code else e})")


def index(name: str) -> int | None:
    found = ipr().link_lookup(ifname=name)
    return found[0] if found else None


def create_bridge(name: str, gateway: str, prefix: int, alias: str) -> None:
    """The bridge with the gateway address, up, with route_localnet (published ports
    reached from the host's loopback are routed onto it)."""
    try:
        ipr().link("add", ifname=name, kind="bridge", ifalias=alias)
    except Exception as e:
        if _code(e) != errno.EEXIST:
            raise _fail(f"creating bridge {name}", e) from None
    try:
        idx = index(name)
        assert idx is not None
        ipr().link("set", index=idx, ifalias=alias)
        if not any(a.get_attr("IFA_ADDRESS") == gateway for a in ipr().get_addr(index=idx, family=2)):
            ipr().addr("add", index=idx, address=gateway, prefixlen=prefix)
        with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "w") as f:
            f.write("1")
        ipr().link("set", index=idx, state="up")
    except Exception as e:
        delete_link(name)
        if isinstance(e, NetworkError):
            raise
        raise _fail(f"configuring bridge {name} ({gateway}/{prefix})", e) from None


def delete_link(name: str) -> bool:
    """Delete a link by name; False when it was not there."""
    try:
        ipr().link("del", ifname=name)
        return True
    except Exception as e:
        if _code(e) in (errno.ENODEV, errno.ENOENT):
            return False
        raise _fail(f"deleting link {name}", e) from None


def add_veth(host_name: str, bridge_index: int, netns_fd: int, peer_name: str = "eth0") -> None:
    """One RTM_NEWLINK: the pair, its host end up and enslaved to the bridge, and the
    peer created directly in the container's namespace under its final name, up.
    (Creating it on the host and moving it costs 15-20 ms of RCU waits; this < 1 ms.)"""
    up = 1  # IFF_UP
    try:
        ipr().link(
            "add",
            ifname=host_name,
            kind="veth",
            master=bridge_index,
            state="up",
            peer={"ifname": peer_name, "net_ns_fd": netns_fd, "flags": up, "change": up},
        )
    except Exception as e:
        raise _fail(f"creating the veth pair {host_name} <-> {peer_name} (in the container)", e) from None


def fc_links(kind: str | None = None) -> Iterator[tuple[str, str, str | None]]:
    """(name, kind, alias) of every fc-prefixed link in the host namespace."""
    for link in ipr().get_links():
        name = link.get_attr("IFLA_IFNAME") or ""
        if not name.startswith("fc"):
            continue
        info = link.get_attr("IFLA_LINKINFO")
        link_kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if kind is None or link_kind == kind:
            yield name, link_kind or "", link.get_attr("IFLA_IFALIAS")


def host_routes() -> list[tuple[str, int]]:
    """(destination, prefix) of the host's IPv4 routes in the main table, default excluded."""
    out = []
    for r in ipr().get_routes(family=2, table=254):
        dst = r.get_attr("RTA_DST")
        if dst:
            out.append((dst, r["dst_len"]))
    for a in ipr().get_addr(family=2):
        out.append((a.get_attr("IFA_ADDRESS"), 32))
    return out
