"""Options: bind mounts, environment, working directory, user, CPU affinity, descriptors."""

from __future__ import annotations

import os
import subprocess

import pytest

import fastcontain

from .util import mountinfo, out, sh, tree

pytestmark = pytest.mark.privileged


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "fastcontain-bind-src"
    d.mkdir()
    (d / "in").write_text("from the host\n")
    return d


def test_read_write_bind(src):
    assert out("cat /data/in && echo from the container > /data/out", volumes=[fastcontain.Mount(str(src), "/data")]) == "from the host\n"
    assert (src / "out").read_text() == "from the container\n"


def test_read_only_bind_refuses_writes(src):
    before = tree(src)
    r = fastcontain.run(
        "busybox", ["sh", "-c", "cat /data/in; echo x > /data/new"],
        volumes=[f"{src}:/data:ro"], capture_output=True, text=True,
    )
    assert r.returncode != 0
    assert r.stdout == "from the host\n"
    assert "Read-only file system" in r.stderr
    assert tree(src) == before
    assert mountinfo(out("cat /proc/self/mountinfo", volumes=[fastcontain.Mount(str(src), "/data", readonly=True)]))["/data"][1].startswith("ro")


def test_file_binds(tmp_path):
    f = tmp_path / "fastcontain-file"
    f.write_text("one file\n")
    assert out("cat /etc/probe.conf", volumes=[f"{f}:/etc/probe.conf"]) == "one file\n"
    sh("echo changed > /etc/probe.conf", volumes=[f"{f}:/etc/probe.conf"])
    assert f.read_text() == "changed\n"
    r = fastcontain.run(
        "busybox", ["sh", "-c", "echo again > /etc/probe.conf"],
        volumes=[f"{f}:/etc/probe.conf:ro"], capture_output=True, text=True,
    )
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert f.read_text() == "changed\n"


def test_bind_target_made_in_the_containers_layer(src, dir_image):
    before = tree(dir_image)
    assert out("cat /deep/new/place/in", image=str(dir_image), volumes=[f"{src}:/deep/new/place"]) == "from the host\n"
    assert tree(dir_image) == before


@pytest.fixture
def src_with_submount(src):
    sub = src / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "fc-test-submount", str(sub)], check=True)
    try:
        (sub / "below").write_text("on the submount\n")
        yield src
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=True)


def test_recursive_bind_carries_submounts(src_with_submount):
    script = "cat /data/sub/below 2>/dev/null || echo absent"
    assert out(script, volumes=[fastcontain.Mount(str(src_with_submount), "/data")]) == "on the submount\n"
    assert out(script, volumes=[fastcontain.Mount(str(src_with_submount), "/data", recursive=False)]) == "absent\n"


def test_env_is_exactly_what_was_given():
    r = out('echo "$GREETING"; env', env={"GREETING": "hello world", "EMPTY": ""})
    first, *env = r.splitlines()
    assert first == "hello world"
    assert "GREETING=hello world" in env and "EMPTY=" in env
    for key in os.environ:  # nothing of the host's environment leaks in
        if key not in ("PATH", "HOME", "TERM", "HOSTNAME", "PWD", "SHLVL"):
            assert not any(line.startswith(key + "=") for line in env), key


def test_workdir():
    assert out("pwd", workdir="/tmp") == "/tmp\n"
    assert out("pwd", workdir="/etc") == "/etc\n"


def test_user_uid_and_gid(tmp_path):
    shared = tmp_path / "fastcontain-owned"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert out("id -u; id -g; id -G; touch /w/made", user="1000:1000", volumes=[f"{shared}:/w"]) == "1000\n1000\n1000\n"
    st = os.stat(shared / "made")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_user_uid_only():
    assert out("id -u", user="4321") == "4321\n"


def test_user_by_name(dir_image):
    assert out("id -u; id -g", image=str(dir_image), user="nobody") == "65534\n65534\n"


def test_cpuset_cpus_affinity():
    assert out("grep Cpus_allowed_list /proc/self/status", cpuset_cpus=[0]).split() == ["Cpus_allowed_list:", "0"]
    if len(os.sched_getaffinity(0)) > 1 and 1 in os.sched_getaffinity(0):
        assert out("grep Cpus_allowed_list /proc/self/status", cpuset_cpus="1").split() == ["Cpus_allowed_list:", "1"]


def test_only_stdio_descriptors_are_open_inside(tmp_path):
    # An inheritable descriptor in the caller must not reach the container.
    fd = os.open(tmp_path, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        r = fastcontain.run("busybox", ["ls", "/proc/self/fd"], capture_output=True, text=True)
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    # 0, 1, 2 and the one ls opened to read the folder
    assert sorted(r.stdout.split(), key=int) == ["0", "1", "2", "3"]
    # and pid 1 itself holds only stdio
    assert sorted(out("ls /proc/1/fd; true").split(), key=int) == ["0", "1", "2"]
