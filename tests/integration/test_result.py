"""timeout= and cpu_time= end the whole container; the Result carries status, limits, times
and peak memory."""

from __future__ import annotations

import signal
import time

import pytest

import fastcontain
from fastcontain import TimeoutExpired

from .util import LIMIT

pytestmark = pytest.mark.privileged

BUSY = "while :; do :; done"


def test_result_of_a_normal_run():
    r = fastcontain.run("busybox", ["sh", "-c", "echo hi; exit 3"], capture_output=True, timeout=LIMIT)
    assert isinstance(r, fastcontain.Result)
    assert (r.returncode, r.exit_code, r.signal, r.timed_out, r.stdout) == (3, 3, None, None, b"hi\n")
    assert 0 < r.wall_time < LIMIT and r.cpu_time is not None and r.cpu_time >= 0
    assert r.cpu_time == pytest.approx(r.user_time + r.system_time)
    assert r.oom_killed is False


def test_death_by_signal():
    r = fastcontain.run("busybox", ["sh", "-c", "kill -USR1 $$; sleep 1"], namespaces=("mount", "uts", "ipc", "net"),
                        timeout=LIMIT)
    assert (r.returncode, r.exit_code, r.signal) == (-signal.SIGUSR1, None, signal.SIGUSR1)


def test_cpu_time_counts_the_whole_tree():
    # two busy children for about 0.4 s of wall time each: CPU time ~0.8 s on 2 CPUs, reaped by sh
    script = "(timeout 0.4 sh -c 'while :; do :; done') & (timeout 0.4 sh -c 'while :; do :; done') & wait"
    r = fastcontain.run("busybox", ["sh", "-c", script], timeout=LIMIT)
    assert r.returncode == 0
    assert r.cpu_time > 0.3  # more than either child alone would be if only PID 1 counted (~0)


def test_peak_memory_of_a_large_allocation():
    # 200 MB in a shell variable: well above this process's own size
    r = fastcontain.run("busybox", ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"],
                        capture_output=True, timeout=LIMIT)
    assert r.stdout == b"200000000\n"
    assert r.peak_memory is not None and r.peak_memory > 200_000_000


def test_wall_timeout_kills_the_whole_container():
    t0 = time.monotonic()
    with pytest.raises(TimeoutExpired) as e:
        fastcontain.run("busybox", ["sh", "-c", "sleep 1000 & sleep 1000"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert e.value.limit == "wall" and e.value.killed and e.value.timeout == 0.5
    r = e.value.result
    assert r.timed_out == "wall" and r.signal == signal.SIGKILL and r.wall_time >= 0.5


def test_cpu_time_limit_kills_a_busy_container_and_says_so():
    with pytest.raises(TimeoutExpired) as e:
        fastcontain.run("busybox", ["sh", "-c", f"{BUSY} & {BUSY}"], cpu_time=0.5, timeout=LIMIT, capture_output=True)
    assert e.value.limit == "cpu" and "CPU seconds" in str(e.value)
    r = e.value.result
    assert r.timed_out == "cpu" and r.signal == signal.SIGKILL
    assert 0.5 <= r.cpu_time < 2.0  # reaped descendants count; the watchdog samples every 50 ms


def test_cpu_time_is_not_wall_time():
    r = fastcontain.run("busybox", ["sleep", "0.5"], cpu_time=0.2, timeout=LIMIT)
    # the clock starts once the parent saw the execve, a moment after sleep started
    assert r.returncode == 0 and r.timed_out is None and r.wall_time >= 0.45


def test_container_result_after_wait():
    with fastcontain.Container.create("busybox", ["sh", "-c", "sleep 0.2; exit 5"], init=True) as c:
        with pytest.raises(fastcontain.ContainerError):
            c.result()
        c.start()
        c.wait(timeout=LIMIT)
        r = c.result()
        assert (r.exit_code, r.timed_out) == (5, None) and 0.2 <= r.wall_time < LIMIT
