"""Failures name what failed: the step, the path or field, the errno. After each one
the leak check proves nothing was left behind."""

from __future__ import annotations

import errno

import pytest

import fastcontain
from fastcontain.errors import ConfigError, FastcontainError, ImageError, SpawnError

pytestmark = pytest.mark.privileged


def test_missing_command_by_path():
    with pytest.raises(SpawnError) as info:
        fastcontain.run("busybox", ["/bin/nosuch"])
    e = info.value
    assert (e.step, e.errno, e.path) == ("execve", errno.ENOENT, "/bin/nosuch")
    assert "execve" in str(e) and "/bin/nosuch" in str(e) and "ENOENT" in str(e)
    assert isinstance(e, OSError)


def test_missing_command_by_name():
    with pytest.raises(SpawnError) as info:
        fastcontain.run("busybox", ["nosuch-command"])
    e = info.value
    assert (e.step, e.errno) == ("execve", errno.ENOENT)
    assert "nosuch-command" in str(e)


def test_command_not_executable():
    with pytest.raises(SpawnError) as info:
        fastcontain.run("busybox", ["/etc/passwd"])
    e = info.value
    assert (e.step, e.errno, e.path) == ("execve", errno.EACCES, "/etc/passwd")


def test_missing_bind_source_names_the_path():
    source = "/nonexistent/fastcontain-src"
    with pytest.raises((ConfigError, SpawnError)) as info:
        fastcontain.run("busybox", ["true"], volumes=[f"{source}:/data"])
    assert source in str(info.value)


def test_workdir_that_is_not_a_directory():
    with pytest.raises(SpawnError) as info:
        fastcontain.run("busybox", ["true"], workdir="/etc/passwd")
    e = info.value
    assert (e.step, e.errno) == ("chdir", errno.ENOTDIR)
    assert "/etc/passwd" in str(e)


@pytest.mark.parametrize(
    "field, value",
    [
        ("workdir", "relative/dir"),
        ("env", {"BAD=KEY": "x"}),
        ("hostname", "x" * 65),
        ("volumes", ["no-colon"]),
        ("volumes", ["/tmp:relative-target"]),
        ("namespaces", ("mount", "nosuch")),
        ("network", "container:"),
        ("ports", ["80"]),
        ("user", "-5"),
    ],
)
def test_bad_option_names_the_field_and_value(field, value):
    with pytest.raises(ConfigError) as info:
        fastcontain.run("busybox", ["true"], **{field: value})
    # the field as the user wrote it, maybe with detail: "env key", "volumes[0]"
    assert info.value.field.startswith(field), info.value.field
    assert info.value.field in str(info.value)


def test_bad_option_in_create_makes_nothing():
    with pytest.raises(ConfigError) as info:
        fastcontain.Container.create("busybox", ["true"], workdir="relative")
    assert info.value.field == "workdir" and info.value.value == "relative"


def test_impossible_cpu_set():
    with pytest.raises(FastcontainError) as info:
        fastcontain.run("busybox", ["true"], cpuset_cpus=[4095])
    assert "cpuset_cpus" in str(info.value)


def test_unknown_image_name():
    with pytest.raises(ImageError) as info:
        fastcontain.run("fc-no-such-image", ["true"])
    assert "fc-no-such-image" in str(info.value)


def test_missing_image_directory():
    with pytest.raises(ImageError) as info:
        fastcontain.run("/nonexistent/fastcontain-image", ["true"])
    assert "/nonexistent/fastcontain-image" in str(info.value)


def test_a_failure_does_not_spoil_the_next_run():
    with pytest.raises(SpawnError):
        fastcontain.run("busybox", ["/bin/nosuch"])
    assert fastcontain.run("busybox", ["true"]).returncode == 0
