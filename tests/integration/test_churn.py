"""Thousands of containers must not add up to anything: run many, leak nothing."""

from __future__ import annotations

import os

import pytest

import fastcontain

import harness
import leakcheck
from harness import cgroup_parent_name

from .util import LIMIT

pytestmark = pytest.mark.privileged

RUNS = 200


def test_sequential_runs_leak_nothing(session_dirs):
    fastcontain.run("busybox", ["true"])
    before = leakcheck.take(session_dirs.root)
    for i in range(RUNS):
        r = fastcontain.run("busybox", ["sh", "-c", f"exit {i % 7}"])
        assert r.returncode == i % 7
    fastcontain.teardown.flush()  # run() removes its state dir in the background
    assert harness.leaks(before, leakcheck.take(session_dirs.root), session_dirs.root) == []
    assert [e.name for e in os.scandir(session_dirs.root) if e.is_dir() and e.name not in ("names", "networks")] == []


def test_failed_runs_leak_nothing(session_dirs):
    before = leakcheck.take(session_dirs.root)
    for _ in range(50):
        with pytest.raises(fastcontain.errors.SpawnError):
            fastcontain.run("busybox", ["/bin/nosuch"])
    fastcontain.teardown.flush()  # run() removes its state dir in the background
    assert harness.leaks(before, leakcheck.take(session_dirs.root), session_dirs.root) == []


def test_container_lifecycles_leak_nothing(session_dirs):
    before = leakcheck.take(session_dirs.root)
    for _ in range(50):
        with fastcontain.Container.create("busybox", ["sleep", "3600"]) as c:
            c.start()
            c.kill()
            c.wait(timeout=LIMIT)
    fastcontain.teardown.flush()  # run() removes its state dir in the background
    assert harness.leaks(before, leakcheck.take(session_dirs.root), session_dirs.root) == []
    assert [e.name for e in os.scandir(session_dirs.root) if e.is_dir() and e.name not in ("names", "networks")] == []


def test_empty_parents_of_dead_test_sessions_are_swept():
    import subprocess

    from fastcontain import cgroups

    mgr = cgroups.manager()
    gone = subprocess.Popen(["true"])
    gone.wait()
    key = "pids" if "pids" in mgr.host.keys else "unified"
    base = mgr.host.mount(key)
    dead = os.path.join(base, f"fastcontain-test-{gone.pid}-abc123")
    busy = os.path.join(base, f"fastcontain-test-{gone.pid}-def456")
    alive = os.path.join(base, f"fastcontain-test-{os.getpid()}-0a1b2c")
    other = os.path.join(base, f"fastcontain-test-{gone.pid}-not-ours")
    # as the engines tests name podman's and containerd's parents (tests/harness.py)
    engine = os.path.join(base, cgroup_parent_name(gone.pid))
    made = [dead, busy, os.path.join(busy, "child"), alive, other, engine]
    try:
        for d in made:
            os.mkdir(d)
        removed = mgr.sweep_session_parents()
        assert dead in removed and not os.path.exists(dead)
        assert engine in removed and not os.path.exists(engine)
        # not empty, still running, or not named as a session's: left alone
        assert all(os.path.isdir(d) for d in (busy, alive, other)), removed
    finally:
        for d in reversed(made):
            if os.path.isdir(d):
                os.rmdir(d)
