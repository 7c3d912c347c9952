"""The subprocess.run face: exit codes, signals, stdin, capture, timeout, check, threads."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

import fastcontain
from fastcontain import errors

from .util import ALL_NAMESPACES, LIMIT

pytestmark = pytest.mark.privileged


def run_sh(script, **options):
    options.setdefault("timeout", LIMIT)
    return fastcontain.run("busybox", ["sh", "-c", script], **options)


@pytest.mark.parametrize("status", [0, 1, 3, 127, 255])
def test_exit_status_comes_back(status):
    r = run_sh(f"exit {status}")
    assert r.returncode == status


def test_result_looks_like_completed_process():
    r = run_sh("echo hi", capture_output=True)
    assert r.returncode == 0 and r.stdout == b"hi\n" and r.stderr == b""
    assert list(r.args)[-1] == "echo hi"
    r.check_returncode()


def test_signal_death_is_a_negative_returncode():
    # pid 1 of a pid namespace cannot be killed from inside it (the kernel drops the
    # signal), so kill itself in a container that shares the host's pid namespace...
    no_pid_ns = tuple(n for n in ALL_NAMESPACES if n != "pid")
    assert run_sh("kill -9 $$", namespaces=no_pid_ns).returncode == -signal.SIGKILL
    assert run_sh("kill -TERM $$", namespaces=no_pid_ns).returncode == -signal.SIGTERM
    # ...and as pid 1 of its own, the same signal from inside is ignored
    assert run_sh("kill -9 $$; echo still here", capture_output=True).stdout == b"still here\n"


def test_signals_from_outside_reach_pid_1():
    # The kernel gives pid 1 of a namespace only the signals it handles, and SIGKILL:
    # a trapped SIGTERM arrives, and SIGKILL kills it whatever it does.
    script = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    with fastcontain.Container.create("busybox", ["sh", "-c", script]) as c:
        c.start()
        wait_for_output(c, b"ready\n")
        c.kill(signal.SIGTERM)
        assert c.wait(timeout=LIMIT) == 3
        assert c.logs() == b"ready\ngot TERM\n"
    with fastcontain.Container.create("busybox", ["sh", "-c", "trap '' TERM INT; sleep 3600"]) as c:
        c.start()
        c.kill(signal.SIGKILL)
        assert c.wait(timeout=LIMIT) == -signal.SIGKILL


def wait_for_output(container, expected: bytes) -> None:
    deadline = time.monotonic() + 60
    while container.logs() != expected:
        assert time.monotonic() < deadline, f"no {expected!r} in the logs: {container.logs()!r}"
        time.sleep(0.02)


def test_stdin_input():
    assert run_sh("cat", input=b"to stdin\n", capture_output=True).stdout == b"to stdin\n"
    assert run_sh("wc -c", input="héllo", text=True, capture_output=True).stdout.strip() == "6"


def test_stdin_and_stdout_files(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(b"line one\nline two\n")
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        r = run_sh("tac", stdin=fin, stdout=fout)
    assert r.returncode == 0
    assert dst.read_bytes() == b"line two\nline one\n"


def test_stdout_and_stderr_are_captured_separately():
    r = run_sh("echo out; echo err >&2; echo out2", capture_output=True, text=True)
    assert (r.stdout, r.stderr) == ("out\nout2\n", "err\n")
    r = run_sh("echo out; echo err >&2", stdout=subprocess.PIPE)
    assert r.stdout == b"out\n" and r.stderr is None


def test_large_output_is_drained():
    r = run_sh("head -c 3000000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero >&2", capture_output=True)
    assert r.returncode == 0
    assert len(r.stdout) == 3_000_000 and set(r.stdout) == {ord("a")}
    assert len(r.stderr) == 200_000


def test_timeout_kills_every_process_and_raises():
    with pytest.raises(errors.TimeoutExpired) as info:
        run_sh("sleep 3600 & echo started; sleep 3600", timeout=3, capture_output=True)
    e = info.value
    assert isinstance(e, subprocess.TimeoutExpired)
    assert e.timeout == 3
    assert e.stdout == b"started\n"  # the output so far is kept, as subprocess.run does
    # the leak check (after this test) proves no process of it is left


def test_check_raises_and_keeps_output():
    with pytest.raises(errors.CalledProcessError) as info:
        run_sh("echo out; echo err >&2; exit 3", check=True, capture_output=True, text=True)
    e = info.value
    assert isinstance(e, subprocess.CalledProcessError)
    assert (e.returncode, e.stdout, e.stderr) == (3, "out\n", "err\n")
    assert run_sh("true", check=True).returncode == 0


def test_threads_spawn_at_once():
    results: list[str] = []
    failures: list[BaseException] = []

    def worker():
        try:
            for _ in range(10):
                results.append(run_sh("echo $$", capture_output=True, text=True).stdout)
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert results == ["1\n"] * 40
