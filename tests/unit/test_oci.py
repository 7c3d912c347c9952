"""config.json -> the native spec and the runtime's plan: what runc spec and crun spec write
translates, and every field fastcontain cannot honour is refused by name."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import shutil
from pathlib import Path
from typing import Any

import pytest

from fastcontain import oci, oci_cli
from fastcontain.oci import OciError


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def config() -> dict[str, Any]:
    return copy.deepcopy(oci_cli.default_spec())


def test_the_default_spec_translates(bundle: Path) -> None:
    plan = oci.translate(str(bundle), config())
    s = plan.spec
    assert s["argv"] == ["sh"] and s["cwd"] == "/" and s["rootfs"] == str(bundle / "rootfs")
    assert s["readonly_rootfs"] and s["overlay"] is None and s["wait_for_start"]
    assert s["namespaces"] == ["pid", "net", "ipc", "uts", "mount", "cgroup"]
    assert s["hostname"] == "fastcontain" and s["no_new_privileges"]
    assert s["capabilities"] == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert s["rlimits"] == [("RLIMIT_NOFILE", 1024, 1024)]
    # the native defaults stand in for /proc, /sys, /dev...; the cgroup mount is the host's cgroup2, read-only
    assert s["mounts"] == [{"source": "cgroup2", "target": "/sys/fs/cgroup", "type": "cgroup2",
                            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}]
    assert "/proc/kcore" in s["masked_paths"] and "/proc/sys" in s["readonly_paths"]
    assert plan.terminal


@pytest.mark.parametrize("tool", ["runc", "crun"])
def test_what_runc_and_crun_spec_write_translates(bundle: Path, tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    subprocess.run([tool, "spec"], cwd=bundle, check=True)
    plan = oci.translate(str(bundle), json.loads((bundle / "config.json").read_text()))
    assert plan.spec["argv"] == ["sh"] and "mount" in plan.spec["namespaces"]


@pytest.mark.parametrize("path, value, field", [
    (("linux", "uidMappings"), [{"containerID": 0, "hostID": 1000, "size": 1}], "linux.uidMappings"),
    (("linux", "timeOffsets"), {"monotonic": {"secs": 1}}, "linux.timeOffsets"),
    (("linux", "intelRdt"), {"closID": "x"}, "linux.intelRdt"),
    (("process", "selinuxLabel"), "system_u:x", "process.selinuxLabel"),
    (("process", "nosuch"), 1, "process.nosuch"),
    (("nosuch",), 1, "nosuch"),
    (("linux", "resources", "hugepageLimits"), [{"pageSize": "2MB", "limit": 1}], "linux.resources.hugepageLimits"),
    (("linux", "resources", "memory", "kernel"), 1 << 20, "linux.resources.memory.kernel"),
    (("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}, "linux.seccomp.listenerPath"),
    (("linux", "sysctl"), {"vm.swappiness": "1"}, "linux.sysctl.vm.swappiness"),
    (("linux", "cgroupsPath"), "system.slice:fc:x", "linux.cgroupsPath"),
    (("process", "capabilities", "effective"), ["CAP_KILL"], "process.capabilities.effective"),
    (("mounts",), [{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "mode=1"]}],
     "mounts[0].options"),
    (("mounts",), [{"destination": "/x", "type": "bind", "source": "/no/such", "options": ["rbind"]}],
     "mounts[0].source"),
])
def test_unsupported_fields_are_refused_by_name(bundle: Path, path: tuple[str, ...], value: Any, field: str) -> None:
    c = config()
    node = c
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(OciError) as info:
        oci.translate(str(bundle), c)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"config.json: {field}: ")


def test_namespaces_new_and_joined(bundle: Path) -> None:
    c = config()
    c["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"}]
    c["hostname"] = ""
    plan = oci.translate(str(bundle), c)
    assert plan.spec["namespaces"] == ["mount", "pid"] and plan.joins == [("net", "/proc/self/ns/net")]
    c["linux"]["namespaces"] = [{"type": "pid"}]
    with pytest.raises(OciError, match="a mount namespace is required"):
        oci.translate(str(bundle), c)
    c["linux"]["namespaces"] = [{"type": "mount"}, {"type": "user", "path": "/proc/self/ns/user"}]
    with pytest.raises(OciError, match="joining a user namespace by path is not supported"):
        oci.translate(str(bundle), c)
    c["linux"]["namespaces"] = [{"type": "mount"}]
    c["hostname"] = "h"
    with pytest.raises(OciError, match="hostname"):
        oci.translate(str(bundle), c)


def test_resources_become_cgroup_limits(bundle: Path) -> None:
    c = config()
    c["linux"]["resources"] = {"memory": {"limit": 64 << 20, "swap": 128 << 20}, "pids": {"limit": 20},
                               "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}}
    c["linux"]["cgroupsPath"] = "/fastcontain-test/x"
    plan = oci.translate(str(bundle), c)
    res = oci.limits(plan.resources)
    assert (res.memory, res.memory_swap, res.pids_limit, res.cpu_shares, res.cpuset_cpus) == (
        64 << 20, 128 << 20, 20, 512, "0")
    assert plan.cgroups_path == "fastcontain-test/x"


def test_process_fields(bundle: Path) -> None:
    c = config()
    c["process"].update(user={"uid": 1000, "gid": 100, "additionalGids": [5], "umask": 0o077},
                        env=["A=1"], cwd="/srv", oomScoreAdj=100, terminal=False,
                        capabilities={"bounding": ["CAP_KILL"]})
    s = oci.translate(str(bundle), c).spec
    assert (s["uid"], s["gid"], s["groups"], s["umask"], s["env"], s["cwd"], s["oom_score_adj"]) == (
        1000, 100, [5], 0o077, ["A=1"], "/srv", 100)
    c["process"]["args"] = []
    with pytest.raises(OciError, match="process.args"):
        oci.translate(str(bundle), c)


def test_hooks_and_devices(bundle: Path) -> None:
    c = config()
    c["hooks"] = {"createRuntime": [{"path": "/bin/true", "args": ["true", "x"], "timeout": 5}],
                  "poststop": [{"path": "/bin/true"}]}
    c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    plan = oci.translate(str(bundle), c)
    assert plan.hooks["createRuntime"] == [oci.Hook("/bin/true", ("true", "x"), (), 5)]
    assert plan.hooks["poststop"][0].args == ("/bin/true",)
    assert plan.devices[0]["path"] == "/dev/fuse"
    c["hooks"] = {"prestart": [{"path": "relative"}]}
    with pytest.raises(OciError, match=r"hooks.prestart\[0\].path"):
        oci.translate(str(bundle), c)


def test_the_cli_refuses_systemd_cgroups_and_parses_signals(capsys: pytest.CaptureFixture[str]) -> None:
    assert oci_cli.main(["--systemd-cgroup", "state", "x"]) == 1
    assert "--systemd-cgroup is not supported" in capsys.readouterr().err
    from fastcontain.cli_lifecycle import parse_signal  # the one parser both command lines use

    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    with pytest.raises(ValueError):
        parse_signal("NOPE")


def test_errors_go_to_the_log_as_json(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    assert oci_cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json", "state", "nosuch"]) == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nosuch does not exist" in entry["msg"] and entry["time"]


def test_spec_writes_a_bundle_config_and_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert oci_cli.main(["spec", "--bundle", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["sh"]
    assert oci_cli.main(["spec", "--bundle", str(tmp_path)]) == 1  # runc refuses to overwrite too
    capsys.readouterr()
    assert oci_cli.main(["features"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["ociVersionMax"] == "1.1.0" and "createRuntime" in f["hooks"] and not f["linux"]["cgroup"]["systemd"]
    assert set(f["hooks"]) == set(oci.HOOK_KINDS) and "user" in f["linux"]["namespaces"]
    # what translate accepts is what features names
    assert set(f["linux"]["namespaces"]) <= set(oci.NAMESPACES) - {"time"}


def test_spec_rootless_translates_to_a_user_namespace(open_bundle: Path) -> None:
    c = oci_cli.rootless_spec(config())
    plan = oci.translate(str(open_bundle), c)
    assert plan.spec["userns"]["uid_map"] == [(0, os.getuid(), 1)]
    assert "net" not in plan.spec["namespaces"] and "cgroup" not in plan.spec["namespaces"]


@pytest.fixture
def open_bundle() -> Any:
    """A bundle every uid may reach (pytest's tmp folders are 0700 root's)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="fastcontain-test-oci-"))
    d.chmod(0o755)
    (d / "rootfs").mkdir()
    yield d
    shutil.rmtree(d)


def _userns_config(**maps: Any) -> dict[str, Any]:
    c = config()
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = maps.get("uid", [{"containerID": 0, "hostID": 100000, "size": 65536}])
    c["linux"]["gidMappings"] = maps.get("gid", [{"containerID": 0, "hostID": 200000, "size": 65536}])
    return c


def test_uid_and_gid_mappings_become_the_native_userns(open_bundle: Path) -> None:
    bundle = open_bundle
    plan = oci.translate(str(bundle), _userns_config())
    assert plan.spec["userns"] == {"uid_map": [(0, 100000, 65536)], "gid_map": [(0, 200000, 65536)],
                                   "own": [], "traverse": []}
    assert "user" not in plan.spec["namespaces"]  # the native spec's userns makes it
    # no cgroup namespace of its own before start: the host's cgroup2 is bound read-only
    (m,) = plan.spec["mounts"]
    assert m["type"] == "bind" and m["options"][0] == "rbind" and m["options"][-1] == "ro"


@pytest.mark.parametrize("change, field, words", [
    ({"uid": []}, "linux.uidMappings", "needs both"),
    ({"gid": [{"containerID": 1, "hostID": 5, "size": 1}]}, "linux.gidMappings", "containerID 0"),
    ({"uid": [{"containerID": 0, "hostID": -1, "size": 1}]}, "linux.uidMappings[0].hostID", "an id"),
    ({"uid": [{"containerID": 0, "hostID": 1, "size": 0}]}, "linux.uidMappings[0].size", "positive"),
    ({"uid": [{"containerID": 0, "hostID": 1, "size": 1, "x": 1}]}, "linux.uidMappings[0].x", "unknown"),
])
def test_bad_mappings_are_named(open_bundle: Path, change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(OciError) as info:
        oci.translate(str(open_bundle), _userns_config(**change))
    assert info.value.field == field and words in str(info.value)


def test_mappings_need_a_user_namespace_and_a_reachable_rootfs(open_bundle: Path) -> None:
    bundle = open_bundle
    c = config()
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 1}]
    with pytest.raises(OciError, match="need a new user namespace"):
        oci.translate(str(bundle), c)
    bundle.chmod(0o700)
    with pytest.raises(OciError) as info:
        oci.translate(str(bundle), _userns_config())
    assert info.value.field == "root.path"
    assert f"host uid 100000, gid 200000) cannot reach {bundle}/rootfs: {bundle} has no search permission" in str(info.value)
    bundle.chmod(0o755)
    c = _userns_config()
    c["process"]["user"] = {"uid": 70000, "gid": 0}
    c["process"].pop("capabilities")
    with pytest.raises(OciError, match="70000 is not mapped"):
        oci.translate(str(bundle), c)
