"""Container networks: none, host, container:NAME and named bridge networks.

    fastcontain.net.create("backend", subnet="10.213.0.0/24")
    fastcontain.run("busybox", ["wget", "-qO-", "http://web/"], network="backend")

A bridge network is a Linux bridge on the host (`fcbr...`) holding the
network's gateway address, a record under `<root>/networks/` (subnet, leases)
and its part of fastcontain's nftables table (see policy.py). The default
network, `bridge`, is made on first use; its subnet is $FASTCONTAIN_BRIDGE_SUBNET
or 172.30.0.0/16. Creating the first bridge network turns IPv4 forwarding on
(as docker does), and removing the last one turns it off again if fastcontain
was the one that turned it on.

One container's network is an `Attachment`: `prepare` (before the spawn: a
lease, the DNS files, the spec entries), `wire` (while the child waits for
start: the veth pair, its egress allow-list, its published ports) and
`release` (after the container is gone). A pool's bridged slot does the wiring
ahead (`wire_ahead`: the veth with its peer made in the slot's namespace as eth0,
eth0's address and route, the egress allow-list), so its container joins a
namespace that is ready and its start waits for nothing; ports asked for one run
are published when the slot is taken (`publish`).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import threading
from typing import Any, Sequence

from .. import state as _state
from ..errors import ConfigError, NetworkError
from . import bridge, dns, ipam, nft, policy, store
from .ports import Port, parse_network
from .store import Lease, Network

__all__ = [
    "Attachment", "Network", "create", "remove", "get", "list_networks", "inspect", "sweep",
    "DEFAULT_NETWORK", "default_subnet",
]

DEFAULT_NETWORK = "bridge"
DEFAULT_SUBNET = "172.30.0.0/16"
SUBNET_ENV = "FASTCONTAIN_BRIDGE_SUBNET"
POOL = "172.31.0.0/16"  # /24s for networks created without --subnet
FORWARD = "/proc/sys/net/ipv4/ip_forward"
# ip_forward is host-wide, so is the note that fastcontain turned it on (and from what).
FORWARD_RECORD = "/run/fastcontain-ip_forward"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}\Z")
_swept: set[str] = set()
_bridge_index: dict[str, int] = {}


def default_subnet() -> str:
    return os.environ.get(SUBNET_ENV) or DEFAULT_SUBNET


def _root(root: str | None) -> str:
    return os.path.abspath(root or _state.default_root())


def _alias(root: str, name: str) -> str:
    return f"{bridge.ALIAS} {root} {name}"


# -- the host's table and forwarding ------------------------------------------------


def _apply(root: str) -> None:
    """Rebuild this root's table from its records (under the lock)."""
    networks = store.load_all(root)
    table = store.table_name(root)
    if networks:
        text = policy.host_table(table, _alias(root, "*"), networks, os.path.exists(FORWARD_RECORD))
    else:
        text = policy.drop_table(table)
    nft.host().run(text, f"writing nftables table inet {table}")


def _enable_forwarding() -> None:
    with open(FORWARD) as f:
        was = f.read().strip()
    if was == "1":
        return
    try:
        fd = os.open(FORWARD_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(was + "\n")
    except FileExistsError:
        pass
    with open(FORWARD, "w") as f:
        f.write("1")


def _maybe_restore_forwarding() -> None:
    """Turn forwarding back off when fastcontain turned it on and no fastcontain bridge is left."""
    if not os.path.exists(FORWARD_RECORD):
        return
    if any((alias or "").startswith(bridge.ALIAS + " ") for _, _, alias in bridge.fc_links("bridge")):
        return
    with open(FORWARD_RECORD) as f:
        was = f.read().strip() or "0"
    with open(FORWARD, "w") as f:
        f.write(was)
    os.unlink(FORWARD_RECORD)


# -- networks ---------------------------------------------------------------------


def _overlaps(net: ipaddress.IPv4Network, root: str) -> str | None:
    """What on this host `net` would collide with, if anything."""
    for other in store.load_all(root):
        if ipaddress.IPv4Network(other.subnet).overlaps(net):
            return f"network {other.name!r} ({other.subnet})"
    for dst, prefix in bridge.host_routes():
        if ipaddress.IPv4Network(f"{dst}/{prefix}", strict=False).overlaps(net):
            return f"the host's route or address {dst}/{prefix}"
    for line in dns.resolv_conf(()).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                if ipaddress.ip_address(parts[1]) in net:
                    return f"the host's nameserver {parts[1]}"
            except ValueError:
                pass
    return None


def _pick_subnet(root: str) -> ipaddress.IPv4Network:
    for candidate in ipaddress.IPv4Network(POOL).subnets(new_prefix=24):
        if _overlaps(candidate, root) is None:
            return candidate
    raise NetworkError(f"no free /24 left in {POOL}: give --subnet")


def create(name: str, subnet: str | None = None, internal: bool = False, *, root: str | None = None) -> Network:
    """Create a bridge network: its record, its bridge and its rules."""
    if not isinstance(name, str) or not _NAME.match(name) or name in ("none", "host"):
        raise ConfigError("network name", name, "must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 64), not none/host")
    if not isinstance(internal, bool):
        raise ConfigError("internal", internal, "must be a bool")
    root = _root(root)
    if subnet is not None:
        parsed = ipam.parse_subnet(subnet)
    with store.locked(root):
        _sweep_locked(root)
        if store.load(root, name) is not None:
            raise NetworkError(f"network {name!r} already exists")
        if subnet is None:
            parsed = _pick_subnet(root)
        else:
            clash = _overlaps(parsed, root)
            if clash is not None:
                raise NetworkError(f"subnet {parsed} of network {name!r} overlaps {clash}")
        gw = ipam.gateway(parsed)
        net = Network(name, str(parsed), str(gw), store.bridge_name(root, name), internal)
        bridge.create_bridge(net.bridge, net.gateway, parsed.prefixlen, _alias(root, name))
        try:
            _enable_forwarding()
            store.save(root, net)
            _apply(root)
        except BaseException:
            store.delete(root, name)
            bridge.delete_link(net.bridge)
            _maybe_restore_forwarding()
            raise
    return net


def _live(root: str, lease: Lease) -> bool:
    return os.path.isdir(os.path.join(root, lease.container)) and _state._held(os.path.join(root, lease.container))


def remove(name: str, *, root: str | None = None) -> None:
    """Remove a network without containers: its bridge, rules and record."""
    root = _root(root)
    with store.locked(root):
        net = store.load(root, name)
        if net is None:
            raise NetworkError(f"no network {name!r} (fastcontain network ls)")
        users = [lease.name or lease.container for lease in net.leases.values() if _live(root, lease)]
        if users:
            raise NetworkError(f"network {name!r} is in use by {len(users)} container(s): {', '.join(users[:5])}")
        store.delete(root, name)
        try:
            _apply(root)
        finally:
            bridge.delete_link(net.bridge)
            _bridge_index.pop(net.bridge, None)
            _maybe_restore_forwarding()


def get(name: str, *, root: str | None = None) -> Network | None:
    return store.load(_root(root), name)


def list_networks(*, root: str | None = None) -> list[Network]:
    return store.load_all(_root(root))


def inspect(name: str, *, root: str | None = None) -> dict[str, Any]:
    net = get(name, root=root)
    if net is None:
        raise NetworkError(f"no network {name!r} (fastcontain network ls)")
    return {
        "name": net.name,
        "driver": "bridge",
        "subnet": net.subnet,
        "gateway": net.gateway,
        "bridge": net.bridge,
        "internal": net.internal,
        "containers": {
            lease.container: {"name": lease.name, "address": ip, "ports": [str(Port(*p)) for p in lease.ports]}
            for ip, lease in sorted(net.leases.items())
        },
    }


def _ensure(name: str, root: str) -> Network:
    net = store.load(root, name)
    if net is not None:
        return net
    if name != DEFAULT_NETWORK:
        raise ConfigError("network", name, "no such network (create it with: fastcontain network create NAME)")
    try:
        return create(name, default_subnet(), root=root)
    except NetworkError as e:
        found = store.load(root, name)
        if found is not None:  # made meanwhile by another thread or process
            return found
        raise NetworkError(f"{e} (set ${SUBNET_ENV} to a free range for the default network)") from None


# -- sweep --------------------------------------------------------------------------


def sweep(root: str | None = None) -> list[str]:
    """Remove what a crashed run left: leases (and their ports) of containers whose owner
    is gone, fastcontain bridges without a network, tables and bridges of runtime roots
    that no longer exist. Returns what it removed."""
    root = _root(root)
    with store.locked(root):
        return _sweep_locked(root)


def _sweep_locked(root: str) -> list[str]:
    removed: list[str] = []
    changed = False
    nets = store.load_all(root)
    for net in nets:
        dead = [ip for ip, lease in net.leases.items() if not _live(root, lease)]
        for ip in dead:
            removed.append(f"lease {ip} of {net.leases[ip].container} on {net.name}")
            del net.leases[ip]
        if dead:
            store.save(root, net)
            changed = True
        if bridge.index(net.bridge) is None:  # gone (a reboot keeps no bridge, nor /run)
            bridge.create_bridge(net.bridge, net.gateway, ipaddress.IPv4Network(net.subnet).prefixlen,
                                 _alias(root, net.name))
            changed = True
    known = {n.bridge for n in nets}
    for name, _, alias in list(bridge.fc_links("bridge")):
        parts = (alias or "").split(" ", 2)
        if len(parts) != 3 or parts[0] != bridge.ALIAS or name in known:
            continue
        owner = parts[1]
        if owner == root or not os.path.isdir(os.path.join(owner, "networks")):
            bridge.delete_link(name)
            removed.append(f"bridge {name}")
    removed += _sweep_tables(root)
    if changed or removed or root not in _swept:
        _apply(root)
    _maybe_restore_forwarding()
    _swept.add(root)
    return removed


def _sweep_tables(root: str) -> list[str]:
    """Tables of runtime roots whose folder is gone."""
    out = []
    ctx = nft.host()
    listing = ctx.run("list tables inet", "listing nftables tables")
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("fastcontain") or parts[2] == store.table_name(root):
            continue
        text = ctx.run(f"list table inet {parts[2]}", f"reading table {parts[2]}")
        m = re.search(r'comment "fastcontain (\S+) ', text)
        if m and not os.path.isdir(os.path.join(m.group(1), "networks")):
            ctx.run(policy.drop_table(parts[2]), f"removing the orphaned table {parts[2]}")
            out.append(f"table inet {parts[2]}")
    return out


def _ensure_swept(root: str) -> None:
    if root not in _swept:
        sweep(root)


# -- one container ------------------------------------------------------------------


def _port_free(port: Port) -> None:
    """Refuse a host port a host process already serves (docker's proxy would fail to bind it)."""
    kind = socket.SOCK_STREAM if port.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((port.host_ip or "0.0.0.0", port.host_port))
        except OSError as e:
            raise NetworkError(f"publishing {port}: the host port is in use ({os.strerror(e.errno or 0)})") from None


def _check_unpublished(root: str, ports: Sequence[Port]) -> None:
    """Refuse a host port another container publishes (under the networks lock)."""
    if not ports:
        return
    published = {(p[0], p[1], p[2]) for n in store.load_all(root) for lease in n.leases.values() for p in lease.ports}
    for p in ports:
        if (p.proto, p.host_ip, p.host_port) in published or (p.proto, "", p.host_port) in published:
            raise NetworkError(f"publishing {p}: host port {p.host_port}/{p.proto} is published by another container")


def _bridge_ifindex(name: str, refresh: bool = False) -> int:
    if refresh or name not in _bridge_index:
        idx = bridge.index(name)
        if idx is None:
            raise NetworkError(f"bridge {name} is missing: recreate it with `fastcontain network rm` and `create`")
        _bridge_index[name] = idx
    return _bridge_index[name]


def _peers(net: Network, but: str) -> list[tuple[str, str]]:
    return [(lease.name, ip) for ip, lease in net.leases.items() if lease.name and lease.container != but]


def _refresh_peer_hosts(net: Network, but: str) -> None:
    """Rewrite the hosts file of every container on `net` but `but`."""
    for ip, lease in net.leases.items():
        if lease.container != but and lease.hosts and os.path.exists(lease.hosts):
            own = _read_hostname(lease.hosts)
            dns.write(lease.hosts, dns.hosts(own, ip, lease.name, _peers(net, lease.container)))


def _read_hostname(hosts_path: str) -> str:
    try:
        with open(os.path.join(os.path.dirname(hosts_path), "hostname")) as f:
            return f.read().strip()
    except OSError:
        return ""


class Attachment:
    """The network of one container, from before its spawn until after its removal."""

    def __init__(self, mode: str, target: str | None, config: Any, paths: _state.Paths) -> None:
        self.mode = mode
        self.target = target
        self.config = config
        self.paths = paths
        self.root = _root(paths.root)
        self.network: Network | None = None
        self.address: str | None = None
        self.ports: tuple[Port, ...] = tuple(getattr(config, "ports", ()) or ())
        self.veth = "fcv" + paths.id[:12]
        self._join_fd: int | None = None
        self._ports_added = False
        self._released = False
        self.ahead = False  # wired ahead into a prepared namespace (wire_ahead)
        self.files_in_layer = False  # the DNS files are linked into the writable layer (link_files)

    @property
    def needs_wiring(self) -> bool:
        """Whether the child must wait after its set-up for `wire` (bridge networks not wired ahead)."""
        return self.mode == "bridge" and not self.ahead

    @classmethod
    def prepare(cls, config: Any, paths: _state.Paths, hostname: str | None) -> Attachment | None:
        """Everything before the spawn; None when the container needs nothing of this module."""
        mode, target = parse_network(config.network)
        if mode in ("none", "host") and config.name is None:
            return None
        a = cls(mode, target, config, paths)
        try:
            if mode == "container":
                a._prepare_join()
            elif mode == "bridge":
                a._prepare_bridge(hostname or paths.id[:12])
        except BaseException:
            a.release()
            raise
        return a

    def _prepare_join(self) -> None:
        assert self.target is not None
        cid = _state.lookup(self.target, self.root) or self.target
        cdir = os.path.join(self.root, cid)
        if not re.fullmatch(r"[0-9a-f]{16}", cid) or not _state._held(cdir):
            raise ConfigError("network", f"container:{self.target}", "no running container by that name or id")
        try:
            with open(os.path.join(cdir, "pid")) as f:
                pid = int(f.read())
            self._join_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError) as e:
            raise NetworkError(f"joining the network of container {self.target}: {e}") from None
        self._shared_files = [
            (os.path.join(cdir, n), f"/etc/{n}") for n in ("hosts", "resolv.conf") if os.path.exists(os.path.join(cdir, n))
        ]

    def _prepare_bridge(self, hostname: str) -> None:
        _ensure_swept(self.root)
        assert self.target is not None
        net = _ensure(self.target, self.root)
        if net.internal and self.ports:
            raise ConfigError("ports", [str(p) for p in self.ports], f"network {net.name!r} is internal: nothing can be published")
        for p in self.ports:
            _port_free(p)
        d = self.paths.dir
        files = {n: os.path.join(d, n) for n in ("hosts", "resolv.conf", "hostname")}
        with store.locked(self.root):
            net = store.load(self.root, net.name) or net
            _check_unpublished(self.root, self.ports)
            subnet = ipaddress.IPv4Network(net.subnet)
            addr = ipam.allocate(subnet, net.leases, getattr(self.config, "ip", None), hint=net.last + 1)
            lease = Lease(self.paths.id, self.config.name, files["hosts"],
                          [[p.proto, p.host_ip, p.host_port, p.container_port] for p in self.ports])
            net.leases[str(addr)] = lease
            net.last = int(addr)
            store.save(self.root, net)
            self.network, self.address = net, str(addr)
            dns.write(files["hosts"], dns.hosts(hostname, str(addr), self.config.name, _peers(net, self.paths.id)))
            if self.config.name is not None:  # the peers learn its name
                _refresh_peer_hosts(net, but=self.paths.id)
        # no peer rewrites these two: outside the lock, which other starts are waiting for
        dns.write(files["hostname"], hostname + "\n")
        dns.write(files["resolv.conf"], dns.resolv_conf(tuple(getattr(self.config, "dns", ()) or ())))

    def wire_ahead(self, netns_fd: int) -> None:
        """For a pool's slot, before any container: the veth pair with its peer made in
        the prepared namespace `netns_fd` as eth0, eth0's address and default route
        (set from a thread that joins the namespace: netns.configure), and the egress
        allow-list. The container then joins the namespace (spec netns_fd) and runs
        straight to its command; the veth goes with the namespace."""
        from .. import netns as _netns

        assert self.mode == "bridge" and self.network is not None and self.address is not None
        # "fcp": a run the slot does not fit makes its own "fcv" pair while this one may
        # still wait for its namespace's (asynchronous) teardown
        self.veth = "fcp" + self.paths.id[:12]
        try:
            bridge.add_veth(self.veth, _bridge_ifindex(self.network.bridge), netns_fd)
        except NetworkError as e:
            if "ENODEV" not in str(e):
                raise
            bridge.add_veth(self.veth, _bridge_ifindex(self.network.bridge, refresh=True), netns_fd)
        prefix = ipaddress.IPv4Network(self.network.subnet).prefixlen
        try:
            _netns.configure(netns_fd, "eth0", self.address, prefix, None if self.network.internal else self.network.gateway)
        except _netns.NetnsError as e:
            raise NetworkError(f"configuring eth0 of a prepared slot ({self.address}/{prefix}): {e}") from None
        egress = getattr(self.config, "egress", None)
        if egress is not None:
            nft.in_netns(netns_fd, policy.egress_table(self._resolve_egress(egress)),
                         f"loading the egress allow-list of container {self.paths.id}")
        self.ahead = True

    def link_files(self, upper: str, etc_below: str) -> None:
        """For a pool's slot: put the DNS files in the container's empty writable layer
        (`upper`/etc, made with the mode and owner of the image's /etc at `etc_below`)
        as hard links of the state dir's, instead of three bind mounts at its start
        (~0.15 ms each in the child). Same inodes, so a peer's rewrite in place shows."""
        st = os.lstat(etc_below)
        etc = os.path.join(upper, "etc")
        os.mkdir(etc)
        os.chown(etc, st.st_uid, st.st_gid)
        os.chmod(etc, st.st_mode & 0o7777)
        for n in ("hosts", "resolv.conf", "hostname"):
            os.link(os.path.join(self.paths.dir, n), os.path.join(etc, n))
        self.files_in_layer = True

    def publish(self, ports: Sequence[Port]) -> None:
        """Publish `ports` for the container of a slot wired ahead (ports are per run: two
        slots cannot hold one host port): noted in its lease, DNAT'ed at once, removed by
        `release`."""
        assert self.network is not None and self.address is not None and not self._ports_added
        ports = tuple(ports)
        if not ports:
            return
        if self.network.internal:
            raise ConfigError("ports", [str(p) for p in ports], f"network {self.network.name!r} is internal: nothing can be published")
        for p in ports:
            _port_free(p)
        with store.locked(self.root):
            _check_unpublished(self.root, ports)
            net = store.load(self.root, self.network.name)
            lease = net.leases.get(self.address) if net is not None else None
            if net is None or lease is None or lease.container != self.paths.id:
                raise NetworkError(f"publishing {', '.join(map(str, ports))}: the lease of {self.address} is gone")
            lease.ports = [[p.proto, p.host_ip, p.host_port, p.container_port] for p in ports]
            store.save(self.root, net)
            self.ports = ports
            nft.host().run(policy.port_elements(store.table_name(self.root), self.address, ports, "add"),
                           f"publishing {', '.join(map(str, ports))}")
            self._ports_added = True

    def amend(self, spec: dict[str, Any]) -> None:
        """The spec entries: binds of the DNS files, the netns to join, the interface."""
        if self.mode == "container":
            spec["netns_fd"] = self._join_fd
            for src, dst in self._shared_files:
                spec["mounts"].append({"source": src, "target": dst, "type": "bind", "options": ["bind"]})
        elif self.mode == "bridge":
            assert self.network is not None and self.address is not None
            for n in () if self.files_in_layer else ("hosts", "resolv.conf", "hostname"):
                spec["mounts"].append(
                    {"source": os.path.join(self.paths.dir, n), "target": f"/etc/{n}", "type": "bind", "options": ["bind"]}
                )
            if self.ahead:  # its namespace is the slot's (the caller's netns_fd), eth0 ready
                return
            spec["interface"] = {
                "name": "eth0",
                "address": self.address,
                "prefix": ipaddress.IPv4Network(self.network.subnet).prefixlen,
                "gateway": None if self.network.internal else self.network.gateway,
            }
            spec["wait_for_start"] = True

    def wire(self, pid: int) -> None:
        """After the spawn (the child waits for start, for a bridge network): the veth
        pair, the egress allow-list in the container's namespace, the published ports."""
        if self._join_fd is not None:
            os.close(self._join_fd)  # the child joined it as its first step
            self._join_fd = None
        if self.config.name is not None:
            with open(os.path.join(self.paths.dir, "pid"), "w") as f:
                f.write(str(pid))
        if self.mode != "bridge" or self.ahead:
            return
        assert self.network is not None and self.address is not None
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                bridge.add_veth(self.veth, _bridge_ifindex(self.network.bridge), fd)
            except NetworkError as e:
                if "ENODEV" not in str(e):
                    raise
                bridge.add_veth(self.veth, _bridge_ifindex(self.network.bridge, refresh=True), fd)
            egress = getattr(self.config, "egress", None)
            if egress is not None:
                nft.in_netns(fd, policy.egress_table(self._resolve_egress(egress)),
                             f"loading the egress allow-list of container {self.paths.id}")
        finally:
            os.close(fd)
        if self.ports:
            table = store.table_name(self.root)
            nft.host().run(policy.port_elements(table, self.address, self.ports, "add"),
                           f"publishing {', '.join(map(str, self.ports))}")
            self._ports_added = True

    def _resolve_egress(self, egress: Sequence[str]) -> list[ipaddress.IPv4Network]:
        assert self.network is not None
        net = store.load(self.root, self.network.name) or self.network
        by_name = {lease.name: ip for ip, lease in net.leases.items() if lease.name}
        out = []
        for item in egress:
            try:
                out.append(ipaddress.IPv4Network(item, strict=False))
            except ValueError:
                if item not in by_name:
                    raise NetworkError(f"egress: no container named {item!r} on network {net.name!r}") from None
                out.append(ipaddress.IPv4Network(by_name[item]))
        return out

    def release(self) -> None:
        """After the container is gone: its port rules, its lease, its name in its peers'
        hosts files. The veth goes with the namespace (deleting it here would wait for
        RCU on the critical path). Idempotent."""
        if self._released:
            return
        self._released = True
        if self._join_fd is not None:
            os.close(self._join_fd)
            self._join_fd = None
        if self.network is None or self.address is None:
            return
        with store.locked(self.root):
            try:
                if self._ports_added:
                    table = store.table_name(self.root)
                    nft.host().run(policy.port_elements(table, self.address, self.ports, "delete"),
                                   f"unpublishing {', '.join(map(str, self.ports))}")
            finally:
                net = store.load(self.root, self.network.name)
                if net is not None:
                    lease = net.leases.get(self.address)
                    if lease is not None and lease.container == self.paths.id:
                        del net.leases[self.address]
                        store.save(self.root, net)
                        if lease.name is not None:
                            _refresh_peer_hosts(net, but=self.paths.id)
