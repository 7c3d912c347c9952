"""Thousands of containers must not add up to anything: run many, leak nothing."""

from __future__ import annotations

import os

import pytest

import fastcontain

import leakcheck

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
    assert leakcheck.leaks(before, leakcheck.take(session_dirs.root), session_dirs.root) == []
    assert [e.name for e in os.scandir(session_dirs.root) if e.is_dir() and e.name != "names"] == []


def test_failed_runs_leak_nothing(session_dirs):
    before = leakcheck.take(session_dirs.root)
    for _ in range(50):
        with pytest.raises(fastcontain.errors.SpawnError):
            fastcontain.run("busybox", ["/bin/nosuch"])
    fastcontain.teardown.flush()  # run() removes its state dir in the background
    assert leakcheck.leaks(before, leakcheck.take(session_dirs.root), session_dirs.root) == []


def test_container_lifecycles_leak_nothing(session_dirs):
    before = leakcheck.take(session_dirs.root)
    for _ in range(50):
        with fastcontain.Container.create("busybox", ["sleep", "3600"]) as c:
            c.start()
            c.kill()
            c.wait(timeout=LIMIT)
    fastcontain.teardown.flush()  # run() removes its state dir in the background
    assert leakcheck.leaks(before, leakcheck.take(session_dirs.root), session_dirs.root) == []
    assert [e.name for e in os.scandir(session_dirs.root) if e.is_dir() and e.name != "names"] == []
