"""Config and Mount: every bad option fails naming its field and value; good ones are normalized."""

from __future__ import annotations

import dataclasses
import os

import pytest

from fastcontain import Config, ConfigError, Mount
from fastcontain.config import NAMESPACES, format_cpu_list, online_cpus, parse_cpu_list


def error(**fields: object) -> ConfigError:
    fields.setdefault("image", "busybox")
    with pytest.raises(ConfigError) as info:
        Config(**fields)  # type: ignore[arg-type]
    return info.value


def test_defaults_are_normalized() -> None:
    c = Config("busybox")
    assert c.command is None
    assert c.env == () and c.volumes == ()
    assert c.namespaces == NAMESPACES
    assert c.network == "none" and c.readonly_rootfs is False and c.cpus is None


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config("busybox").workdir = "/x"  # type: ignore[misc]


def test_command_sequence_becomes_tuple_and_string_is_split_like_a_shell() -> None:
    assert Config("busybox", ["echo", "a b"]).command == ("echo", "a b")
    assert Config("busybox", "sh -c 'echo a b'").command == ("sh", "-c", "echo a b")
    assert Config("busybox", ["printf", ""]).command == ("printf", "")


@pytest.mark.parametrize(
    ("command", "field"),
    [([], "command"), ("", "command"), (["echo", 1], "command[1]"), ([""], "command[0]"), (["a\0b"], "command[0]"),
     (b"ls", "command"), ("echo 'unclosed", "command")],
)
def test_bad_command_names_the_field(command: object, field: str) -> None:
    assert error(command=command).field == field


def test_env_mapping_and_sequence_become_key_value_tuples() -> None:
    assert Config("busybox", env={"A": "1", "B": ""}).env == ("A=1", "B=")
    assert Config("busybox", env=["A=1", "C=x=y"]).env == ("A=1", "C=x=y")


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"A=B": "1"}, "env key", "A=B"),
        ({"A\0": "1"}, "env key", "A\0"),
        ({"": "1"}, "env key", ""),
        ({"A": "x\0"}, "env['A']", "x\0"),
        ({"A": 1}, "env['A']", 1),
        (["NOEQUALS"], "env", "NOEQUALS"),
        (["=value"], "env", "=value"),
        (["A=\0"], "env", "A=\0"),
        ("A=1", "env", "A=1"),
    ],
)
def test_bad_env_names_field_and_value(env: object, field: str, value: object) -> None:
    e = error(env=env)
    assert (e.field, e.value) == (field, value)
    assert field in str(e) and repr(value) in str(e)


@pytest.mark.parametrize("workdir", ["relative", "", "/a/../b", "/a\0"])
def test_bad_workdir(workdir: str) -> None:
    e = error(workdir=workdir)
    assert (e.field, e.value) == ("workdir", workdir)


@pytest.mark.parametrize("hostname", ["box", "a.b-c", "x" * 63, "a" * 30 + "." + "b" * 33])
def test_good_hostnames(hostname: str) -> None:
    assert Config("busybox", hostname=hostname).hostname == hostname


@pytest.mark.parametrize("hostname", ["", "-a", "a-", "a_b", "a..b", "x" * 64, "a" * 32 + "." + "b" * 32, "é"])
def test_bad_hostnames(hostname: str) -> None:
    e = error(hostname=hostname)
    assert (e.field, e.value) == ("hostname", hostname)


def test_hostname_needs_uts() -> None:
    e = error(hostname="box", namespaces=("mount", "pid", "net"))
    assert e.field == "hostname" and "uts" in e.reason


@pytest.mark.parametrize("user", ["root", "1000", "1000:1000", "nobody:nogroup", "www-data", "svc.x:grp_1"])
def test_good_users(user: str) -> None:
    assert Config("busybox", user=user).user == user


@pytest.mark.parametrize("user", ["", "a:b:c", ":1", "1:", "a b", "-x", "a\0"])
def test_bad_users(user: str) -> None:
    assert (error(user=user).field, error(user=user).value) == ("user", user)


def test_volumes_strings_are_parsed_and_mounts_kept(tmp_path: object) -> None:
    m = Mount(str(tmp_path), "/data", readonly=True)
    c = Config("busybox", volumes=[f"{tmp_path}:/a", m, f"{tmp_path}:/b:ro"])
    assert c.volumes == (Mount(str(tmp_path), "/a"), m, Mount(str(tmp_path), "/b", readonly=True))


def test_volume_errors_name_the_index() -> None:
    e = error(volumes=["/tmp:/ok", "relative:/x"])
    assert e.field == "volumes[1]" and e.value == "relative:/x" and "'relative'" in e.reason
    e = error(volumes=["/nonexistent-fastcontain-src:/x"])
    assert (e.field, e.value) == ("volumes[0].source", "/nonexistent-fastcontain-src")
    assert error(volumes=[42]).field == "volumes[0]"
    assert error(volumes="/tmp:/x").field == "volumes"


@pytest.mark.parametrize("name", ["a", "web_1", "x.y-z", "0abc"])
def test_good_names(name: str) -> None:
    assert Config("busybox", name=name).name == name


@pytest.mark.parametrize("name", ["", "-a", "_a", ".a", "a b", "a/b", "a" * 129])
def test_bad_names(name: str) -> None:
    e = error(name=name)
    assert (e.field, e.value) == ("name", name)


def test_cpuset_cpus_are_checked_against_online_cpus_and_normalized() -> None:
    allowed = sorted(online_cpus())
    assert allowed, "this process may run on some CPU"
    c = Config("busybox", cpuset_cpus=[allowed[-1], allowed[0], allowed[0]])
    assert c.cpuset_cpus == format_cpu_list({allowed[0], allowed[-1]})
    assert c.resources.cpu_set == tuple(sorted({allowed[0], allowed[-1]}))
    assert Config("busybox", cpuset_cpus=f"{allowed[0]}").cpuset_cpus == str(allowed[0])
    beyond = max(allowed) + 1
    e = error(cpuset_cpus=[allowed[0], beyond])
    assert e.field == "cpuset_cpus" and format_cpu_list(online_cpus()) in e.reason and str(beyond) in e.reason
    for bad in ([], [True], ["0"], [-1], "0-", "x"):
        assert error(cpuset_cpus=bad).field == "cpuset_cpus"


def test_cpus_is_dockers_quota_and_limits_are_validated_in_config() -> None:
    c = Config("busybox", cpus=0.5, memory="32m", pids_limit=10)
    assert (c.cpus, c.memory, c.pids_limit) == (0.5, 32 << 20, 10)
    assert c.resources.quota() == (50000, 100000) and not c.resources.empty
    assert Config("busybox").resources.empty
    assert error(cpus=[0]).field == "cpus"  # the old affinity list is cpuset_cpus now
    assert error(cpus=0.001).field == "cpus"
    assert error(memory="lots").field == "memory"
    assert error(memory="64m", memory_reservation="128m").field == "memory_reservation"


def test_online_cpus_is_within_affinity() -> None:
    assert online_cpus() <= frozenset(os.sched_getaffinity(0))


def test_cpu_list_format_round_trips() -> None:
    assert parse_cpu_list("0-3,6,8-9\n") == frozenset({0, 1, 2, 3, 6, 8, 9})
    assert format_cpu_list([9, 0, 1, 2, 3, 6, 8]) == "0-3,6,8-9"
    for bad in ("", "a", "3-1", "-1"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)


def test_namespaces_are_checked_and_put_in_canonical_order() -> None:
    assert Config("busybox", namespaces=["net", "mount", "pid"]).namespaces == ("mount", "pid", "net")
    e = error(namespaces=["pid", "net"])
    assert e.field == "namespaces" and "'mount'" in e.reason
    e = error(namespaces=["mount", "time"])
    assert (e.field, e.value) == ("namespaces", "time")
    e = error(namespaces=["mount", "user"])
    assert (e.field, e.value) == ("namespaces", "user") and "userns=" in e.reason
    assert error(namespaces="mount").field == "namespaces"


def test_network_modes_and_their_options() -> None:
    assert "net" not in Config("busybox", network="host").namespaces
    assert "net" not in Config("busybox", network="container:web").namespaces
    assert "net" in Config("busybox").namespaces and "net" in Config("busybox", network="bridge").namespaces
    e = error(network="container:")
    assert (e.field, e.value) == ("network", "container:") and "container:NAME" in e.reason
    e = error(network="none", namespaces=("mount", "pid"))
    assert e.field == "network" and "'net'" in e.reason
    c = Config("busybox", network="backend", ports=["8080:80", "127.0.0.1:53:53/udp"], ip="10.1.0.9",
               dns=["10.0.0.53"], egress=["10.1.0.0/24", "db", "10.2.0.7"])
    assert [str(p) for p in c.ports] == ["8080:80/tcp", "127.0.0.1:53:53/udp"]
    assert c.egress == ("10.1.0.0/24", "db", "10.2.0.7/32") and c.ip == "10.1.0.9" and c.dns == ("10.0.0.53",)
    assert error(ports=["8080:80"]).field == "ports"  # network none: nothing to publish on
    assert error(network="host", egress=[]).field == "egress"
    for bad, field in ((["80"], "ports[0]"), (["x:80"], "ports[0]"), (["1:70000"], "ports[0]"),
                       (["1:2/sctp"], "ports[0]"), (["1.2.3:1:2"], "ports[0]")):
        assert error(network="b", ports=bad).field == field
    assert error(network="b", ip="10.1.0").field == "ip"
    assert error(network="b", dns=["localhost"]).field == "dns[0]"
    assert error(network="b", egress="10.0.0.0/8").field == "egress"
    assert error(network="b", egress=["-x"]).field == "egress[0]"


def test_other_fields_are_type_checked() -> None:
    assert error(readonly_rootfs="yes").field == "readonly_rootfs"
    assert error(image="").field == "image"
    assert error(image=None).field == "image"


# --- Mount ----------------------------------------------------------------


def test_mount_parse_docker_syntax() -> None:
    assert Mount.parse("/src:/dst") == Mount("/src", "/dst", readonly=False)
    assert Mount.parse("/src:/dst:ro") == Mount("/src", "/dst", readonly=True)
    assert Mount.parse("/src:/dst:rw") == Mount("/src", "/dst", readonly=False)
    assert Mount.parse("/src:/dst:ro,nosuid,noexec") == Mount("/src", "/dst", True, options=("nosuid", "noexec"))
    assert Mount.parse("/src:/dst").recursive is True and Mount.parse("/src:/dst").type == "bind"


@pytest.mark.parametrize(
    ("spec", "in_reason"),
    [
        ("rel/dir:/dst", "'rel/dir'"),
        ("data:/dst", "'data'"),
        ("/only", "SRC:DST"),
        ("/a:/b:ro:x", "SRC:DST"),
        (":/b", "SRC:DST"),
        ("/a:", "SRC:DST"),
        ("/a:/b:bogus", "'bogus'"),
        ("/a:relative", "absolute path"),
        ("/a:/", "root"),
        ("/a:/x/../y", "'..'"),
    ],
)
def test_mount_parse_errors_name_the_volume(spec: str, in_reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        Mount.parse(spec)
    assert (info.value.field, info.value.value) == ("volume", spec)
    assert in_reason in info.value.reason


def test_mount_fields_are_validated() -> None:
    assert Mount("tmpfs", "/scratch", type="tmpfs", options=["mode=1777"]).options == ("mode=1777",)
    for kwargs, field in [
        (dict(source="rel", target="/x"), "mount.source"),
        (dict(source="/a", target="x"), "mount.target"),
        (dict(source="/a", target="/x", readonly="yes"), "mount.readonly"),
        (dict(source="/a", target="/x", options="ro"), "mount.options"),
        (dict(source="/a", target="/x", options=["ro,nosuid"]), "mount.options"),
        (dict(source="/a", target="/x", type=""), "mount.type"),
    ]:
        with pytest.raises(ConfigError) as info:
            Mount(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field, kwargs


def test_config_error_is_a_value_error_with_field_value_reason() -> None:
    e = error(workdir="rel")
    assert isinstance(e, ValueError)
    assert str(e) == "invalid workdir='rel': must be an absolute path inside the container"
