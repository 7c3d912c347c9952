"""Per-container cost of each network mode: /bin/true from the same busybox rootfs as
bench_spawn, with network none (the default: its own netns with lo up), host, a bridge
network (veth in one netlink call, eth0 set by the child, lease, DNS files), a bridge
network with a published port (one nftables map element in, one out), and joining a
running bridged container's netns (container:NAME), which is what a pool of namespaces
prepared ahead of time would cost. The summary prints each median as a ratio to none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fastcontain
from fastcontain import net

MODES = ("none", "host", "bridge", "bridge+port", "join")
_medians: dict[str, float] = {}


@pytest.fixture
def network() -> Iterator[net.Network]:
    n = net.create(f"fcbench{os.getpid() % 100000}", subnet="10.213.254.0/24")
    try:
        yield n
    finally:
        net.remove(n.name)


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    base = _medians.get("none")
    if tr is None or not _medians:
        return
    tr.write_line("")
    tr.write_line("network modes: one /bin/true per run, ratio to network=none")
    for mode in MODES:
        if mode in _medians:
            ratio = f"{_medians[mode] / base:5.2f}x none" if base else ""
            tr.write_line(f"  {mode:12} median {_medians[mode] * 1e3:7.3f} ms  {ratio}")


@pytest.mark.parametrize("mode", MODES)
def test_network_mode(benchmark: Any, mode: str, rootfs: Path, network: net.Network) -> None:
    benchmark.group = "network mode, /bin/true"
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
        if benchmark.stats:
            _medians[mode] = benchmark.stats.stats.median
    finally:
        if keeper is not None:
            keeper.remove(force=True)
