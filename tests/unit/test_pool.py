"""Pool over the fake native core: slots made ahead, used once, refilled, released on
close; the teardown worker's bound and flush. No root needed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import fastcontain
from fastcontain import teardown
from fastcontain.errors import ConfigError, ContainerError

from test_api import fake, left_in, no_leaks, open_fds, root  # noqa: F401 (fixtures)


def slot_dirs(root: Path) -> list[str]:
    return [e for e in left_in(root) if not e.startswith("names/")]


def test_a_pool_keeps_its_size_ready_and_uses_each_slot_once(fake: Any, no_leaks: None, root: Path) -> None:
    with fastcontain.Pool("busybox", size=3, env=["WHO=pool"]) as pool:
        assert pool.wait_ready(10)
        ready = set(slot_dirs(root))
        assert len(ready) == 3
        for d in ready:
            assert sorted(os.listdir(root / d)) == ["lock", "rootfs", "upper", "work"]
        r = pool.run(["sh", "-c", "echo out"], capture_output=True, text=True)
        assert (r.returncode, r.stdout) == (0, "out\n")
        assert "WHO=pool" in fake.children[0].spec["env"]
        used = fake.children[0].spec["rootfs"]
        assert os.path.basename(os.path.dirname(used)) in ready  # a slot made ahead
        assert pool.hits == 1 and pool.misses == 0
        teardown.flush()
        assert not os.path.exists(used)  # used once, then removed
        assert pool.wait_ready(10) and len(slot_dirs(root)) == 3  # refilled
        assert os.path.basename(os.path.dirname(used)) not in slot_dirs(root)
    assert slot_dirs(root) == []  # close released every ready slot


def test_an_empty_pool_makes_slots_on_demand(fake: Any, no_leaks: None) -> None:
    with fastcontain.Pool("busybox", size=0) as pool:
        assert pool.run(["true"]).returncode == 0
        assert pool.run(["sh", "-c", "exit 3"]).returncode == 3
        assert (pool.hits, pool.misses) == (0, 2)


def test_pool_options_apply_and_per_run_options_override(fake: Any, no_leaks: None) -> None:
    with fastcontain.Pool("busybox", size=1, hostname="pooled", env={"A": "1"}) as pool:
        pool.run(["true"])
        pool.run(["true"], hostname="other", timeout=5)
    assert fake.children[0].spec["hostname"] == "pooled"
    assert fake.children[1].spec["hostname"] == "other"
    assert "A=1" in fake.children[1].spec["env"]


def test_pool_container_is_a_created_container_in_a_slot(fake: Any, no_leaks: None, root: Path) -> None:
    with fastcontain.Pool("busybox", size=1) as pool:
        pool.wait_ready(10)
        (slot,) = slot_dirs(root)
        with pool.container(["sh", "-c", "echo hi"]) as c:
            assert c.id == slot and c.status == "created"
            c.start()
            assert c.wait() == 0 and c.logs() == b"hi\n"
        assert c.status == "removed" and not (root / slot).exists()


def test_bad_pool_options_are_refused_before_anything_exists(fake: Any, no_leaks: None, root: Path) -> None:
    with pytest.raises(ConfigError, match="size"):
        fastcontain.Pool("busybox", size=-1)
    with pytest.raises(ConfigError, match="refill_rate"):
        fastcontain.Pool("busybox", refill_rate=0)
    with pytest.raises(ConfigError, match="name"):
        fastcontain.Pool("busybox", name="web")
    with pytest.raises(ConfigError, match="workdir"):
        fastcontain.Pool("busybox", workdir="relative")
    with pytest.raises(fastcontain.ImageError):
        fastcontain.Pool("/no/such/image/dir")
    assert slot_dirs(root) == []


def test_a_run_is_refilled_after_it_ends_unless_it_took_the_last_slot(fake: Any, no_leaks: None) -> None:
    with fastcontain.Pool("busybox", size=2) as pool:
        assert pool.wait_ready(10)
        made: list[int] = []
        make = pool._make
        pool._make = lambda: (made.append(pool.ready), make())[1]  # type: ignore[method-assign]
        seen: list[int] = []
        real_run = fastcontain.api._run

        def run(*a: Any, **k: Any) -> Any:
            time.sleep(0.2)  # a refill woken by the take would have made its slot by now
            seen.append(len(made))
            return real_run(*a, **k)

        fastcontain.api._run = run  # type: ignore[assignment]
        try:
            pool.run(["true"])  # one slot left: the refill waits for the run's end
            assert seen == [0]
            assert pool.wait_ready(10) and len(made) == 1
            pool._take().discard()  # the other is taken too: the last one wakes the refill at once
            pool.run(["true"])
            assert seen[1] >= 1 + 1  # refilling began during the run
        finally:
            fastcontain.api._run = real_run  # type: ignore[assignment]
        assert pool.wait_ready(10)


def test_a_closed_pool_refuses_and_the_refill_rate_is_kept(fake: Any, no_leaks: None, root: Path) -> None:
    pool = fastcontain.Pool("busybox", size=5, refill_rate=20)
    time.sleep(0.12)
    assert pool.ready <= 4  # at most one slot every 50 ms
    pool.close()
    pool.close()
    with pytest.raises(ContainerError, match="closed"):
        pool.run(["true"])
    assert slot_dirs(root) == []


def test_a_crashed_pools_slots_are_swept(fake: Any, root: Path) -> None:
    pool = fastcontain.Pool("busybox", size=2)
    pool.wait_ready(10)
    # a crash: the process holding the slots' locks is gone (here: the locks go)
    with pool._cond:
        pool._closed = True
        pool._cond.notify_all()
    for t in pool._threads:
        t.join()
    for slot in pool._ready:
        os.close(slot.state._lock_fd)
        slot.state._lock_fd = -1
    assert len(slot_dirs(root)) == 2
    fastcontain.state.sweep(str(root))
    assert slot_dirs(root) == []


def test_the_teardown_queue_is_bounded_and_flush_reports_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = teardown._Worker(2)
    gate = threading.Event()
    done: list[int] = []
    worker.defer(gate.wait, "blocker")
    worker.defer(lambda: done.append(1), "one")
    worker.defer(lambda: done.append(2), "two")
    third = threading.Thread(target=worker.defer, args=(lambda: done.append(3), "three"))
    third.start()
    time.sleep(0.1)
    assert third.is_alive()  # the queue is full: the caller waits
    gate.set()
    third.join(5)
    worker.flush()
    assert done == [1, 2, 3] and worker.pending() == 0

    def broken() -> None:
        raise OSError(39, "Directory not empty", "/x/upper")

    worker.defer(broken, "removing /x")
    with pytest.raises(teardown.TeardownError, match="removing /x: .*Directory not empty"):
        worker.flush()
    worker.flush()  # reported once


def test_a_batch_goes_to_the_worker_as_one_item_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = teardown._Worker(2)
    monkeypatch.setattr(teardown, "_worker", worker)
    gate = threading.Event()
    worker.defer(gate.wait, "blocker")  # nothing runs until the gate opens
    done: list[str] = []

    def broken() -> None:
        raise OSError(16, "Device or resource busy", "/x/cgroup")

    with teardown.batch():
        teardown.defer(lambda: done.append("netns"), "checking a namespace")
        with teardown.batch():  # nested: the outermost submits
            teardown.defer(broken, "removing the cgroup /x/cgroup")
        assert teardown.try_defer(lambda: done.append("state"), "removing /x") is True
        assert worker.pending() == 1  # the blocker alone so far
    assert worker.pending() == 2  # the batch: one item
    with teardown.batch():  # the queue is full now (a bound of 2): try_defer refuses at once
        assert teardown.try_defer(lambda: done.append("never"), "optional") is False
    gate.set()
    with pytest.raises(teardown.TeardownError) as info:
        worker.flush()
    assert done == ["netns", "state"]  # in order, the failure stopped nothing
    assert "removing the cgroup /x/cgroup: " in str(info.value) and "Device or resource busy" in str(info.value)
    assert "checking a namespace" not in str(info.value)


def test_refill_threads_is_checked(fake: Any, root: Path) -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="refill_threads"):
            fastcontain.Pool("busybox", size=1, refill_threads=bad)  # type: ignore[arg-type]
    with fastcontain.Pool("busybox", size=3, refill_threads=2) as pool:
        assert pool.wait_ready(10) and pool.ready == 3 and len(pool._threads) == 2
