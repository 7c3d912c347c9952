"""Container: create (the process waits before exec), start, wait, kill, logs, remove."""

from __future__ import annotations

import os
import signal

import pytest

import fastcontain
from fastcontain.errors import ContainerError, FastcontainError

from .util import LIMIT

pytestmark = pytest.mark.privileged

SLEEP = ["sleep", "3600"]
SLEEP_CMDLINE = b"sleep\x003600\x00"


def cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def state_folders(session_dirs) -> list[str]:
    """The containers' folders in the runtime root (one each, named by id; names/ maps
    names to ids)."""
    return sorted(e.name for e in os.scandir(session_dirs.root) if e.is_dir() and e.name != "names")


def test_create_prepares_a_process_that_has_not_executed(session_dirs):
    c = fastcontain.Container.create("busybox", SLEEP)
    try:
        assert c.status == "created"
        assert c.returncode is None
        assert c.pid > 0 and os.path.exists(f"/proc/{c.pid}")
        assert cmdline(c.pid) != SLEEP_CMDLINE  # still the clone of this process
        assert len(state_folders(session_dirs)) == 1
        c.start()
        assert c.status == "running"
        assert cmdline(c.pid) == SLEEP_CMDLINE  # start() returns once execve succeeded
    finally:
        c.remove(force=True)
    assert state_folders(session_dirs) == []
    assert not os.path.exists(f"/proc/{c.pid}")


def test_start_wait_logs_remove(session_dirs):
    c = fastcontain.Container.create("busybox", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    c.start()
    assert c.wait(timeout=LIMIT) == 7
    assert c.returncode == 7
    assert c.status == "exited"
    assert c.logs(stderr=False) == b"out\n"
    assert c.logs(stdout=False) == b"err\n"
    assert sorted(c.logs().splitlines()) == [b"err", b"out"]
    c.remove()
    assert state_folders(session_dirs) == []


def test_id_name_and_default_hostname(session_dirs):
    with fastcontain.Container.create("busybox", ["hostname"], name="fc-test-named") as c:
        assert c.name == "fc-test-named"
        assert isinstance(c.id, str) and c.id
        assert state_folders(session_dirs) == [c.id]
        c.start()
        assert c.wait(timeout=LIMIT) == 0
        assert c.logs() == f"{c.id[:12]}\n".encode()
    with fastcontain.Container.create("busybox", ["true"]) as other:
        assert other.id != c.id


def test_kill_a_sleeping_container():
    with fastcontain.Container.create("busybox", SLEEP) as c:
        c.start()
        c.kill()
        assert c.wait(timeout=LIMIT) == -signal.SIGKILL
        assert c.status == "exited" and c.returncode == -signal.SIGKILL


def test_wait_timeout_on_a_running_container():
    with fastcontain.Container.create("busybox", SLEEP) as c:
        c.start()
        with pytest.raises(fastcontain.errors.TimeoutExpired):
            c.wait(timeout=0.2)
        assert c.status == "running"


def test_remove_refuses_a_running_container_unless_forced(session_dirs):
    c = fastcontain.Container.create("busybox", SLEEP)
    try:
        c.start()
        with pytest.raises(ContainerError):
            c.remove()
        assert c.status == "running"
    finally:
        c.remove(force=True)
    assert state_folders(session_dirs) == []


def test_remove_a_created_container_that_never_started(session_dirs):
    c = fastcontain.Container.create("busybox", SLEEP)
    pid = c.pid
    c.remove()
    assert state_folders(session_dirs) == []
    assert not os.path.exists(f"/proc/{pid}")


def test_context_manager_tears_down_on_error(session_dirs):
    with pytest.raises(RuntimeError, match="inside the block"):
        with fastcontain.Container.create("busybox", SLEEP) as c:
            c.start()
            raise RuntimeError("inside the block")
    assert state_folders(session_dirs) == []
    assert not os.path.exists(f"/proc/{c.pid}")


def test_operations_out_of_order_raise():
    c = fastcontain.Container.create("busybox", ["true"])
    c.start()
    c.wait(timeout=LIMIT)
    with pytest.raises(FastcontainError):
        c.start()
    c.remove()
    with pytest.raises(FastcontainError):
        c.start()


def test_start_failure_is_reported_and_cleaned_up(session_dirs):
    # The command is only looked up at start (execve): the error comes from start().
    c = fastcontain.Container.create("busybox", ["/bin/nosuch"])
    try:
        with pytest.raises(fastcontain.errors.SpawnError) as info:
            c.start()
        assert info.value.step == "execve"
    finally:
        c.remove(force=True)
    assert state_folders(session_dirs) == []
