"""What a container's cgroup costs, beside the spawn: fastcontain.run of /bin/true from
the busybox rootfs without limits (its cgroup is membership only: on v2 and hybrid it
is born in it) and with memory, pids and CPU limits (on hybrid and v1 these are v1
controllers: the child waits while its pid is written, and pays the v1 attach), each
also after 50 ms of idle (the first v1 attach after idle waits for an RCU grace
period); and the cgroup's own set-up and teardown (Manager.create + Cgroup.remove)
without a process; Container.stats() of a running container; and the device rules
by each backend (test_device_rules_cost). The summary gives each median as a ratio to
the plain run's (the device rules' to the run without them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest
import report

import fastcontain
from fastcontain import cgroups, state

LIMITS: dict[str, Any] = {"memory": "64m", "pids_limit": 64, "cpus": 1.0}
CASES = ("run", "run+limits", "run, idle before", "run+limits, idle before", "cgroup", "cgroup+limits")
DEVICES = tuple(f"devices {b}{i}" for i in ("", ", idle before") for b in ("none", "bpf", "v1"))
IDLE = 0.05
COST, STATS, RULES = ("cgroup set-up and teardown per container", "Container.stats() of a running container",
                      "device rules per container")
report.declare(COST, base="run", order=CASES)
report.declare(STATS, base="run", base_group=COST)
report.declare(RULES, base="devices none", order=DEVICES)


def _cgroup_cycle(res: cgroups.Resources) -> Callable[[], None]:
    mgr = cgroups.manager()

    def cycle() -> None:
        cg = mgr.create(state.new_id(), res, owner="/nonexistent/bench")
        cg.remove()

    return cycle


@pytest.mark.parametrize("case", CASES)
def test_cgroup_cost(benchmark: Any, rootfs: Path, case: str) -> None:
    benchmark.group = COST
    image = str(rootfs)
    limits = LIMITS if "limits" in case else {}
    if case.startswith("cgroup"):
        fn = _cgroup_cycle(fastcontain.Config(image, **limits).resources)
    else:
        def fn() -> None:
            r = fastcontain.run(image, ["/bin/true"], **limits)
            assert r.returncode == 0 and not r.oom_killed

    # each case checks once that its container really got the limits
    if case == "run+limits":
        r = fastcontain.run(image, ["cat", "/proc/self/cgroup"], capture_output=True, text=True, **limits)
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == "0::/", r
    if "idle" in case:
        benchmark.pedantic(fn, setup=lambda: time.sleep(IDLE), rounds=20, iterations=1)
    else:
        benchmark(fn)
    layout = cgroups.manager().host.layout
    benchmark.extra_info.update({"case": case, "layout": layout, "correct": True})
    report.declare(COST, base="run", order=CASES, note=f"on this {layout} host, as ratios to a plain run")
    report.record(benchmark, case)


@pytest.mark.parametrize("limited", [False, True], ids=["no limits", "limits"])
def test_stats_cost(benchmark: Any, rootfs: Path, limited: bool) -> None:
    """Container.stats() on a running container: a handful of small cgroup file reads."""
    benchmark.group = STATS
    with fastcontain.Container.create(str(rootfs), ["sleep", "60"], **(LIMITS if limited else {})) as c:
        c.start()
        s = benchmark(c.stats)
        assert s["pids_current"] == 1 and s["oom_kills"] in (0, None)
        benchmark.extra_info.update({"correct": True, "stats": s})
        report.record(benchmark, f"stats(), {'limits' if limited else 'no limits'}")


# -- device rules ---------------------------------------------------------------------------


def _device_backends() -> list[str]:
    host = cgroups.Host.detect()
    return ["none"] + (["bpf"] if host.unified else []) + (["v1"] if "devices" in host.v1 else [])


@pytest.mark.parametrize("idle", [False, True], ids=["", "idle before"])
@pytest.mark.parametrize("backend", _device_backends())
def test_device_rules_cost(benchmark: Any, rootfs: Path, backend: str, idle: bool) -> None:
    """fastcontain.run of /bin/true with the default device rules enforced by each way
    this host offers (fastcontain.devices): "bpf", the loaded program attached to the
    container's cgroup2 directory; "v1", the container's own devices cgroup (mkdir, the
    lines, the attach of the pid); "none", the devices part skipped (not an option: the
    baseline only)."""
    import os

    from fastcontain import devices

    benchmark.group = RULES
    mgr = cgroups.manager()
    ours = os.path.join(mgr.host.mount("devices"), mgr.parent) if "devices" in mgr.host.v1 else None
    made = ours is not None and not os.path.isdir(ours)
    saved = mgr.device_backend
    mgr.device_backend = backend
    image = str(rootfs)
    try:
        if backend != "none":  # the rules hold: a node made in the container is not opened
            r = fastcontain.run(image, ["sh", "-c", "mknod /dev/m c 1 1 && cat /dev/m"], capture_output=True, text=True)
            assert "Operation not permitted" in r.stderr, r
        devices.prepare(devices.DEFAULT_POLICY)

        def fn() -> None:
            r = fastcontain.run(image, ["/bin/true"])
            assert r.returncode == 0

        if idle:
            benchmark.pedantic(fn, setup=lambda: time.sleep(IDLE), rounds=20, iterations=1)
        else:
            benchmark(fn)
    finally:
        mgr.device_backend = saved
        if made and os.path.isdir(str(ours)):  # the devices controller's parent, made here only
            from fastcontain import teardown

            teardown.flush()
            os.rmdir(str(ours))
            mgr._ready.pop("devices", None)
    name = f"devices {backend}" + (", idle before" if idle else "")
    benchmark.extra_info.update({"case": name, "layout": mgr.host.layout, "correct": True})
    report.record(benchmark, name)
