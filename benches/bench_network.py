"""Per-container cost of each network mode: /bin/true from the same busybox rootfs as
bench_spawn, with network none (the default: its own netns with lo up), host, a bridge
network (veth in one netlink call, eth0 set by the child, lease, DNS files), a bridge
network with a published port (one nftables map element in, one out), and joining a
running bridged container's netns (container:NAME), which is what a pool of namespaces
prepared ahead of time would cost. The summary gives each median as a ratio to none's
(also `ratio_to_none` in each extra_info: none runs first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import report

import fastcontain
from fastcontain import net

MODES = ("none", "host", "bridge", "bridge+port", "join")
GROUP = "network mode, /bin/true"
POOLED = "pooled: isolated and bridged, /bin/true from ready slots"
report.declare(GROUP, base="none", order=MODES)
report.declare(POOLED, base="fastcontain-pool")


@pytest.fixture
def network() -> Iterator[net.Network]:
    n = net.create(f"fcbench{os.getpid() % 100000}", subnet="10.213.254.0/24")
    try:
        yield n
    finally:
        net.remove(n.name)


@pytest.mark.parametrize("mode", MODES)
def test_network_mode(benchmark: Any, mode: str, rootfs: Path, network: net.Network) -> None:
    benchmark.group = GROUP
    image = str(rootfs)
    options: dict[str, Any] = {"network": network.name if mode.startswith("bridge") else mode}
    if mode == "bridge+port":
        options["ports"] = ["18555:80"]
    keeper = None
    if mode == "join":
        keeper = fastcontain.Container.create("busybox", ["sleep", "600"], network=network.name, name="fcbenchpool")
        keeper.start()
        options["network"] = "container:fcbenchpool"
    try:
        probe = fastcontain.run(image, ["sh", "-c", "cat /sys/class/net/*/operstate | wc -l; ip -4 route"],
                                capture_output=True, text=True, check=True, **options)
        links, *routes = probe.stdout.splitlines()
        if mode in ("bridge", "bridge+port", "join"):
            assert links.strip() == "2" and routes[0].startswith(f"default via {network.gateway}"), probe.stdout
        elif mode == "none":
            assert links.strip() == "1" and routes == [], probe.stdout
        benchmark.extra_info.update({"mode": mode, "correct": True})

        def run() -> None:
            r = fastcontain.run(image, ["/bin/true"], **options)
            assert r.returncode == 0, r

        benchmark(run)
        report.record(benchmark, mode)
    finally:
        if keeper is not None:
            keeper.remove(force=True)



@pytest.mark.parametrize("runner", ["fastcontain-pool", "fastcontain-pool-bridge"], indirect=True)
def test_pooled_bridge_beside_isolated(benchmark: Any, runner: Any) -> None:
    """Pool.run of /bin/true from ready slots: isolated (network none) and bridged (veth,
    lease, eth0 made ahead); goal: bridged within 1.5 ms of isolated. Both take at most
    three quarters of their pool's ready slots, each round after the refill caught up,
    so this is the start of a container from a ready slot, not the refill's rate (which
    bench_spawn's runs of the same runners include)."""
    benchmark.group = POOLED
    benchmark.extra_info.update(runner.check())
    pool = runner.pool
    pool.wait_ready(60)
    rounds = max(1, pool.size * 3 // 4)
    benchmark.pedantic(runner.run, setup=lambda: None, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({"pool_hits": pool.hits, "pool_misses": pool.misses})
    isolated = report.median(POOLED, "fastcontain-pool")
    if benchmark.stats and isolated and runner.name == "fastcontain-pool-bridge":
        benchmark.extra_info["bridge_minus_isolated_ms"] = round((benchmark.stats.stats.median - isolated) * 1e3, 3)
