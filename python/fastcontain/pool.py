"""A warm pool: container slots made ahead, so a container's start pays only for the
kernel work that cannot be done before its command is known.

    with fastcontain.Pool("busybox", size=8, env=["A=1"]) as pool:
        pool.run(["sh", "-c", "echo $A"], capture_output=True)     # like fastcontain.run
        with pool.container(["sleep", "60"]) as c:                  # a created Container
            c.start()

A slot is what one container owns before it runs: its state dir with the empty
writable layer (upper, work) and the rootfs mount point, locked by this process, its
cgroup with the pool's limits written, and its network namespace with lo up, which the
container's init joins instead of making one (netns.py: ~0.5 ms saved per start). The
pool's options are validated and its image resolved once, at construction. Refill
threads (`refill_threads`: one, two for a bridged pool) keep `size` slots ready, at most
`refill_rate` new slots a second each (None: as fast as they can); a run that finds no
ready slot makes one itself (counted in `misses`).

Bridged pools (network="bridge" or a network's name): a slot's namespace also holds its
network, wired ahead on the refill thread: an address leased from the network's IPAM,
its hosts/resolv.conf/hostname files, the veth pair with its peer made in the namespace
as eth0 (one netlink call, through the process's one netlink thread), eth0's address and
default route (set by a short-lived thread that joins the namespace and ends there:
netns.configure), and the egress allow-list; the network's nftables policy is the
bridge's, in place already. So a bridged container starts as an isolated one does, with
no stop for its wiring. Ports are per run (`pool.run(cmd, ports=["8080:80"])`: two slots
cannot hold one host port), published when the slot is taken; a pool's own options may
not publish ports or fix an `ip`.

A used slot is never reused: its writable layer holds what the last container wrote,
and its namespace may hold what it changed (an isolated slot's namespace may go to the
process's reserve, through the checks every network="none" container's goes through:
netns.Keeper; a new slot takes one from there). Everything is removed off the caller's path:
the state dir and cgroup on the teardown worker, the lease there too (at once when the
run published ports, so they are free when it returns), and the namespace, with the
veth in it, by the kernel once the container's last process is gone (deleting a veth
explicitly waits for RCU: ~20 ms). `close()` (or leaving the block) stops the refill and
releases every ready slot; after a crash, the slots' dirs are unlocked and the next
process's sweeps remove them and their leases (state.sweep, net.sweep); their
namespaces, held only by the dead process, went with it.

Hooks for what other parts of a container will be made ahead: `SLOT_RESOURCES` lists
(name, make, destroy) triples; `make(config, state)` runs on the refill thread for each
new slot and its result is kept in `Slot.resources[name]`, `destroy` undoes it when the
slot is discarded unused.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from . import api as _api
from . import cgroups as _cgroups
from . import net as _net
from . import rootless as _rootless
from . import netns as _netns
from . import prepared as _prepared
from . import state as _state
from .config import Config
from .errors import ConfigError
from .image import lookup_layered
from .net.ports import parse_network

SLOT_RESOURCES: list[tuple[str, Callable[[Config, _state.ContainerState], Any], Callable[[Any], None]]] = []


@dataclass
class Slot:
    state: _state.ContainerState
    netns: int | None = None  # a network namespace with lo up (netns.loopback), or None
    cgroup: _cgroups.Cgroup | None = None  # the container's cgroup, limits written
    network: _net.Attachment | None = None  # bridged: lease, DNS files, eth0 wired in `netns`
    resources: dict[str, Any] = field(default_factory=dict)

    def discard(self) -> None:
        """Release a slot that was never used."""
        for name, _, destroy in reversed(SLOT_RESOURCES):
            if name in self.resources:
                destroy(self.resources.pop(name))
        if self.network is not None:
            self.network.release()
            self.network = None
        if self.netns is not None:
            os.close(self.netns)
            self.netns = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        self.state.remove()

    def fit(
        self, config: Config, base: Config
    ) -> tuple[_cgroups.Cgroup | None, int | None, _net.Attachment | None]:
        """Hand over the cgroup, netns and network for a run of `config`; what does not fit
        it (other limits, another network or network options) is released here and made
        by the spawn instead. The run's own ports are published on the slot's network."""
        cgroup, netns, network = self.cgroup, self.netns, self.network
        self.cgroup = self.netns = self.network = None
        if cgroup is not None and config.resources != base.resources:
            cgroup.remove()
            cgroup = None
        same_net = all(getattr(config, k) == getattr(base, k) for k in _NETWORK_FIELDS)
        if network is not None and network.files_in_layer:  # its /etc files must show as they are
            same_net = same_net and config.readonly_rootfs == base.readonly_rootfs and not any(
                m.target.rstrip("/").startswith("/etc") for m in config.volumes  # type: ignore[union-attr]
            )
        if netns is not None and not (same_net and "net" in config.namespaces and config.userns is None):
            os.close(netns)
            netns = None
        if network is not None and netns is None:
            network.release()
            if network.files_in_layer:
                _state.rmtree(os.path.join(self.state.paths.upper, "etc"))
            network = None
        if network is not None and config.ports:
            try:
                network.publish(config.ports)  # type: ignore[arg-type]
            except BaseException:
                network.release()
                os.close(netns)  # type: ignore[arg-type]
                if cgroup is not None:
                    cgroup.remove()
                raise
        return cgroup, netns, network


class Pool:
    """Keeps `size` container slots of `image` with `options` ready; see the module doc."""

    def __init__(
        self, image: str | Config, size: int = 4, *, refill_rate: float | None = None, refill_threads: int | None = None,
        **options: Any,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError("size", size, "a pool's size is a number of slots >= 0")
        if refill_threads is not None and (isinstance(refill_threads, bool) or not isinstance(refill_threads, int)
                                           or refill_threads < 1):
            raise ConfigError("refill_threads", refill_threads, "a number of threads >= 1 (or None: the default)")
        if refill_rate is not None and not (isinstance(refill_rate, (int, float)) and refill_rate > 0):
            raise ConfigError("refill_rate", refill_rate, "slots per second, > 0 (or None: as fast as possible)")
        if options.get("name") is not None or (isinstance(image, Config) and image.name is not None):
            raise ConfigError("name", options.get("name") or getattr(image, "name", None),
                              "a pool runs many containers: they cannot share one name")
        self.config = image if isinstance(image, Config) else Config(image=image, **options)
        if self.config.ports:
            raise ConfigError("ports", [str(p) for p in self.config.ports],  # type: ignore[union-attr]
                              "a pool's slots cannot share host ports: publish them per run, pool.run(cmd, ports=[...])")
        if self.config.ip is not None:
            raise ConfigError("ip", self.config.ip, "a pool's slots cannot share one address: give ip per run")
        self.image = _prepared.resolve(self.config.image)  # fails here, once, for an unknown image
        self.size = size
        self.refill_rate = refill_rate
        self.root = os.path.abspath(_state.default_root())
        self.hits = 0
        self.misses = 0
        # network="none" or a bridge network: the namespace (lo up) is made ahead too, for a
        # bridge with its network wired; host and container:NAME have none of their own
        # (not with a user namespace: a namespace owned by the host's may not be joined from it)
        self._bridged = parse_network(self.config.network)[0] == "bridge"
        self._netns_ahead = "net" in self.config.namespaces and self.config.userns is None
        self.netns_error: str | None = None
        # a bridged slot's DNS files go in its writable layer, over the image's /etc, where
        # nothing else is mounted there and the root stays writable (else: bind mounts)
        self._etc_below: str | None = None
        if self._bridged and not self.config.readonly_rootfs and not any(
            m.target.rstrip("/").startswith("/etc") for m in (*self.image.mounts, *self.config.volumes)  # type: ignore[union-attr]
        ):
            self._etc_below = lookup_layered(self.image.layers, ("etc",))
        if refill_threads is None:  # a bridged slot costs ~5 ms to make, more than a run of it
            refill_threads = 2 if self._bridged else 1
        self.refill_threads = refill_threads
        self._ready: collections.deque[Slot] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._making = 0  # slots the refill threads are making now
        self._threads = [
            threading.Thread(target=self._refill, name=f"fastcontain-pool-refill-{i}", daemon=True)
            for i in range(refill_threads)
        ]
        for t in self._threads:
            t.start()

    # -- slots --------------------------------------------------------------------

    def _make(self) -> Slot:
        slot = Slot(_state.create(self.root))
        try:
            if self._netns_ahead:
                try:  # an isolated pool's from the reserve of reused ones when it has one
                    slot.netns = (None if self._bridged or not _netns.reuse_enabled() else _netns.take()) \
                        or _netns.loopback()
                except _netns.NetnsError as e:  # EPERM (not root), say: the spawn makes its own
                    self._netns_ahead = False
                    self.netns_error = str(e)
            if slot.netns is not None and self._bridged:
                paths = slot.state.paths
                hostname = self.config.hostname or (paths.id[:12] if "uts" in self.config.namespaces else None)
                slot.network = _net.Attachment.prepare(self.config, paths, hostname)
                assert slot.network is not None
                slot.network.wire_ahead(slot.netns)
                if self._etc_below is not None:
                    slot.network.link_files(paths.upper, self._etc_below)
            if _rootless.active():  # no cgroup (limits were refused with the Config)
                slot.cgroup = _rootless.cgroup(slot.state.id, self.config.resources)
            else:
                slot.cgroup = _cgroups.manager().create(slot.state.id, self.config.resources, owner=slot.state.paths.dir)
            for name, make, _ in SLOT_RESOURCES:
                slot.resources[name] = make(self.config, slot.state)
        except BaseException:
            slot.discard()
            raise
        return slot

    def _refill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) + self._making >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
                self._making += 1
            try:
                slot = self._make()
            except BaseException as e:  # kept: the next take() makes its own slot and raises there
                with self._cond:
                    self._making -= 1
                    self._error = e
                    self._cond.wait(1.0)
                continue
            with self._cond:
                self._making -= 1
                if self._closed:
                    slot.discard()
                    return
                self._ready.append(slot)
                self._cond.notify_all()
            if self.refill_rate is not None:
                time.sleep(1.0 / self.refill_rate)

    def _take(self) -> Slot:
        """A ready slot, or one made now (a miss). While slots are left the refill threads
        are not woken here but by _wake() once the container has been created (container())
        or has exited (run()): woken at once, a refill thread makes the next slot against
        the run it serves, for the GIL, the cgroup tree's and the mount table's locks
        (interleaved: pool.run 0.92-0.96x of fastcontain.run with the wake here, 0.77-0.84x
        with it after). The last slot taken wakes them at once: long runs in several
        threads do not leave the pool empty until one ends."""
        with self._cond:
            if self._closed:
                raise _api.ContainerError("the pool is closed")
            slot = self._ready.popleft() if self._ready else None
            if not self._ready:
                self._cond.notify_all()
        if slot is not None:
            self.hits += 1
            return slot
        self.misses += 1
        return self._make()

    def _wake(self) -> None:
        """Have the refill threads make up for the slots taken."""
        with self._cond:
            self._cond.notify_all()

    @property
    def ready(self) -> int:
        """Slots ready now."""
        return len(self._ready)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until `size` slots are ready (True) or `timeout` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < self.size and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 0.1)
        return len(self._ready) >= self.size

    # -- containers ---------------------------------------------------------------

    def _config_for(self, command: Sequence[str] | str | None, options: dict[str, Any]) -> Config:
        if options.get("name") is not None:
            raise ConfigError("name", options["name"], "containers of a pool have no names")
        if "image" in options:
            raise ConfigError("image", options["image"], "a pool's image is fixed when it is made")
        return _prepared.replaced(self.config, command, options)

    def run(self, command: Sequence[str] | str | None = None, **kwargs: Any) -> Any:
        """fastcontain.run in a ready slot: the same arguments (stdin, capture_output, text,
        timeout, check, ...); other keywords override the pool's container options."""
        run_args = {k: kwargs.pop(k) for k in list(kwargs) if k in _RUN_ARGS}
        config = self._config_for(command, kwargs)
        try:
            slot = self._take()
            try:
                cgroup, netns, network = slot.fit(config, self.config)
            except BaseException:
                slot.discard()
                raise
            return _api._run(config, state=slot.state, cgroup=cgroup, netns_fd=netns, network=network, **run_args)
        finally:
            self._wake()

    def container(self, command: Sequence[str] | str | None = None, **options: Any) -> _api.Container:
        """A created Container (its process waits for start()) in a ready slot."""
        config = self._config_for(command, options)
        try:
            slot = self._take()
            try:
                c = _api.Container(config)
                c._precgroup, c._prenetns, c._prenetwork = slot.fit(config, self.config)
            except BaseException:
                slot.discard()
                raise
            c.id = slot.state.id
            c._prestate = slot.state
            return c._create()
        finally:
            self._wake()

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Stop refilling and remove every ready slot. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        while self._ready:
            self._ready.popleft().discard()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Pool {self.config.image!r} size={self.size} ready={self.ready} hits={self.hits} misses={self.misses}>"


# Options a slot's network was made for: a run that changes one gets a network of its own.
_NETWORK_FIELDS = ("network", "namespaces", "userns", "hostname", "ip", "dns", "egress")

_RUN_ARGS = frozenset(
    ("stdin", "input", "stdout", "stderr", "capture_output", "text", "encoding", "errors", "timeout", "check")
)
