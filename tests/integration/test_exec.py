"""Container.exec_run: a process joins a running container's namespaces, root and settings;
its exit code comes with its output, streamed or not."""

from __future__ import annotations

import os
import signal
import time

import pytest

import fastcontain
from fastcontain.errors import ContainerError, SpawnError, TimeoutExpired
from fastcontain.exec import ExecResult, ExecStream

from .util import KEEP, LIMIT, wait_ready

pytestmark = pytest.mark.privileged

@pytest.fixture
def running():
    with fastcontain.Container.create("busybox", ["sh", "-c", KEEP], hostname="fc-exec-box",
                                      env={"FROM_CONTAINER": "1"}) as c:
        c.start()
        wait_ready(c)
        yield c


def test_exec_sees_the_containers_hostname_pid_ns_mounts_and_files(running):
    r = running.exec_run(["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /tmp/mark"])
    assert isinstance(r, ExecResult)
    lines = r.output.decode().splitlines()
    assert r.exit_code == 0, r.output
    assert lines[0] == "fc-exec-box"
    assert lines[1] != "1" and int(lines[1]) > 1  # in the container's pid namespace, not its init
    assert lines[2] == "sleep 1000 "  # and it sees the container's PID 1
    assert lines[3] == "written-by-pid1"  # the container's root filesystem


def test_exec_sees_a_mount_pid_1_made_in_its_mount_namespace():
    script = "mkdir /scratch; mount -t tmpfs -o size=1m fc-exec-tmpfs /scratch; echo ready; exec sleep 1000"
    with fastcontain.Container.create("busybox", ["sh", "-c", script], privileged=True) as c:
        c.start()
        wait_ready(c)
        r = c.exec_run(["sh", "-c", "grep ' /scratch ' /proc/self/mounts"])
        assert r.exit_code == 0 and r.output.startswith(b"fc-exec-tmpfs /scratch tmpfs"), r.output
    assert b"fc-exec-tmpfs" not in open("/proc/self/mounts", "rb").read()


def test_exec_is_born_in_the_containers_cgroup(running):
    r = running.exec_run(["sh", "-c", "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup"])
    pid1, mine = r.output.decode().split("--\n")
    assert pid1.strip() == mine.strip()


def test_exec_shares_every_namespace_of_the_init(running):
    script = "for n in mnt pid uts ipc net cgroup; do echo $n $(readlink /proc/1/ns/$n) $(readlink /proc/self/ns/$n); done"
    r = running.exec_run(["sh", "-c", script])
    for line in r.output.decode().splitlines():
        name, theirs, mine = line.split()
        assert theirs == mine, line


def test_exec_has_the_containers_security_settings(running):
    fields = ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs", "Seccomp")
    script = f"for f in {' '.join(fields)}; do grep \"^$f:\" /proc/1/status; grep \"^$f:\" /proc/self/status; done"
    lines = running.exec_run(["sh", "-c", script]).output.decode().splitlines()
    assert len(lines) == 2 * len(fields)
    for pid1, mine in zip(lines[::2], lines[1::2]):
        assert pid1 == mine


def test_exit_code_and_output_come_together(running):
    r = running.exec_run(["sh", "-c", "echo out; echo err >&2; echo out2; exit 3"])
    assert r == (3, b"out\nerr\nout2\n")
    r = running.exec_run("sh -c 'echo o; echo e >&2'", demux=True)
    assert r == (0, (b"o\n", b"e\n"))
    r = running.exec_run(["sh", "-c", "kill -TERM $$"])
    assert r.exit_code == -signal.SIGTERM


def test_streamed_output_arrives_while_running_and_keeps_the_exit_code(running):
    s = running.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done; exit 9"], stream=True)
    assert isinstance(s, ExecStream) and s.exit_code is None
    t0 = time.monotonic()
    seen = [(time.monotonic() - t0, chunk) for chunk in s]
    assert [c for _, c in seen] == [b"1\n", b"2\n", b"3\n"]
    assert seen[0][0] < 0.25 < seen[1][0]
    assert s.exit_code == 9 and s.wait() == 9


def test_streamed_demux_names_the_stream(running):
    s = running.exec_run(["sh", "-c", "echo a; sleep 0.1; echo b >&2"], stream=True, demux=True)
    assert list(s) == [("stdout", b"a\n"), ("stderr", b"b\n")] and s.exit_code == 0


def test_user_env_workdir_and_stdin(running):
    r = running.exec_run(["sh", "-c", "id -u; id -g; pwd; echo $FROM_CONTAINER $EXTRA; cat"],
                         user="nobody", env={"EXTRA": "x"}, workdir="/tmp", stdin=b"typed\n")
    assert r == (0, b"65534\n65534\n/tmp\n1 x\ntyped\n")


def test_exec_with_a_tty(running):
    r = running.exec_run(["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo tty; stty size"], tty=True)
    assert r == (0, b"tty\r\n24 80\r\n")


def test_errors_name_the_step(running):
    with pytest.raises(SpawnError) as e:
        running.exec_run(["/bin/nosuch"])
    assert e.value.step == "execve" and e.value.path == "/bin/nosuch"
    with pytest.raises(SpawnError) as e:
        running.exec_run(["true"], workdir="/no/such/dir")
    assert e.value.step == "chdir"


def test_timeout_kills_the_exec_not_the_container(running):
    with pytest.raises(TimeoutExpired):
        running.exec_run(["sleep", "100"], timeout=0.3)
    assert running.status == "running"
    assert running.exec_run(["true"]).exit_code == 0


def test_exec_into_a_stopped_or_unstarted_container_is_a_clear_error():
    with fastcontain.Container.create("busybox", ["true"]) as c:
        with pytest.raises(ContainerError, match="is created: exec needs a running container: start it first"):
            c.exec_run(["true"])
        c.start()
        c.wait(timeout=LIMIT)
        with pytest.raises(ContainerError, match="is exited: exec needs a running container"):
            c.exec_run(["true"])


def test_a_container_with_an_unread_exec_stream_still_ends(running):
    s = running.exec_run(["sleep", "1000"], stream=True)
    running.kill()
    # the init only finishes exiting once the exec'd sleep (our child) is reaped
    assert running.wait(timeout=LIMIT) == -signal.SIGKILL
    assert s.wait() == -signal.SIGKILL


def test_exec_joins_a_user_namespace_too(tmp_path, monkeypatch):
    from fastcontain import security

    base = 3_100_000  # this test's own range, from its own subuid file
    (tmp_path / "subuid").write_text(f"{security.SUBID_USER}:{base}:65536\n")
    monkeypatch.setenv(security.SUBUID_ENV, str(tmp_path / "subuid"))
    monkeypatch.setenv(security.SUBGID_ENV, str(tmp_path / "subuid"))
    with fastcontain.Container.create("busybox", ["sh", "-c", "echo ready; exec sleep 1000"],
                                      userns=f"0:{base}:65536") as c:
        c.start()
        wait_ready(c)
        r = c.exec_run(["sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; readlink /proc/1/ns/user"])
        lines = r.output.decode().split("\n")
        assert r.exit_code == 0 and lines[0] == "0", r.output
        assert lines[1].split()[:2] == ["0", str(base)], r.output  # mapped as PID 1 is
        assert lines[2] == lines[3]


def test_exec_joins_a_network_namespace_the_init_joined_by_descriptor():
    # network="container:NAME" (the init setns'd into another's netns) and a Pool's slot
    # (a netns made ahead): the exec is in the init's network namespace, not the host's
    script = "readlink /proc/1/ns/net; readlink /proc/self/ns/net"
    with fastcontain.Container.create("busybox", ["sh", "-c", "echo ready; exec sleep 1000"], name="fc-exec-net") as a:
        a.start()
        wait_ready(a)
        with fastcontain.Container.create("busybox", ["sh", "-c", "echo ready; exec sleep 1000"],
                                          network="container:fc-exec-net") as b:
            b.start()
            wait_ready(b)
            init, mine = b.exec_run(["sh", "-c", script]).output.decode().split()
            assert init == mine != os.readlink("/proc/self/ns/net")
    with fastcontain.Pool("busybox", size=1) as pool:
        with pool.container(["sh", "-c", "echo ready; exec sleep 1000"]) as c:
            c.start()
            wait_ready(c)
            r = c.exec_run(["sh", "-c", script])
            assert r.exit_code == 0, r.output
            init, mine = r.output.decode().split()
            assert init == mine != os.readlink("/proc/self/ns/net")
