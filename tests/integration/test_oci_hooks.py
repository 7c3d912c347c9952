"""The runtime spec's hooks at the points it names, seen by what each hook can observe:
createRuntime in the runtime's namespaces once the container's exist (its pid in the
state, its own netns), createContainer in the container's mount namespace with its
mounts made and the old root still there, startContainer inside the container after
pivot_root and before its process, poststart before `start` returns, poststop after
`delete`; a failing or timed-out hook fails its operation by name and leaves nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from .test_oci_cli import bundle, oci, ok, rm_cgroup_parent, root, write  # noqa: F401 (fixtures)

pytestmark = pytest.mark.privileged


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _wait_for(pred: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_each_hook_runs_where_the_spec_places_it(bundle: Path, root: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    rootfs = bundle / "rootfs"
    # runtime namespace: the state's pid is the container's init, already in its own netns
    runtime = _script(tmp_path / "runtime.sh", f"""read state
pid=$(echo "$state" | sed 's/.*"pid": *\\([0-9]*\\).*/\\1/')
echo "$1 $state" >> {marks}/order
[ "$(readlink /proc/$pid/ns/net)" != "$(readlink /proc/self/ns/net)" ] && echo own-netns >> {marks}/$1
[ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && echo runtime-mntns >> {marks}/$1
[ "$FROM_ENV" = yes ] && echo env >> {marks}/$1
[ -z "$HOME" ] && echo only-its-env >> {marks}/$1
exit 0
""")
    # the container's mount namespace before pivot_root: its /proc is mounted in the rootfs,
    # and the host's tree (this script's folder) is still there
    container = _script(tmp_path / "container.sh", f"""read state
pid=$(echo "$state" | sed 's/.*"pid": *\\([0-9]*\\).*/\\1/')
echo "$1 $state" >> {marks}/order
[ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] && echo container-mntns >> {marks}/$1
grep -q " {rootfs}/proc " /proc/self/mountinfo && echo mounts-made >> {marks}/$1
[ -d {tmp_path} ] && echo old-root-there >> {marks}/$1
exit 0
""")
    # inside the container after pivot_root: its path resolves in the container (busybox's sh);
    # /marks is the bundle's bind mount; the process has not run yet
    start = ["sh", "-c", "read state; echo \"startContainer $state\" >> /marks/order; "
             f"[ ! -e {tmp_path} ] && echo pivoted >> /marks/startContainer; "
             "[ ! -e /marks/process ] && echo before-process >> /marks/startContainer; exit 0"]
    hooks = {
        "createRuntime": [{"path": runtime, "args": ["runtime.sh", "createRuntime"], "env": ["FROM_ENV=yes"]}],
        "prestart": [{"path": runtime, "args": ["runtime.sh", "prestart"], "env": ["FROM_ENV=yes"]}],
        "createContainer": [{"path": container, "args": ["container.sh", "createContainer"]}],
        "startContainer": [{"path": "/bin/sh", "args": start}],
        "poststart": [{"path": runtime, "args": ["runtime.sh", "poststart"]}],
        "poststop": [{"path": runtime, "args": ["runtime.sh", "poststop"]}],
    }
    mounts = oci_mounts_with(write(bundle, ["true"])["mounts"],
                             {"destination": "/marks", "type": "bind", "source": str(marks), "options": ["rbind"]})
    c = write(bundle, ["sh", "-c", "echo process > /marks/process; sleep 60"], hooks=hooks, mounts=mounts)
    try:
        ok(root, "create", "--bundle", str(bundle), "k1")
        order = (marks / "order").read_text().splitlines()
        assert [line.split()[0] for line in order] == ["prestart", "createRuntime", "createContainer"]
        pid = json.loads(ok(root, "state", "k1"))["pid"]
        states = [json.loads(line.split(" ", 1)[1]) for line in order]
        assert all(s["pid"] == pid and s["status"] == "creating" and s["id"] == "k1" for s in states)
        for kind in ("prestart", "createRuntime"):
            assert (marks / kind).read_text().split() == ["own-netns", "runtime-mntns", "env", "only-its-env"]
        assert (marks / "createContainer").read_text().split() == ["container-mntns", "mounts-made", "old-root-there"]
        assert not (marks / "process").exists()

        ok(root, "start", "k1")
        # poststart has run when start returns
        order = (marks / "order").read_text().splitlines()
        assert [line.split()[0] for line in order][3:] == ["startContainer", "poststart"]
        assert (marks / "startContainer").read_text().split() == ["pivoted", "before-process"]
        assert json.loads(order[3].split(" ", 1)[1])["status"] == "created"
        assert json.loads(order[4].split(" ", 1)[1])["status"] == "running"
        _wait_for((marks / "process").exists)
        assert (marks / "process").exists()

        ok(root, "kill", "k1", "KILL")
        _wait_for(lambda: json.loads(ok(root, "state", "k1"))["status"] == "stopped")
        assert "poststop" not in (marks / "order").read_text()
        ok(root, "delete", "k1")
        last = (marks / "order").read_text().splitlines()[-1]
        assert last.split()[0] == "poststop" and json.loads(last.split(" ", 1)[1])["status"] == "stopped"
    finally:
        oci(root, "delete", "--force", "k1")
        rm_cgroup_parent(c)


def oci_mounts_with(mounts: list[dict[str, Any]], extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*mounts, extra]


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_create_hook_fails_create_naming_it(bundle: Path, root: str, tmp_path: Path, kind: str) -> None:
    hook = _script(tmp_path / "fail.sh", "cat > /dev/null; echo 'no good' >&2; exit 3\n")
    c = write(bundle, ["true"], hooks={kind: [{"path": hook}]})
    try:
        r = oci(root, "create", "--bundle", str(bundle), "f2")
        assert r.returncode == 1
        assert f"hooks.{kind}[0] ({hook}) exited with status 3: no good" in r.stderr
        assert oci(root, "state", "f2").returncode == 1
        assert "f2" not in os.listdir(root)
    finally:
        oci(root, "delete", "--force", "f2")
        rm_cgroup_parent(c)


def test_a_hook_past_its_timeout_fails_create(bundle: Path, root: str, tmp_path: Path) -> None:
    hook = _script(tmp_path / "slow.sh", "sleep 30\n")
    c = write(bundle, ["true"], hooks={"createContainer": [{"path": hook, "timeout": 1}]})
    try:
        t = time.monotonic()
        r = oci(root, "create", "--bundle", str(bundle), "t1")
        assert r.returncode == 1 and f"hooks.createContainer[0] ({hook}) timed out after 1 seconds" in r.stderr
        assert time.monotonic() - t < 20
        assert "t1" not in os.listdir(root)
    finally:
        oci(root, "delete", "--force", "t1")
        rm_cgroup_parent(c)


def test_a_failing_start_hook_fails_start_and_stops_the_container(bundle: Path, root: str, tmp_path: Path) -> None:
    c = write(bundle, ["sh", "-c", "sleep 60"],
              hooks={"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]}]})
    try:
        ok(root, "create", "--bundle", str(bundle), "s1")
        r = oci(root, "start", "s1")
        assert r.returncode == 1 and "hooks.startContainer[0] (/bin/sh) exited with status 5" in r.stderr
        _wait_for(lambda: json.loads(ok(root, "state", "s1"))["status"] == "stopped")
        assert json.loads(ok(root, "state", "s1"))["status"] == "stopped"
        ok(root, "delete", "s1")
    finally:
        oci(root, "delete", "--force", "s1")
        rm_cgroup_parent(c)


def test_a_failing_poststart_hook_only_warns(bundle: Path, root: str) -> None:
    c = write(bundle, ["sh", "-c", "sleep 60"], hooks={"poststart": [{"path": "/bin/false"}]})
    try:
        ok(root, "create", "--bundle", str(bundle), "p1")
        ok(root, "start", "p1")
        assert json.loads(ok(root, "state", "p1"))["status"] == "running"
    finally:
        oci(root, "delete", "--force", "p1")
        rm_cgroup_parent(c)


def _native_spec(rootfs: Path, **extra: Any) -> tuple[dict[str, Any], int]:
    r, w = os.pipe()
    os.close(r)
    return {"argv": ["/bin/true"], "rootfs": str(rootfs), "overlay": None, "namespaces": ["mount", "pid", "uts"],
            "wait_for_start": True, "stdio": [-1, w, w], **extra}, w


def test_the_native_child_waits_before_pivot_root_when_asked(bundle: Path) -> None:
    """pause_before_pivot: the child has its mounts and the host's root, until resume_setup."""
    from fastcontain import _native
    from fastcontain.errors import SpawnError

    rootfs = (bundle / "rootfs").resolve()
    spec, w = _native_spec(rootfs, pause_before_pivot=True)
    try:
        child = _native.spawn(spec)
    finally:
        os.close(w)
    try:
        assert child.paused_before_pivot
        assert os.readlink(f"/proc/{child.pid}/root") == "/"  # not pivoted yet
        with open(f"/proc/{child.pid}/mountinfo") as f:
            assert f" {rootfs}/proc " in f.read()  # its mounts are made
        with pytest.raises(SpawnError, match="resume_setup"):
            child.start()
        child.resume_setup()
        assert not child.paused_before_pivot
        assert os.readlink(f"/proc/{child.pid}/root") == "/"  # pivoted: its root, seen from its own view
        with open(f"/proc/{child.pid}/mountinfo") as f:
            assert f" {rootfs}/proc " not in f.read()
        child.start()
        assert child.wait(10) == 0
    finally:
        child.close()
    # without the key, no pause (fastcontain.run's path pays nothing)
    spec, w = _native_spec(rootfs)
    try:
        child = _native.spawn(spec)
    finally:
        os.close(w)
    try:
        assert not child.paused_before_pivot
        with pytest.raises(SpawnError, match="does not wait before pivot_root"):
            child.resume_setup()
        child.start()
        assert child.wait(10) == 0
    finally:
        child.close()


def test_a_child_closed_while_paused_before_pivot_leaves_nothing(bundle: Path) -> None:
    from fastcontain import _native

    spec, w = _native_spec((bundle / "rootfs").resolve(), pause_before_pivot=True)
    try:
        child = _native.spawn(spec)
    finally:
        os.close(w)
    pid = child.pid
    child.close()
    assert child.returncode is not None and not os.path.exists(f"/proc/{pid}")
