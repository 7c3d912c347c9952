"""`fastcontain-oci` on a bundle as runc's command line is driven: create, start, state,
kill, delete, run, pause/resume, ps, list, hooks, sysctl, limits."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fastcontain import oci_cli

from .util import build_busybox_image

pytestmark = pytest.mark.privileged

OCI = [sys.executable, "-m", "fastcontain.oci_cli"]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    build_busybox_image(tmp_path / "rootfs")
    for d in ("proc", "sys", "dev"):
        (tmp_path / "rootfs" / d).mkdir()
    return tmp_path


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "fastcontain-oci-root")


def write(bundle: Path, args: list[str], **changes: Any) -> dict[str, Any]:
    c = oci_cli.default_spec()
    c["process"]["args"] = args
    c["process"]["terminal"] = False
    # a cgroup the leak check recognises
    c["linux"]["cgroupsPath"] = f"/fastcontain-test-{secrets.token_hex(4)}/{bundle.name}"
    for k, v in changes.items():
        if k == "linux":
            c["linux"].update(v)
        elif k == "process":
            c["process"].update(v)
        else:
            c[k] = v
    (bundle / "config.json").write_text(json.dumps(c))
    return c


def oci(root: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    if args[0] != "create" or kw:
        return subprocess.run([*OCI, "--root", root, *args], capture_output=True, text=True, timeout=60, **kw)
    # the container's stdio is create's (as with runc): pipes would stay open until it exits
    with open(os.path.join(root + ".create-err"), "w+") as err:
        r = subprocess.run([*OCI, "--root", root, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=err, text=True, timeout=60)
        err.seek(0)
        return subprocess.CompletedProcess(r.args, r.returncode, "", err.read())


def ok(root: str, *args: str) -> str:
    r = oci(root, *args)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def rm_cgroup_parent(config: dict[str, Any]) -> None:
    parent = config["linux"]["cgroupsPath"].strip("/").split("/")[0]
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] + [f"/sys/fs/cgroup/{c}" for c in os.listdir("/sys/fs/cgroup")]:
        try:
            os.rmdir(os.path.join(mount, parent))
        except OSError:
            pass


def test_create_start_state_kill_delete(bundle: Path, root: str, tmp_path: Path) -> None:
    c = write(bundle, ["sleep", "60"])
    pid_file = tmp_path / "init.pid"
    try:
        ok(root, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1")
        st = json.loads(ok(root, "state", "c1"))
        assert st["status"] == "created" and st["id"] == "c1" and st["bundle"] == str(bundle)
        assert st["pid"] == int(pid_file.read_text()) and os.path.exists(f"/proc/{st['pid']}")
        assert "c1" in ok(root, "list", "-q").split()
        ok(root, "start", "c1")
        assert json.loads(ok(root, "state", "c1"))["status"] == "running"
        assert json.loads(ok(root, "ps", "--format", "json", "c1")) == [st["pid"]]
        ok(root, "pause", "c1")
        assert json.loads(ok(root, "state", "c1"))["status"] == "paused"
        ok(root, "resume", "c1")
        assert json.loads(ok(root, "state", "c1"))["status"] == "running"
        r = oci(root, "delete", "c1")
        assert r.returncode == 1 and "running" in r.stderr
        ok(root, "kill", "c1", "KILL")
        deadline = time.monotonic() + 10
        while json.loads(ok(root, "state", "c1"))["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert json.loads(ok(root, "state", "c1"))["status"] == "stopped"
        ok(root, "delete", "c1")
        r = oci(root, "state", "c1")
        assert r.returncode == 1 and "does not exist" in r.stderr
    finally:
        oci(root, "delete", "--force", "c1")
        rm_cgroup_parent(c)


def test_run_returns_the_exit_status_with_the_config_applied(bundle: Path, root: str) -> None:
    c = write(bundle, ["sh", "-c", "echo $A; id -u; id -g; pwd; hostname; touch /x 2>/dev/null || echo ro; exit 7"],
              process={"env": ["A=from-config", "PATH=/bin"], "cwd": "/etc", "user": {"uid": 1000, "gid": 1000},
                       "capabilities": {"bounding": ["CAP_KILL"]}},
              hostname="fc-oci-host")
    try:
        r = oci(root, "run", "--bundle", str(bundle), "r1")
        assert r.returncode == 7, r.stderr
        assert r.stdout.split() == ["from-config", "1000", "1000", "/etc", "fc-oci-host", "ro"]
        assert "r1" not in ok(root, "list", "-q").split()
    finally:
        rm_cgroup_parent(c)


def test_limits_sysctl_and_hooks(bundle: Path, root: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nread state; echo \"$1 $state\" >> {marks}\n")
    hook.chmod(0o755)
    hooks = {kind: [{"path": str(hook), "args": ["hook.sh", kind]}]
             for kind in ("createRuntime", "poststart", "poststop")}
    c = write(bundle, ["sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; sleep 60"], hooks=hooks,
              linux={"sysctl": {"net.ipv4.ip_unprivileged_port_start": "99"},
                     "resources": {"memory": {"limit": 64 << 20}, "pids": {"limit": 32}}})
    out = tmp_path / "out"
    try:
        with open(out, "w") as f, open(tmp_path / "err", "w+") as err:
            # the container's stdio is create's: a file, not a pipe that would stay open
            r = subprocess.run([*OCI, "--root", root, "create", "--bundle", str(bundle), "h1"], stdout=f,
                               stderr=err, text=True, timeout=60)
            err.seek(0)
            assert r.returncode == 0, err.read()
        ok(root, "start", "h1")
        pid = json.loads(ok(root, "state", "h1"))["pid"]
        deadline = time.monotonic() + 10
        while not out.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out.read_text() == "99\n"
        with open(f"/proc/{pid}/cgroup") as f:
            groups = f.read()
        path = c["linux"]["cgroupsPath"]
        assert f":memory:{path}\n" in groups and f":pids:{path}\n" in groups
        with open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes") as f:
            assert int(f.read()) == 64 << 20
        ok(root, "kill", "--all", "h1", "9")
        deadline = time.monotonic() + 10
        while json.loads(ok(root, "state", "h1"))["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.01)
        ok(root, "delete", "h1")
        lines = marks.read_text().splitlines()
        assert [line.split()[0] for line in lines] == ["createRuntime", "poststart", "poststop"]
        states = [json.loads(line.split(" ", 1)[1]) for line in lines]
        assert [s["status"] for s in states] == ["creating", "running", "stopped"]
        assert all(s["id"] == "h1" and s["pid"] == pid for s in states)
        assert not os.path.exists(f"/sys/fs/cgroup/memory{path}")
    finally:
        oci(root, "delete", "--force", "h1")
        rm_cgroup_parent(c)


def test_a_failing_create_hook_fails_create_and_leaves_nothing(bundle: Path, root: str) -> None:
    c = write(bundle, ["true"], hooks={"createRuntime": [{"path": "/bin/false"}]})
    try:
        r = oci(root, "create", "--bundle", str(bundle), "f1")
        assert r.returncode == 1 and "hooks.createRuntime[0] (/bin/false) exited with status 1" in r.stderr
        assert os.listdir(root) == ["lock", "names"] or "f1" not in os.listdir(root)
        r = oci(root, "state", "f1")
        assert r.returncode == 1
    finally:
        rm_cgroup_parent(c)


def test_an_unsupported_field_is_named(bundle: Path, root: str) -> None:
    write(bundle, ["true"], linux={"timeOffsets": {"monotonic": {"secs": 1}}})
    r = oci(root, "create", "--bundle", str(bundle), "u1")
    assert r.returncode == 1
    assert "config.json: linux.timeOffsets: time namespaces are not supported yet" in r.stderr


def test_device_rules_are_enforced(bundle: Path, root: str) -> None:
    # the v1 devices controller or a cgroup v2 device program (fastcontain.devices)
    # a node of linux.devices (/dev/kmsg's numbers); opening it for writing needs no capability,
    # so only the device cgroup decides; nothing is written to it
    node = {"path": "/dev/fc-kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666}
    script = "(: > /dev/fc-kmsg) 2>/dev/null && echo opened || echo denied; echo x > /dev/null && echo null-ok"
    deny_all = {"allow": False, "access": "rwm"}
    for rules, expected in (([deny_all], ["denied", "null-ok"]),
                            ([deny_all, {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"}],
                             ["opened", "null-ok"])):
        c = write(bundle, ["sh", "-c", script], linux={"devices": [node], "resources": {"devices": rules}})
        try:
            r = oci(root, "run", "--bundle", str(bundle), "d1")
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == expected, r.stderr
        finally:
            rm_cgroup_parent(c)


@pytest.mark.parametrize("tool", ["runc", "crun"])
def test_a_bundle_from_runc_or_crun_spec_runs_unchanged(bundle: Path, root: str, tool: str) -> None:
    """terminal: true and sh as the command, as `runc spec` writes them: run proxies the
    terminal to its own stdin and stdout, as runc does without --console-socket."""
    import shutil

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    subprocess.run([tool, "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["terminal"] is True and config["process"]["args"] == ["sh"]
    r = subprocess.run([*OCI, "--root", root, "run", "--bundle", str(bundle), f"spec-{tool}"],
                       input="echo hello from $(hostname); exit 4\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 4, r.stderr
    assert f"hello from {config['hostname']}" in r.stdout.replace("\r", "")
    assert f"spec-{tool}" not in ok(root, "list", "-q").split()
