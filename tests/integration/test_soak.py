"""Soak: thousands of containers, sequentially, from several threads, and bridged through
a pool from several threads (a fifth of them), and afterwards the host has exactly what
it had before: mounts, cgroups, links, addresses, nftables
rules, network namespaces, state folders, child processes; this process has the same
descriptors, and its memory grew by less than a small bound.

FASTCONTAIN_SOAK=N sets the number per phase (default 1000, what CI runs; 10000 is the
local soak). Latencies are printed (p50, p99, first and last thousand), never asserted:
benches/bench_soak.py reports the same as a bench.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from typing import Callable

import pytest

import fastcontain
import harness
import leakcheck
from fastcontain import net
from harness import threaded

from . import nettools

pytestmark = [pytest.mark.privileged, pytest.mark.soak]

COUNT = int(os.environ.get("FASTCONTAIN_SOAK", "1000"))
THREADS = 4
RSS_BOUND = 32 * 1024 * 1024  # bytes of growth allowed (allocator slack, caches), whatever COUNT is


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _cmd(argv: list[str]) -> list[str]:
    r = subprocess.run(argv, capture_output=True, text=True)
    return r.stdout.splitlines() if r.returncode == 0 else [f"({argv[0]} failed: {r.stderr.strip()})"]


def host_view(root: str) -> dict[str, object]:
    """Everything the soak must leave as it was, wider than the per-test leak check:
    every mount and link, not only fastcontain's."""
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split(" - ")[0].split(None, 4)[4] for line in f)
    return {
        "leakcheck": leakcheck.take(root),
        "mounts": mounts,
        "links": sorted(os.listdir("/sys/class/net")),
        # (a bridge made just before has its IPv6 link-local address "tentative" for a while)
        "addresses": sorted(a.replace(" tentative", "") for a in _cmd(["ip", "-o", "addr", "show"])),
        "nftables": _cmd(["nft", "list", "ruleset"]),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "state": sorted(os.listdir(root)),
        "threads": threading.active_count(),
    }


def report(name: str, times: list[float]) -> None:
    s = sorted(times)
    p50, p99 = statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))]
    k = min(1000, len(times) // 2) or 1
    first, last = statistics.median(times[:k]), statistics.median(times[-k:])
    print(f"\nsoak {name}: {len(times)} containers, p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms "
          f"({p99 / p50:.1f}x), max {s[-1] * 1e3:.1f} ms, first {k} {first * 1e3:.2f} ms, last {k} {last * 1e3:.2f} ms")


def settled(view: Callable[[], dict[str, object]], within: float = 20.0) -> dict[str, object]:
    """`view()` once the kernel has finished the namespaces' asynchronous teardown (the
    containers' veths, fcv* and fcp*, go with them) or `within` seconds passed."""
    deadline = time.monotonic() + within
    found = view()
    while any(n.startswith(("fcv", "fcp")) for n in found["links"]) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
        found = view()
    return found


def test_soak_sequential_then_threads_leaves_the_host_as_it_was(session_dirs):
    n = nettools.unique()
    network = net.create(f"fcsoak{os.getpid() % 10000}n{n}", subnet=f"10.213.{n}.0/24")
    try:
        _soak(session_dirs, network)
    finally:
        fastcontain.teardown.flush()
        net.remove(network.name)


def _soak(session_dirs, network: net.Network) -> None:
    fastcontain.run("busybox", ["true"])
    with fastcontain.Pool("busybox", size=1, network=network.name) as warm:  # the netlink and netns threads
        warm.run(["true"])
    fastcontain.teardown.flush()
    view = lambda: host_view(session_dirs.root)  # noqa: E731
    before = settled(view)
    rss_before = rss()

    times: list[float] = []
    for i in range(COUNT):
        t = time.perf_counter()
        r = fastcontain.run("busybox", ["sh", "-c", f"exit {i % 3}"] if i % 10 == 0 else ["true"])
        times.append(time.perf_counter() - t)
        assert r.returncode == (i % 3 if i % 10 == 0 else 0)
    report("sequential", times)

    def one(j: int) -> None:
        r = fastcontain.run("busybox", ["sh", "-c", "echo $$"], capture_output=True, text=True)
        assert (r.returncode, r.stdout) == (0, "1\n"), r

    report(f"{THREADS} threads", threaded(THREADS, COUNT // THREADS, one))

    # bridged, through a pool, from two threads: every 25th checks its eth0 and route
    with fastcontain.Pool("busybox", size=16, network=network.name) as pool:
        pool.wait_ready(60)

        def bridged(j: int) -> None:
            if j % 25:
                assert pool.run(["true"]).returncode == 0
                return
            r = pool.run(["sh", "-c", "ip -4 route | head -1"], capture_output=True, text=True)
            assert r.stdout.startswith(f"default via {network.gateway} dev eth0"), r

        times = threaded(2, COUNT // 10, bridged)
        report(f"bridged pool, 2 threads ({pool.hits} from ready slots)", times)
        assert pool.hits > 0

    fastcontain.teardown.flush()
    assert net.get(network.name).leases == {}  # type: ignore[union-attr]
    after = settled(view)
    rss_after = rss()
    # (the reserve of reused network namespaces is no leak: harness.kept_descriptors)
    leaks = harness.leaks(before.pop("leakcheck"), after.pop("leakcheck"), session_dirs.root)  # type: ignore[arg-type]
    assert leaks == []
    for key in before:
        assert after[key] == before[key], key
    assert rss_after - rss_before < RSS_BOUND, f"RSS grew by {(rss_after - rss_before) >> 20} MiB"
