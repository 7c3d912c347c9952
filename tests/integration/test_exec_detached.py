"""exec into detached containers from processes that did not start them: the API
(Detached.exec_run) and `fastcontain exec`, each joining the container's init through a
pidfd checked against its record."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from fastcontain import ContainerError, SpawnError, TimeoutExpired, containers, state
from fastcontain.exec import ExecResult, ExecStream

from .util import KEEP, LIMIT, wait_ready

pytestmark = pytest.mark.privileged

@pytest.fixture
def box():
    c = containers.run("busybox", ["sh", "-c", KEEP], name="fc-xd-box", hostname="fc-xd-host",
                       env={"FROM_CONTAINER": "1"})
    try:
        wait_ready(c)
        yield c
    finally:
        c.remove(force=True)


def fc(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "fastcontain", *args], text=True, timeout=LIMIT, **kw)


# -- the API ------------------------------------------------------------------------------


def test_exec_joins_the_init_of_a_container_found_by_name(box):
    c = containers.get("fc-xd-box")  # a new handle: only the record is shared
    r = c.exec_run(["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /tmp/mark; "
                    "echo $FROM_CONTAINER; exit 4"])
    assert isinstance(r, ExecResult)
    lines = r.output.decode().splitlines()
    assert r.exit_code == 4, r.output
    assert lines[0] == "fc-xd-host" and int(lines[1]) > 1 and lines[2] == "sleep 1000 "
    assert lines[3] == "written-by-pid1" and lines[4] == "1"


def test_exec_shares_namespaces_cgroup_and_security_of_the_init(box):
    script = ("for n in mnt pid uts ipc net cgroup; do echo $n $(readlink /proc/1/ns/$n) $(readlink /proc/self/ns/$n); "
              "done; for f in CapEff CapBnd NoNewPrivs Seccomp; do echo $f $(grep \"^$f:\" /proc/1/status | cut -f2) "
              "$(grep \"^$f:\" /proc/self/status | cut -f2); done; echo cg $(cat /proc/1/cgroup | md5sum | cut -c1-8) "
              "$(cat /proc/self/cgroup | md5sum | cut -c1-8)")
    r = box.exec_run(["sh", "-c", script])
    rows = [line.split() for line in r.output.decode().splitlines()]
    assert len(rows) == 11, r.output
    for name, theirs, mine in rows:
        assert theirs == mine, name
    assert dict((n, t) for n, t, _ in rows)["Seccomp"] == "2"  # filtered, as the init is


def test_privileged_exec_has_every_capability_and_no_filter(box):
    r = box.exec_run(["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status | cut -f2"], privileged=True)
    cap_eff, seccomp = r.output.decode().split()
    assert int(cap_eff, 16) > int(box.exec_run(["sh", "-c", "grep ^CapEff: /proc/self/status | cut -f2"])
                                  .output.decode(), 16)
    assert seccomp == "0"


def test_output_forms_user_env_workdir_stdin_tty(box):
    s = box.exec_run(["sh", "-c", "echo a; sleep 0.1; echo b >&2; exit 3"], stream=True, demux=True)
    assert isinstance(s, ExecStream)
    assert list(s) == [("stdout", b"a\n"), ("stderr", b"b\n")] and s.exit_code == 3
    r = box.exec_run(["sh", "-c", "id -u; id -g; pwd; echo $EXTRA; cat"], user="nobody", env={"EXTRA": "x"},
                     workdir="/tmp", stdin=b"typed\n")
    assert r == (0, b"65534\n65534\n/tmp\nx\ntyped\n")
    assert box.exec_run(["sh", "-c", "[ -t 0 ] && echo tty; stty size"], tty=True) == (0, b"tty\r\n24 80\r\n")
    with pytest.raises(SpawnError) as e:
        box.exec_run(["/bin/nosuch"])
    assert e.value.step == "execve"


def test_paused_stopped_and_created_containers_are_named_clearly(box):
    box.pause()
    try:
        with pytest.raises(ContainerError, match="is paused: unpause it before exec"):
            box.exec_run(["true"])
    finally:
        box.unpause()
    assert box.exec_run(["true"]).exit_code == 0
    c = containers.create("busybox", ["sleep", "100"])
    try:
        with pytest.raises(ContainerError, match="is created: exec needs a running container: start it first"):
            c.exec_run(["true"])
    finally:
        c.remove(force=True)
    box.kill()
    box.wait(timeout=LIMIT)
    with pytest.raises(ContainerError, match="is stopped: exec needs a running container"):
        box.exec_run(["true"])


def test_a_pid_that_no_longer_names_the_init_is_refused(box):
    # what a reused pid looks like: the process at the recorded pid started at another time
    with state.record_locked(box.paths):
        record = state.read_record(box.paths)
        record["pid_start"] += 1
        state.write_record(box.paths, record)
    with pytest.raises(ContainerError, match=f"pid {box.pid} is no longer its init"):
        box.exec_run(["true"])
    with state.record_locked(box.paths):
        record = state.read_record(box.paths)
        record["pid_start"] -= 1
        state.write_record(box.paths, record)
    assert box.exec_run(["true"]).exit_code == 0


def test_exec_keeps_the_seccomp_profile_the_container_was_made_with(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    c = containers.run("busybox", ["sh", "-c", "echo ready; exec sleep 1000"], security_opt=[f"seccomp={profile}"])
    try:
        wait_ready(c)
        profile.unlink()  # gone from the host: the container's copy is used
        r = c.exec_run(["sh", "-c", "mkdir /tmp/x; echo $?"])
        assert r.output.endswith(b"1\n") and b"Operation not permitted" in r.output, r.output
    finally:
        c.remove(force=True)


def test_exec_joins_a_detached_containers_user_namespace(tmp_path, monkeypatch):
    from fastcontain import security

    base = 3_200_000  # this test's own range, from its own subuid file
    (tmp_path / "subuid").write_text(f"{security.SUBID_USER}:{base}:65536\n")
    monkeypatch.setenv(security.SUBUID_ENV, str(tmp_path / "subuid"))
    monkeypatch.setenv(security.SUBGID_ENV, str(tmp_path / "subuid"))
    c = containers.run("busybox", ["sh", "-c", "echo ready; exec sleep 1000"], userns=f"0:{base}:65536")
    try:
        wait_ready(c)
        r = c.exec_run(["sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; readlink /proc/1/ns/user"])
        lines = r.output.decode().split("\n")
        assert r.exit_code == 0 and lines[0] == "0", r.output
        assert lines[1].split()[:2] == ["0", str(base)] and lines[2] == lines[3], r.output
    finally:
        c.remove(force=True)


# -- the command line --------------------------------------------------------------------


def test_cli_exec_exit_code_streams_env_workdir_user_stdin(box):
    r = fc("exec", "fc-xd-box", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    r = fc("exec", "-e", "K=v", "-w", "/tmp", "-u", "nobody", box.id[:6], "sh", "-c", "echo $K $(pwd) $(id -u)")
    assert (r.returncode, r.stdout) == (0, "v /tmp 65534\n"), r.stderr
    r = fc("exec", "-i", "fc-xd-box", "sh", "-c", "tr a-z A-Z", input="typed\n")
    assert (r.returncode, r.stdout) == (0, "TYPED\n")
    r = fc("exec", "fc-xd-box", "sh", "-c", "cat; echo end", input="not given without -i\n")
    assert (r.returncode, r.stdout) == (0, "end\n")
    r = fc("exec", "fc-xd-box", "sh", "-c", "kill -9 $$")
    assert r.returncode == 128 + 9


def test_cli_exec_errors(box):
    r = fc("exec", "fc-xd-box", "/bin/nosuch")
    assert r.returncode == 127 and "/bin/nosuch" in r.stderr
    r = fc("exec", "fc-xd-nosuch", "true")
    assert r.returncode == 1 and "no such container: fc-xd-nosuch" in r.stderr
    r = fc("exec", "-d", "-t", "fc-xd-box", "true")
    assert r.returncode == 125 and "-d leaves no terminal" in r.stderr
    box.pause()
    try:
        r = fc("exec", "fc-xd-box", "true")
        assert r.returncode == 1 and "is paused" in r.stderr
    finally:
        box.unpause()


def test_cli_exec_detach_returns_while_the_process_runs(box):
    t0 = time.monotonic()
    r = fc("exec", "-d", "fc-xd-box", "sh", "-c", "sleep 0.5; echo done > /tmp/detached")
    assert r.returncode == 0 and (r.stdout, r.stderr) == ("", "")
    assert box.exec_run(["cat", "/tmp/detached"]).exit_code == 1  # not yet: the CLI did not wait
    deadline = t0 + LIMIT
    while box.exec_run(["cat", "/tmp/detached"]).output != b"done\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_cli_exec_forwards_signals_to_the_process(box):
    p = subprocess.Popen([sys.executable, "-m", "fastcontain", "exec", "fc-xd-box", "sh", "-c",
                          "trap 'echo got TERM; exit 9' TERM; echo waiting; while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "waiting\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=LIMIT) == 9
        assert p.stdout.read() == "got TERM\n"
    finally:
        p.kill()
        p.wait()


def test_cli_exec_tty_takes_the_callers_window_size_and_relays_input(box):
    import fcntl
    import struct
    import termios

    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover (the child: the CLI on a terminal of 33x101)
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        os.execv(sys.executable, [sys.executable, "-m", "fastcontain", "exec", "-it", "fc-xd-box", "sh", "-c",
                                  "stty size; [ -t 0 ] && echo is-a-tty; read line; echo got-$line; exit 5"])
    out = b""
    try:
        deadline = time.monotonic() + LIMIT
        while b"is-a-tty" not in out and time.monotonic() < deadline:
            out += os.read(master, 4096)
        os.write(master, b"abc\r")
        while b"got-abc" not in out and time.monotonic() < deadline:
            try:
                out += os.read(master, 4096)
            except OSError:
                break
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    assert b"33 101" in out and b"got-abc" in out, out
    assert os.waitstatus_to_exitcode(status) == 5


def test_exec_is_in_the_v1_limits_from_its_first_instruction():
    c = containers.run("busybox", ["sh", "-c", "echo ready; exec sleep 1000"], memory="64m", pids_limit=50)
    try:
        wait_ready(c)
        # cat reads its own cgroups before anything else: an attach after the spawn would be too late
        mine = c.exec_run(["cat", "/proc/self/cgroup"]).output
        theirs = c.exec_run(["cat", "/proc/1/cgroup"]).output
        assert mine == theirs and b"memory:/\n" in mine, mine  # "/": the root of its cgroup namespace
    finally:
        c.remove(force=True)


# -- detached containers with a terminal or an open stdin ------------------------------------


def test_detached_tty_is_held_by_the_supervisor_and_its_output_logged():
    c = containers.run("busybox", ["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size; exec sleep 1000"],
                       tty=True)
    try:
        deadline = time.monotonic() + LIMIT
        while b"24 80" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.logs() == b"on-a-tty\r\n24 80\r\n"
        assert c.reload().status == "running"
        # an exec sees the init's terminal as its stdin
        assert c.exec_run(["sh", "-c", "readlink /proc/1/fd/0"]).output == b"/dev/pts/0\n"
    finally:
        c.remove(force=True)


def test_dit_keeps_a_shell_running_to_exec_into_and_di_keeps_stdin_open():
    r = fc("run", "-dit", "--name", "fc-xd-dit", "busybox", "sh")
    assert r.returncode == 0, r.stderr
    try:
        time.sleep(0.3)
        assert fc("exec", "fc-xd-dit", "sh", "-c", "echo alive").stdout == "alive\n"
        assert containers.get("fc-xd-dit").status == "running"  # sh on a terminal waits for input
    finally:
        fc("rm", "-f", "fc-xd-dit")
    opened = containers.run("busybox", ["sh", "-c", "cat; echo eof"], stdin_open=True)
    closed = containers.run("busybox", ["sh", "-c", "cat; echo eof"])
    try:
        assert closed.wait(timeout=LIMIT) == 0 and closed.logs() == b"eof\n"  # /dev/null: at its end at once
        with pytest.raises(TimeoutExpired):
            opened.wait(timeout=0.5)  # its stdin stays open: cat waits
        assert opened.reload().status == "running"
    finally:
        opened.remove(force=True)
        closed.remove(force=True)
