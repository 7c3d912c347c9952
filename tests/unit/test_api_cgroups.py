"""The cgroup wiring of run() and Container over the fake native core and a fake cgroup
manager: created before the spawn, its fd in the spec, v1 placement before exec,
kill-all, OOM reports, removed on every path. No root, no cgroup touched."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Mapping

import pytest

import fake_native
import fastcontain
from fastcontain.errors import SpawnError


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from fastcontain.image import store

    try:
        store.find_busybox()
    except fastcontain.ImageError as e:
        pytest.skip(f"no static busybox on this host: {e}")
    monkeypatch.setenv("FASTCONTAIN_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("FASTCONTAIN_STORE", str(tmp_path / "store"))
    return fake_native.install(monkeypatch)


def test_run_makes_one_cgroup_with_the_limits_and_removes_it(fake: Any) -> None:
    r = fastcontain.run("busybox", ["true"], memory="64m", pids_limit=9)
    assert r.returncode == 0 and r.oom_killed is False
    (cg,) = fake.cgroups.cgroups
    assert cg.resources.memory == 64 << 20 and cg.resources.pids_limit == 9
    fastcontain.teardown.flush()  # run() removes its cgroup on the teardown worker
    assert cg.owner.endswith(cg.id) and cg.removed
    assert fake.children[0].spec["cgroup_fd"] is cg.fd


def test_a_v1_host_places_the_pid_before_exec(fake: Any) -> None:
    fake.cgroups.needs_attach = True
    r = fastcontain.run("busybox", ["true"])
    (cg,), (child,) = fake.cgroups.cgroups, fake.children
    assert child.spec["wait_for_start"] is True  # the child waited for the attach
    assert len(cg.attached) == 1 and child.started and r.returncode == 0  # (the fake's pid before exec is ours)


def test_an_oom_kill_is_reported_from_the_cgroup(fake: Any) -> None:
    fake.cgroups.oom = 1
    r = fastcontain.run("busybox", ["sh", "-c", "kill -9 $$"])
    assert (r.returncode, r.oom_killed) == (-9, True)
    assert "oom_killed=True" in repr(r)
    with pytest.raises(fastcontain.CalledProcessError) as info:
        fastcontain.run("busybox", ["false"], check=True)
    assert info.value.oom_killed


def test_timeout_and_kill_use_the_cgroup(fake: Any) -> None:
    with pytest.raises(fastcontain.TimeoutExpired):
        fastcontain.run("busybox", ["sleep", "30"], timeout=0.2)
    fastcontain.teardown.flush()  # run() removes its cgroup on the teardown worker
    assert fake.cgroups.cgroups[0].kills == 1 and fake.cgroups.cgroups[0].removed
    with fastcontain.Container.create("busybox", ["sleep", "30"]) as c:
        c.start()
        c.kill(signal.SIGTERM)  # another signal goes to the first process only
        assert c.wait(10) == -signal.SIGTERM and fake.cgroups.cgroups[1].kills == 0
    with fastcontain.Container.create("busybox", ["sleep", "30"]) as c:
        c.start()
        c.kill()
        assert c.wait(10) == -signal.SIGKILL and fake.cgroups.cgroups[2].kills == 1
        assert c.stats()["pids_current"] == 1
    fastcontain.teardown.flush()  # run() removes its cgroup on the teardown worker
    assert fake.cgroups.cgroups[2].removed and not c.oom_killed
    with pytest.raises(fastcontain.ContainerError):
        c.stats()


def test_a_failed_spawn_removes_the_cgroup(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def spawn(spec: Mapping[str, Any]) -> Any:
        raise SpawnError("mount of /proc failed", step="mount", errno=1)

    failing = fake_native.install(monkeypatch, spawn=spawn)
    with pytest.raises(SpawnError):
        fastcontain.run("busybox", ["true"])
    (cg,) = failing.cgroups.cgroups
    fastcontain.teardown.flush()  # run() removes its cgroup on the teardown worker
    assert cg.removed
