"""The leak check must catch what it claims to: leak each kind on purpose and look."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import leakcheck


def test_reports_a_leaked_descriptor_folder_and_child(tmp_path):
    root = tmp_path / "fastcontain-root"
    root.mkdir()
    before = leakcheck.take(str(root))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    (root / "c0ffee").mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        found = leakcheck.new(before, leakcheck.take(str(root)))
        lines = leakcheck.describe(str(root), found)
        assert found.fds == {(fd, str(tmp_path))}
        assert found.state == {"c0ffee"}
        assert found.children == {child.pid}
        assert f"open descriptor {fd} -> {tmp_path}" in lines
        assert f"state entry {root / 'c0ffee'}" in lines
        assert any(line.startswith(f"child process {child.pid} (") for line in lines)
        leakcheck.clean(found)  # kills and reaps the child
        assert child.pid not in leakcheck.take(str(root)).children
    finally:
        os.close(fd)
        child.kill()
        try:
            child.wait()
        except ChildProcessError:  # reaped by clean() already
            pass


def test_reports_a_zombie_child(tmp_path):
    before = leakcheck.take(str(tmp_path))
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        lines = leakcheck.leaks(before, leakcheck.take(str(tmp_path)), str(tmp_path))
        assert any(f"child process {pid} (" in line and "zombie" in line for line in lines), lines
    finally:
        os.waitpid(pid, 0)


def test_a_clean_interval_reports_nothing(tmp_path):
    before = leakcheck.take(str(tmp_path))
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)
    subprocess.run(["true"], check=True)
    assert leakcheck.leaks(before, leakcheck.take(str(tmp_path)), str(tmp_path)) == []


@pytest.mark.privileged
def test_reports_and_detaches_a_leaked_mount(tmp_path):
    target = tmp_path / "fastcontain-leakprobe"
    target.mkdir()
    before = leakcheck.take(str(tmp_path))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "fc-leakprobe", str(target)], check=True)
    try:
        found = leakcheck.new(before, leakcheck.take(str(tmp_path)))
        lines = leakcheck.describe(str(tmp_path), found)
        assert lines == [f"mount {target} (tmpfs from fc-leakprobe, root /)"]
        assert leakcheck.mounts_under(str(tmp_path)) == [str(target)]
        leakcheck.clean(found)
        assert leakcheck.mounts_under(str(tmp_path)) == []
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.mark.privileged
def test_reports_a_cgroup_left_under_fastcontains_parent(tmp_path):
    from fastcontain import cgroups

    mgr = cgroups.manager()
    parent = mgr.parent_dir("unified" if mgr.host.unified else next(iter(mgr.host.v1)))
    before = leakcheck.take(str(tmp_path))
    left = os.path.join(parent, "fedcba9876543210")
    os.mkdir(left)
    try:
        found = leakcheck.new(before, leakcheck.take(str(tmp_path)))
        assert leakcheck.describe(str(tmp_path), found) == [f"cgroup {left}"]
        leakcheck.clean(found)
        assert not os.path.exists(left)
    finally:
        if os.path.exists(left):
            os.rmdir(left)
