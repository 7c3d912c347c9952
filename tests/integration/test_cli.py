"""`python -m fastcontain run`: docker's flags and exit statuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.privileged

CLI = [sys.executable, "-m", "fastcontain", "run"]


def cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, **kw)


def test_readme_command():
    r = cli("--rm", "busybox", "sh", "-c", "echo hello from $(hostname); ls /")
    assert r.returncode == 0, r.stderr
    first, *listing = r.stdout.split()
    assert r.stdout.startswith("hello from ")
    assert {"bin", "etc", "proc", "dev", "sys"} <= set(listing)


def test_exit_status_is_the_containers():
    assert cli("--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert cli("--rm", "busybox", "true").returncode == 0


def test_stdout_stderr_and_stdin_pass_through():
    r = cli("--rm", "-i", "busybox", "sh", "-c", "cat; echo err >&2", input="piped\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "piped\n", "err\n")


def test_flags():
    r = cli(
        "--rm", "-e", "A=1", "-e", "B=two words", "-w", "/etc", "--hostname", "fc-cli-host",
        "-u", "1000:1000", "busybox", "sh", "-c", 'echo "$A $B"; pwd; hostname; id -u; id -g',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1 two words", "/etc", "fc-cli-host", "1000", "1000"]


def test_volume_flag(tmp_path):
    src = tmp_path / "fastcontain-cli-vol"
    src.mkdir()
    (src / "f").write_text("vol\n")
    r = cli("--rm", "-v", f"{src}:/v", "busybox", "sh", "-c", "cat /v/f; echo w > /v/w")
    assert (r.returncode, r.stdout) == (0, "vol\n"), r.stderr
    assert (src / "w").read_text() == "w\n"
    r = cli("--rm", "-v", f"{src}:/v:ro", "busybox", "sh", "-c", "echo w > /v/w2")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (src / "w2").exists()


def test_name_and_network_flags():
    r = cli("--rm", "--name", "fc-cli-named", "--network", "host", "busybox", "readlink", "/proc/self/ns/net")
    assert (r.returncode, r.stdout.strip()) == (0, os.readlink("/proc/self/ns/net")), r.stderr
    r = cli("--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert (r.returncode, r.stdout.split()) == (0, ["lo"]), r.stderr


def test_command_not_found_is_127():
    r = cli("--rm", "busybox", "/bin/nosuch")
    assert r.returncode == 127
    assert "/bin/nosuch" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_command_not_executable_is_126():
    r = cli("--rm", "busybox", "/etc/passwd")
    assert r.returncode == 126
    assert "/etc/passwd" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_runtime_errors_are_125():
    r = cli("--rm", "/nonexistent/fastcontain-image", "true")
    assert r.returncode == 125
    assert "/nonexistent/fastcontain-image" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("--rm", "-w", "relative", "busybox", "true")
    assert r.returncode == 125 and "workdir" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def container_pid_of(cli_pid: int, argv: bytes, deadline: float) -> int:
    """The container's pid 1 (a child of the CLI process) once it has exec'd argv."""
    while time.monotonic() < deadline:
        for tid in os.listdir(f"/proc/{cli_pid}/task"):
            with open(f"/proc/{cli_pid}/task/{tid}/children") as f:
                for pid in f.read().split():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as c:
                            if c.read() == argv:
                                return int(pid)
                    except FileNotFoundError:
                        pass
        time.sleep(0.02)
    raise AssertionError("the container never started")


def test_signal_death_is_128_plus_n():
    proc = subprocess.Popen([*CLI, "--rm", "busybox", "sleep", "3600"], stderr=subprocess.PIPE)
    pid = None
    try:
        pid = container_pid_of(proc.pid, b"sleep\x003600\x00", time.monotonic() + 60)
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == 128 + signal.SIGKILL
    finally:
        if proc.poll() is None:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
        proc.stderr.close()
