"""init=True: a minimal init as PID 1 (docker's --init) reaps orphans, forwards signals
and exits with the command's status."""

from __future__ import annotations

import signal
import time

import pytest

import fastcontain
from fastcontain.errors import SpawnError

from .util import LIMIT, out

pytestmark = pytest.mark.privileged


def test_the_command_runs_under_init_as_pid_2():
    text = out("echo $$; cat /proc/1/comm; cat /proc/$$/status | grep PPid", init=True)
    assert text.split("\n")[:3] == ["2", "init", "PPid:\t1"]


def test_without_init_the_command_is_pid_1():
    assert out("echo $$") == "1\n"


def test_orphans_are_reaped():
    # Each inner sh exits at once, leaving its sleep to be reparented to PID 1; the
    # sleeps end while the command still runs, so only PID 1 can reap them.
    script = "for i in 1 2 3 4; do sh -c 'sleep 0.1 &'; done; sleep 1; ps -o stat,pid,ppid,comm; echo end"
    table = out(script, init=True)
    rows = [line.split() for line in table.splitlines()[1:-1]]
    assert [r[3] for r in rows] == ["init", "sh", "ps"], table
    assert all(not r[0].startswith("Z") for r in rows), table


def test_orphans_left_by_a_pid_1_that_does_not_reap_are_zombies_without_init():
    # The contrast: PID 1 is `sleep` after exec, which never waits.
    script = "sh -c 'sleep 0.1 &'; exec sleep 2"
    with fastcontain.Container.create("busybox", ["sh", "-c", script]) as c:
        c.start()
        time.sleep(1)
        with open(f"/proc/{c.pid}/task/{c.pid}/children") as f:
            orphan = int(f.read().split()[0])
        with open(f"/proc/{orphan}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                 signal.SIGUSR2, signal.SIGQUIT, signal.SIGWINCH])
def test_signals_are_forwarded_to_the_command(sig):
    name = signal.Signals(sig).name[3:]
    script = f"trap 'echo got {name}; exit 7' {name}; echo ready; while true; do sleep 0.02; done"
    with fastcontain.Container.create("busybox", ["sh", "-c", script], init=True) as c:
        c.start()
        deadline = time.monotonic() + LIMIT
        while b"ready" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.01)
        c.kill(sig)
        assert c.wait(timeout=LIMIT) == 7
        assert c.logs() == f"ready\ngot {name}\n".encode()


def test_exit_status_passes_through():
    assert fastcontain.run("busybox", ["sh", "-c", "exit 42"], init=True, timeout=LIMIT).returncode == 42
    assert fastcontain.run("busybox", ["true"], init=True, timeout=LIMIT).returncode == 0


def test_death_by_signal_is_128_plus_n_as_tini():
    r = fastcontain.run("busybox", ["sh", "-c", "kill -KILL $$"], init=True, timeout=LIMIT)
    assert r.returncode == 128 + signal.SIGKILL


def test_a_missing_command_is_still_a_spawn_error():
    with pytest.raises(SpawnError) as e:
        fastcontain.run("busybox", ["/bin/nosuch"], init=True, timeout=LIMIT)
    assert e.value.step == "execve" and e.value.path == "/bin/nosuch"


def test_sigkill_of_the_init_ends_every_process():
    with fastcontain.Container.create("busybox", ["sh", "-c", "sleep 1000 & sleep 1000"], init=True) as c:
        c.start()
        c.kill(signal.SIGKILL)
        assert c.wait(timeout=LIMIT) == -signal.SIGKILL
