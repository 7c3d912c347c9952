"""spec.compile: a Config and an Image become the dict _native.spawn takes (see _native.pyi)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastcontain import Config, ConfigError, Mount
from fastcontain.image import DEFAULT_PATH, Image
from fastcontain.spec import compile, merge_env, mount_spec, resolve_user
from fastcontain.state import Paths

SPEC_KEYS = {
    "argv", "env", "cwd", "rootfs", "overlay", "readonly_rootfs", "namespaces", "hostname", "default_mounts",
    "mounts", "uid", "gid", "groups", "umask", "stdio", "cpus", "cgroup_fd", "wait_for_start",
    # the security part (fastcontain.security.spec_part)
    "capabilities", "no_new_privileges", "seccomp", "masked_paths", "readonly_paths", "rlimits", "oom_score_adj",
    "init", "tty", "sysfs_rw", "device_nodes",
}
PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
alice:x:1000:1000:Alice:/home/alice:/bin/sh
svc:x:200:300::relative:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
alice:x:1000:
wheel:x:10:alice,bob
audio:x:29:bob,alice
svcgrp:x:300:
nogroup:x:65534:
"""


@pytest.fixture
def image(tmp_path: Path) -> Image:
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "passwd").write_text(PASSWD)
    (layer / "etc" / "group").write_text(GROUP)
    return Image(
        name="fake", layers=(str(layer), str(tmp_path / "base")), env=("PATH=/img/bin", "IMG=1", "LANG=C"),
        cmd=("sh", "-l"), workdir="/srv", mounts=(Mount("/usr", "/usr", readonly=True),),
    )


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(str(tmp_path / "root"), "0123456789abcdef")


def test_a_spec_has_exactly_the_documented_keys(image: Image, paths: Paths) -> None:
    spec = compile(Config("fake"), image, paths, (-1, -1, -1))
    assert set(spec) == SPEC_KEYS
    assert spec["overlay"] == {"lower": list(image.layers), "upper": paths.upper, "work": paths.work}
    assert spec["rootfs"] == paths.rootfs and paths.rootfs == f"{paths.root}/0123456789abcdef/rootfs"
    assert spec["default_mounts"] is True and spec["cgroup_fd"] is None and spec["umask"] == 0o022
    assert spec["stdio"] == [-1, -1, -1] and spec["wait_for_start"] is False


def test_argv_comes_from_the_command_or_the_image(image: Image, paths: Paths) -> None:
    assert compile(Config("fake", ["echo", "hi"]), image, paths, (0, 1, 2))["argv"] == ["echo", "hi"]
    assert compile(Config("fake"), image, paths, (0, 1, 2))["argv"] == ["sh", "-l"]
    bare = Image(name="bare", layers=image.layers)
    with pytest.raises(ConfigError) as info:
        compile(Config("bare"), bare, paths, (0, 1, 2))
    assert info.value.field == "command" and "'bare'" in info.value.reason


def test_env_is_image_env_overlaid_by_config_env(image: Image, paths: Paths) -> None:
    env = compile(Config("fake", env={"IMG": "2", "NEW": "x"}), image, paths, (0, 1, 2))["env"]
    assert env == ["PATH=/img/bin", "HOME=/root", "HOSTNAME=0123456789ab", "IMG=2", "LANG=C", "NEW=x"]
    env = compile(Config("fake", ["true"], env=["HOME=/h", "PATH=/p"]), Image("plain", layers=image.layers), paths, (0, 1, 2))
    assert "PATH=/p" in env["env"] and "HOME=/h" in env["env"] and len(env["env"]) == 3


def test_path_has_a_default(paths: Paths, tmp_path: Path) -> None:
    spec = compile(Config("x", ["true"]), Image("x", layers=(str(tmp_path),), env=()), paths, (0, 1, 2))
    assert f"PATH={DEFAULT_PATH}" in spec["env"] and "HOME=/" in spec["env"]


def test_merge_env_keeps_first_position_and_last_value() -> None:
    assert merge_env(["A=1", "B=2"], ["A=3"], ["C=", "B=x=y"]) == ["A=3", "B=x=y", "C="]


def test_cwd_hostname_and_namespaces(image: Image, paths: Paths) -> None:
    spec = compile(Config("fake"), image, paths, (0, 1, 2))
    assert spec["cwd"] == "/srv" and spec["hostname"] == "0123456789ab"  # like docker: the id's first 12
    assert spec["namespaces"] == ["mount", "pid", "uts", "ipc", "net", "cgroup"]
    spec = compile(Config("fake", workdir="/w", hostname="box", network="host"), image, paths, (0, 1, 2))
    assert spec["cwd"] == "/w" and spec["hostname"] == "box" and "HOSTNAME=box" in spec["env"]
    assert "net" not in spec["namespaces"]
    spec = compile(Config("fake", namespaces=("mount", "pid", "net")), image, paths, (0, 1, 2))
    assert spec["hostname"] is None and not any(e.startswith("HOSTNAME=") for e in spec["env"])
    assert compile(Config("x", ["true"]), Image("x", layers=image.layers, workdir=""), paths, (0, 1, 2))["cwd"] == "/"


def test_mounts_are_the_image_s_then_the_volumes(image: Image, paths: Paths, tmp_path: Path) -> None:
    volumes: list[Mount | str] = [f"{tmp_path}:/data:ro", Mount(str(tmp_path), "/flat", recursive=False, options=("nosuid",))]
    spec = compile(Config("fake", volumes=volumes), image, paths, (0, 1, 2))
    assert spec["mounts"] == [
        {"source": "/usr", "target": "/usr", "type": "bind", "options": ["rbind", "ro"]},
        {"source": str(tmp_path), "target": "/data", "type": "bind", "options": ["rbind", "ro"]},
        {"source": str(tmp_path), "target": "/flat", "type": "bind", "options": ["bind", "nosuid"]},
    ]
    tmpfs = mount_spec(Mount("tmpfs", "/scratch", type="tmpfs", options=("mode=1777",)))
    assert tmpfs == {"source": "tmpfs", "target": "/scratch", "type": "tmpfs", "options": ["mode=1777"]}


def test_cpus_stdio_readonly_and_wait_for_start(image: Image, paths: Paths) -> None:
    cpu = min(os.sched_getaffinity(0))
    spec = compile(Config("fake", cpuset_cpus=[cpu], readonly_rootfs=True), image, paths, (5, 6, 6), wait_for_start=True)
    assert spec["cpus"] == [cpu] and spec["stdio"] == [5, 6, 6]
    assert spec["readonly_rootfs"] is True and spec["wait_for_start"] is True


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, (0, 0, (), "/root")),
        ("root", (0, 0, (), "/root")),
        ("alice", (1000, 1000, (10, 29), "/home/alice")),
        ("alice:wheel", (1000, 10, (29,), "/home/alice")),
        ("1000", (1000, 1000, (10, 29), "/home/alice")),
        ("1000:5", (1000, 5, (10, 29), "/home/alice")),
        ("4242", (4242, 0, (), "/")),  # unknown numeric uid: gid 0, as runc
        ("4242:4243", (4242, 4243, (), "/")),
        ("svc", (200, 300, (), "/")),  # a relative home is not used
        ("nobody:nogroup", (65534, 65534, (), "/nonexistent")),
    ],
)
def test_users_resolve_from_the_image(image: Image, user: str | None, expected: tuple[object, ...]) -> None:
    u = resolve_user(user, image)
    assert (u.uid, u.gid, u.groups, u.home) == expected


def test_user_reaches_the_spec(image: Image, paths: Paths) -> None:
    spec = compile(Config("fake", user="alice"), image, paths, (0, 1, 2))
    assert (spec["uid"], spec["gid"], spec["groups"]) == (1000, 1000, [10, 29])
    assert "HOME=/home/alice" in spec["env"]


def test_the_image_user_is_the_default(image: Image, paths: Paths) -> None:
    img = Image("fake", layers=image.layers, cmd=("sh",), user="alice")
    assert compile(Config("fake"), img, paths, (0, 1, 2))["uid"] == 1000
    assert compile(Config("fake", user="0"), img, paths, (0, 1, 2))["uid"] == 0


@pytest.mark.parametrize(
    ("user", "in_reason"),
    [("bob", "no user 'bob' in the /etc/passwd of image 'fake'"), ("alice:staff", "no group 'staff'"), ("4294967295", "out of range"),
     ("1:4294967295", "out of range")],
)
def test_unknown_users_are_config_errors(image: Image, user: str, in_reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_user(user, image)
    assert (info.value.field, info.value.value) == ("user", user)
    assert in_reason in info.value.reason


def test_an_image_without_etc_passwd_accepts_only_numbers(tmp_path: Path) -> None:
    img = Image("empty", layers=(str(tmp_path),))
    assert resolve_user("7:8", img).groups == ()
    with pytest.raises(ConfigError):
        resolve_user("root", img)


def test_read_etc_prefers_an_etc_mount_then_the_top_layer(tmp_path: Path) -> None:
    top, low, host_etc = tmp_path / "top", tmp_path / "low", tmp_path / "hostetc"
    for d in (top / "etc", low / "etc", host_etc):
        d.mkdir(parents=True)
    (low / "etc" / "passwd").write_text("low\n")
    (low / "etc" / "group").write_text("lowgroup\n")
    (top / "etc" / "passwd").write_text("top\n")
    (host_etc / "passwd").write_text("mounted\n")
    img = Image("l", layers=(str(top), str(low)))
    assert img.read_etc("passwd") == "top\n" and img.read_etc("group") == "lowgroup\n"
    assert img.read_etc("shadow") is None
    mounted = Image("m", layers=(str(top),), mounts=(Mount(str(host_etc), "/etc", readonly=True),))
    assert mounted.read_etc("passwd") == "mounted\n" and mounted.read_etc("group") is None


def test_read_etc_does_not_follow_a_link_out_of_the_image(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/passwd")
    assert Image("l", layers=(str(tmp_path),)).read_etc("passwd") is None


def test_the_native_planner_accepts_a_compiled_spec(image: Image, paths: Paths, tmp_path: Path) -> None:
    native = pytest.importorskip("fastcontain._native", reason="the native module is not built")
    spec = compile(Config("fake", volumes=[f"{tmp_path}:/data:ro"]), image, paths, (0, 1, 2))
    table = native.plan_mounts(spec)
    targets = [t for _, t, *_ in table]
    assert any(t.endswith("/rootfs/usr") for t in targets) and any(t.endswith("/rootfs/data") for t in targets)
