"""`fastcontain-oci exec` as engines call it: a process.json or a command line, in the
foreground (its exit status is ours) or --detach with a pid file (the process goes on
and is reparented), with a terminal sent over --console-socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from .test_oci_cli import oci, ok, rm_cgroup_parent, write
from .util import LIMIT, build_busybox_image

pytestmark = pytest.mark.privileged

CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(root, id, bundle) of a started container whose init sleeps."""
    bundle = tmp_path / "bundle"
    build_busybox_image(bundle / "rootfs")
    for d in ("proc", "sys", "dev"):
        (bundle / "rootfs" / d).mkdir()
    config = write(bundle, ["sh", "-c", "echo from-init > /tmp/mark; exec sleep 1000"],
                   process={"env": ["PATH=/bin", "FROM_CONFIG=yes"], "cwd": "/",
                            "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")}},
                   root={"path": "rootfs", "readonly": False})
    root, id = str(tmp_path / "root"), "fc-oci-exec"
    ok(root, "create", "--bundle", str(bundle), id)
    try:
        ok(root, "start", id)
        pid = json.loads(ok(root, "state", id))["pid"]
        deadline = time.monotonic() + LIMIT
        while not os.path.exists(f"/proc/{pid}/root/tmp/mark") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{pid}/root/tmp/mark")
        yield root, id, bundle
    finally:
        oci(root, "delete", "--force", id)
        rm_cgroup_parent(config)


def test_exec_a_command_joins_the_container_with_its_configs_process(running) -> None:
    root, id, _ = running
    r = oci(root, "exec", id, "sh", "-c", "hostname; cat /tmp/mark; echo $FROM_CONFIG; echo $$; exit 3")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["fastcontain", "from-init", "yes"] and int(lines[3]) > 1
    pid = json.loads(ok(root, "state", id))["pid"]
    r = oci(root, "exec", "--cwd", "/tmp", "--env", "EXTRA=1", "--user", "1000:1000", id, "sh", "-c",
            "pwd; echo $EXTRA $FROM_CONFIG; id -u; id -g; "
            "for n in mnt pid uts ipc net cgroup; do readlink /proc/self/ns/$n; done; "
            "cat /proc/self/cgroup | md5sum; cat /proc/1/cgroup | md5sum")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["/tmp", "1 yes", "1000", "1000"]
    assert lines[4:10] == [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("mnt", "pid", "uts", "ipc", "net", "cgroup")]
    assert lines[10] == lines[11]  # in the init's cgroups, v1 controllers too, from its first instant
    r = oci(root, "exec", id, "/no/such")
    assert r.returncode == 1 and "/no/such" in r.stderr


def test_exec_with_a_process_json(running, tmp_path: Path) -> None:
    root, id, _ = running
    proc = {"args": ["sh", "-c", "echo $ONLY; pwd; id -u; id -G; grep ^CapEff /proc/self/status; exit 5"],
            "env": ["PATH=/bin", "ONLY=from-process-json"], "cwd": "/etc",
            "user": {"uid": 0, "gid": 0, "additionalGids": [7]}, "terminal": False,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}}
    (tmp_path / "process.json").write_text(json.dumps(proc))
    r = oci(root, "exec", "--process", str(tmp_path / "process.json"), id)
    assert r.returncode == 5, r.stderr
    assert r.stdout.splitlines() == ["from-process-json", "/etc", "0", "0 7", "CapEff:\t0000000000000020"]
    (tmp_path / "bad.json").write_text(json.dumps(dict(proc, cwd="relative")))
    r = oci(root, "exec", "--process", str(tmp_path / "bad.json"), id)
    assert r.returncode == 1 and "process.cwd" in r.stderr
    # ambient capabilities would survive execve for a user other than root: not something it can give
    (tmp_path / "ambient.json").write_text(json.dumps(dict(proc, user={"uid": 1000, "gid": 1000}, capabilities={
        "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]})))
    r = oci(root, "exec", "--process", str(tmp_path / "ambient.json"), id)
    assert r.returncode == 1 and "process.capabilities" in r.stderr and "non-root" in r.stderr, r.stderr


def test_exec_detach_writes_the_pid_file_and_leaves_the_process_running(running, tmp_path: Path) -> None:
    root, id, _ = running
    pid_file = tmp_path / "exec.pid"
    t0 = time.monotonic()
    r = oci(root, "exec", "--detach", "--pid-file", str(pid_file), id, "sh", "-c", "sleep 0.5; echo done > /tmp/d")
    assert r.returncode == 0, r.stderr
    pid = int(pid_file.read_text())
    init = json.loads(ok(root, "state", id))["pid"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")  # still running, inside
    deadline = t0 + LIMIT
    while not os.path.exists(f"/proc/{init}/root/tmp/d"):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_exec_tty_sends_the_terminal_over_the_console_socket(running, tmp_path: Path) -> None:
    root, id, _ = running
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        p = subprocess.Popen([sys.executable, "-m", "fastcontain.oci_cli", "--root", root,
                              "exec", "--tty", "--console-socket", path, "--detach", id, "sh", "-c",
                              "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; read x; echo got-$x"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        listener.settimeout(LIMIT)
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        assert p.wait(timeout=LIMIT) == 0, p.stderr.read() if p.stderr else ""
    master = fds[0]
    try:
        out = b""
        deadline = time.monotonic() + LIMIT
        while b"on-a-tty" not in out and time.monotonic() < deadline:
            out += os.read(master, 4096)
        os.write(master, b"abc\n")
        while b"got-abc" not in out and time.monotonic() < deadline:
            out += os.read(master, 4096)
        assert b"got-abc" in out, out
    finally:
        os.close(master)


def test_exec_into_a_stopped_container_is_refused(running) -> None:
    root, id, _ = running
    ok(root, "kill", id, "KILL")
    deadline = time.monotonic() + LIMIT
    while json.loads(ok(root, "state", id))["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = oci(root, "exec", id, "true")
    assert r.returncode == 1 and "is stopped: exec needs a running container" in r.stderr
    r = oci(root, "exec", "--detach", "--tty", id, "true")
    assert r.returncode == 1 and "--console-socket" in r.stderr
