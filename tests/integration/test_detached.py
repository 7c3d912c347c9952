"""Detached containers from the API (fastcontain.containers): a supervisor per container
that outlives its creator, keeps the exit status and logs until removal, and answers
start, kill, stop and wait from any process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import fastcontain
from fastcontain import ContainerError, SpawnError, TimeoutExpired, containers, state

pytestmark = pytest.mark.privileged


def test_run_detached_keeps_status_and_logs_until_removed():
    c = containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; exit 3"], name="fc-det-logs")
    assert c.wait(timeout=60) == 3
    c.reload()
    assert (c.status, c.exit_code) == ("stopped", 3)
    assert c.logs() == b"out\nerr\n"
    assert c.logs(stderr=False) == b"out\n" and c.logs(stdout=False) == b"err\n"
    info = containers.get("fc-det-logs").inspect()
    assert info["id"] == c.id and info["argv"][0] == "sh" and info["status"] == "stopped"
    assert c.id in [d.id for d in containers.list(all=True)]
    assert c.id not in [d.id for d in containers.list()]  # not running
    c.remove()
    assert not os.path.exists(c.paths.dir)
    with pytest.raises(ContainerError, match="no such container"):
        containers.get("fc-det-logs")


def test_create_then_start_from_another_process():
    c = containers.create("busybox", ["sh", "-c", "echo started; exit 5"])
    try:
        assert c.status == "created" and c.pid and os.path.exists(f"/proc/{c.pid}")
        # the creator is not the supervisor: a second interpreter starts and waits
        code = (
            "import fastcontain.containers as c; d = c.get(%r); d.start(); print(d.wait())" % c.id
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (0, "5\n", "")
        assert c.reload().status == "stopped" and c.logs() == b"started\n"
        with pytest.raises(ContainerError, match="only a created container can start"):
            c.start()
    finally:
        c.remove(force=True)


def test_the_supervisor_outlives_its_creator():
    code = "import fastcontain.containers as c; print(c.run('busybox', ['sleep', '60']).id)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    c = containers.get(r.stdout.strip())
    try:
        assert c.status == "running"
        sup = c.inspect()["supervisor_pid"]
        assert sup != os.getpid() and os.path.exists(f"/proc/{sup}")
        with open(f"/proc/{c.pid}/status") as f:
            ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
        assert ppid == sup, "the supervisor is the container's parent (it spawned it)"
        # a new session whose leader (the intermediate process) is gone: no terminal to get
        assert os.getsid(sup) not in (os.getsid(0), sup) and not os.path.exists(f"/proc/{os.getsid(sup)}")
    finally:
        c.remove(force=True)
    deadline = time.monotonic() + 10  # it released its lock; its interpreter is exiting
    while os.path.exists(f"/proc/{sup}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{sup}")


def test_stop_sends_term_then_kill_after_the_grace_period():
    # sh as pid 1 with a TERM trap exits at once; plain sleep as pid 1 ignores TERM
    trapped = containers.run("busybox", ["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"])
    stubborn = containers.run("busybox", ["sleep", "60"])
    try:
        time.sleep(0.3)  # let sh install its trap
        assert trapped.stop(timeout=30) == 42
        t = time.monotonic()
        assert stubborn.stop(timeout=0.5) == -signal.SIGKILL
        assert time.monotonic() - t >= 0.5
    finally:
        trapped.remove(force=True)
        stubborn.remove(force=True)


def test_kill_with_a_signal_and_wait_timeout():
    c = containers.run("busybox", ["sh", "-c", "trap 'exit 9' USR1; while true; do sleep 0.1; done"])
    try:
        with pytest.raises(TimeoutExpired):
            c.wait(timeout=0.2)
        time.sleep(0.2)
        c.kill(signal.SIGUSR1)
        assert c.wait(timeout=60) == 9
        with pytest.raises(ContainerError, match="nothing to kill"):
            c.kill()
    finally:
        c.remove()


def test_remove_refuses_a_running_container_without_force():
    c = containers.run("busybox", ["sleep", "60"], name="fc-det-rm")
    with pytest.raises(ContainerError, match="running"):
        c.remove()
    c.remove(force=True)
    assert state.lookup("fc-det-rm") is None
    again = containers.run("busybox", ["true"], name="fc-det-rm")  # the name is free again
    again.wait(timeout=60)
    again.remove()


def test_names_stay_taken_while_a_stopped_container_is_kept():
    c = containers.run("busybox", ["true"], name="fc-det-name")
    try:
        c.wait(timeout=60)
        state.sweep()  # a kept container is not a crash leftover
        with pytest.raises(ContainerError, match="in use"):
            containers.run("busybox", ["true"], name="fc-det-name")
        with pytest.raises(ContainerError, match="in use"):
            fastcontain.run("busybox", ["true"], name="fc-det-name")
    finally:
        c.remove()


def test_autoremove_removes_everything_at_exit():
    c = containers.run("busybox", ["sh", "-c", "sleep 0.2"], autoremove=True)
    assert c.wait(timeout=60) in (0, None)
    deadline = time.monotonic() + 10
    while os.path.exists(c.paths.dir) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(c.paths.dir)


def test_a_failed_start_is_the_spawn_error():
    with pytest.raises(SpawnError) as info:
        containers.run("busybox", ["/no/such/program"])
    assert info.value.step == "execve" and info.value.errno == 2
    c = containers.create("busybox", ["/no/such/program"])  # as docker: create succeeds, start fails
    try:
        with pytest.raises(SpawnError, match="execve"):
            c.start()
        assert c.wait(timeout=60) is not None and c.reload().status == "stopped"
    finally:
        c.remove(force=True)


def test_follow_logs_streams_until_the_exit():
    c = containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done"])
    try:
        got = b"".join(data for _, data in c.stream_logs(follow=True))
        assert got == b"line1\nline2\nline3\n"
        assert c.logs(tail=1) == b"line3\n"
    finally:
        c.remove(force=True)


def test_pause_freezes_every_process_and_unpause_thaws():
    c = containers.run("busybox", ["sh", "-c", "while true; do echo x; sleep 0.02; done"])
    try:
        time.sleep(0.2)
        c.pause()
        assert c.reload().status == "paused"
        size = os.path.getsize(c.paths.stdout_log)
        time.sleep(0.3)
        assert os.path.getsize(c.paths.stdout_log) == size, "a frozen container writes nothing"
        with pytest.raises(ContainerError, match="only a running container"):
            c.pause()
        c.unpause()
        assert c.reload().status == "running"
        time.sleep(0.3)
        assert os.path.getsize(c.paths.stdout_log) > size
        c.pause()
        assert c.stop(timeout=0.2) is not None  # a paused container is thawed to be stopped
    finally:
        c.remove(force=True)
