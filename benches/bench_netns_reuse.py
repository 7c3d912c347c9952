"""Reused network namespaces (fastcontain/netns.py) against a new one per container
(FASTCONTAIN_NETNS_REUSE=0): fastcontain.run of /bin/true, one thread (latency) and two
threads (containers per second), and the CPU time of the whole machine per container
(/proc/stat, so the kernel's deferred namespace cleanup on its kworkers counts, until
the machine is quiet again); and, one thread, containers with NET_ADMIN, which give
nothing back (with reuse on they join a namespace made ahead when the reserve ran
low). The two modes alternate round by round (ABBA), in one
process, and the summary prints the medians over rounds.

FASTCONTAIN_BENCH_NETNS_ROUNDS (default 8) rounds of FASTCONTAIN_BENCH_NETNS_RUNS
(default 200) containers per mode and phase; with --benchmark-disable one short round,
as a check that reuse happens."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import threaded

ROUNDS = int(os.environ.get("FASTCONTAIN_BENCH_NETNS_ROUNDS", "8"))
RUNS = int(os.environ.get("FASTCONTAIN_BENCH_NETNS_RUNS", "200"))
HZ = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds the machine spent not idle (every CPU: user, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / HZ


def settle(limit: float = 3.0) -> None:
    """Until a 50 ms window is (nearly) idle: the namespaces' deferred cleanup is done."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = busy_seconds()
        time.sleep(0.05)
        if busy_seconds() - before <= 1.5 / HZ:
            return


def measured(work: Callable[[], list[float]]) -> tuple[list[float], float, float]:
    """work()'s per-container latencies, its wall time and the machine's CPU seconds,
    counted until the deferred work it caused is done."""
    import fastcontain

    settle()
    cpu, start = busy_seconds(), time.perf_counter()
    times = work()
    wall = time.perf_counter() - start
    fastcontain.teardown.flush()
    settle()
    return times, wall, busy_seconds() - cpu


def sequential(run: Callable[[], None], n: int) -> list[float]:
    return threaded(1, n, lambda _: run())


def two_threads(run: Callable[[], None], n: int) -> list[float]:
    return threaded(2, n // 2, lambda _: run())


def test_netns_reuse_against_a_new_one_each_time(rootfs: Path, request: pytest.FixtureRequest,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import fastcontain
    from fastcontain import netns

    quick = bool(request.config.getoption("benchmark_disable", False))
    rounds, runs = (1, 20) if quick else (ROUNDS, RUNS)
    image = str(rootfs)

    def run() -> None:
        r = fastcontain.run(image, ["/bin/true"])
        assert r.returncode == 0, r

    def run_net_admin() -> None:  # gives nothing back: joins one made ahead (or its clone makes one)
        r = fastcontain.run(image, ["/bin/true"], cap_add=["NET_ADMIN"])
        assert r.returncode == 0, r

    phases: tuple[tuple[str, Callable[[], None], Callable[..., list[float]]], ...] = (
        ("1 thread", run, sequential), ("2 threads", run, two_threads), ("NET_ADMIN", run_net_admin, sequential),
    )

    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    taken_on = 0
    for i in range(rounds):
        for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
            monkeypatch.setenv("FASTCONTAIN_NETNS_REUSE", "1" if mode == "on" else "0")
            for _ in range(5):  # warm: the reserve refills (on) or empties (off)
                run()
            fastcontain.teardown.flush()
            if mode == "off":
                netns.drain()
            for phase, one, work in phases:
                before = netns.reserve_stats()["taken"]
                times, wall, cpu = measured(lambda: work(one, runs))
                taken = netns.reserve_stats()["taken"] - before
                if mode == "on":
                    taken_on += taken
                results.setdefault((mode, phase), []).append({
                    "median_ms": statistics.median(times) * 1e3,
                    "per_s": len(times) / wall,
                    "cpu_ms": cpu / len(times) * 1e3,
                    "reused": taken / len(times),
                })
    monkeypatch.delenv("FASTCONTAIN_NETNS_REUSE")
    assert taken_on > 0, "reuse on: no container joined a reused namespace"
    stats = netns.reserve_stats()
    netns.drain()

    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    tr.write_line("")
    tr.write_line(f"netns reuse: fastcontain.run(/bin/true), {rounds} rounds x {runs} per mode and phase, "
                  "medians over rounds (CPU: the whole machine per container, deferred cleanup included)")
    for phase, _, _ in phases:
        for mode in ("on", "off"):
            rs = results[(mode, phase)]
            m: dict[str, Any] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            tr.write_line(f"  {phase:9} reuse {mode:3}  latency {m['median_ms']:6.3f} ms  {m['per_s']:6.0f}/s  "
                          f"CPU {m['cpu_ms']:6.3f} ms/container  reused {m['reused']:4.0%}")
    tr.write_line(f"  reserve over the bench: made ahead {stats['made']}, taken {stats['taken']}, "
                  f"put back {stats['returned']}, refused {stats['refused']}, opened after clone {stats['opened']}")
