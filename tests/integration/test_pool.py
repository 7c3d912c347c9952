"""Pools of real containers: slots made ahead, isolated runs, nothing left after close."""

from __future__ import annotations

import os

import pytest

import fastcontain

from .util import LIMIT

pytestmark = pytest.mark.privileged


def test_pool_runs_isolated_containers_from_ready_slots(session_dirs):
    with fastcontain.Pool("busybox", size=4, hostname="pooled") as pool:
        assert pool.wait_ready(LIMIT)
        outs = [pool.run(["sh", "-c", "echo $$ $(hostname); touch /written"], capture_output=True, text=True, check=True)
                for _ in range(20)]
        assert {o.stdout for o in outs} == {"1 pooled\n"}
        assert pool.hits >= 4
        r = pool.run(["sh", "-c", "test -e /written"])  # a fresh writable layer every time
        assert r.returncode == 1
        with pool.container(["sleep", "3600"]) as c:
            c.start()
            c.kill()
            assert c.wait(timeout=LIMIT) == -9
    fastcontain.teardown.flush()
    assert [e for e in os.listdir(session_dirs.root) if e not in ("lock", "names", "networks")] == []
