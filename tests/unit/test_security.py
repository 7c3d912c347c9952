"""Capability arithmetic and seccomp profile compilation: no root, no container."""

from __future__ import annotations

import json

import pytest

from fastcontain import security
from fastcontain.errors import ConfigError


def test_the_default_set_is_dockers():
    assert set(security.capabilities()) == set(security.DEFAULT_CAPS) & security.host_bounding_set()


def test_drop_all_then_add_one():
    assert security.capabilities(cap_add=["net_admin"], cap_drop=["ALL"]) == ("CAP_NET_ADMIN",)


def test_privileged_is_the_hosts_bounding_set():
    assert set(security.capabilities(privileged=True)) == security.host_bounding_set()


def test_unknown_capability_is_an_error_naming_the_option():
    with pytest.raises(ConfigError) as e:
        security.capabilities(cap_add=["CAP_FLY"])
    assert e.value.field == "cap_add" and e.value.value == "CAP_FLY"


def test_a_capability_outside_the_hosts_bounding_set_is_refused_clearly():
    missing = sorted(set(security.ALL_CAPS) - security.host_bounding_set())
    if not missing:
        pytest.skip("this host's bounding set has every capability")
    with pytest.raises(ConfigError, match="bounding set"):
        security.capabilities(cap_add=[missing[0]])


def test_the_default_filter_is_compiled_once_per_capability_set():
    caps = frozenset(security.capabilities())
    assert security.seccomp_for(None, sorted(caps)) is security.seccomp_for("default", caps)
    assert security.seccomp_for("unconfined", caps) is None


def test_a_docker_profile_compiles_to_an_allow_list_and_errno_overrides(tmp_path):
    prof = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "write", "exit_group", "arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(prof))
    prog = security.compile_profile(str(p), frozenset())
    assert prog.skipped == ["arm_fadvise64_64"]
    assert len(prog.sizes) == 1  # the x32 guard, the allow list and the ENOSYS filter merged into one program


@pytest.mark.parametrize(
    "content,reason",
    [("{not json", "not valid JSON"), ('{"syscalls": []}', "no defaultAction"),
     ('{"defaultAction": "SCMP_ACT_DANCE"}', "unknown action"),
     ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AARCH64"]}', "x86_64")],
)
def test_bad_profiles_name_the_file_and_reason(tmp_path, content, reason):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(ConfigError, match=reason) as e:
        security.compile_profile(str(p), frozenset())
    assert e.value.field == "security_opt.seccomp"


# -- options (Config fields) ------------------------------------------------------------

import os  # noqa: E402

from fastcontain import Config  # noqa: E402
from fastcontain import _native  # noqa: E402
from fastcontain.security import Device, SecurityOpt, Ulimit  # noqa: E402


def test_the_python_capability_table_is_the_native_one():
    assert security.ALL_CAPS == tuple(_native.CAPABILITIES)


def test_add_all_then_drop_keeps_the_drop_as_docker_does():
    caps = security.capabilities(cap_add=["ALL"], cap_drop=["NET_RAW"])
    assert "CAP_NET_RAW" not in caps and "CAP_SYS_ADMIN" in caps
    assert "CAP_KILL" not in security.capabilities(cap_drop=["kill"])
    assert set(security.capabilities(privileged=True, cap_drop=["SYS_ADMIN"])) == security.host_bounding_set()


def test_the_default_filter_checks_namespace_flags():
    filters = security._default_filters(frozenset(security.DEFAULT_CAPS))
    rules = filters[0][4]
    assert filters[0][:4] == ("allow", 0, "errno", 1)
    assert [0, "masked_eq", 0x10000000, 0x10000000] in [list(r[0]) for r in rules["unshare"]]
    assert [0, "masked_eq", 0x80, 0x80] in [list(r[0]) for r in rules["unshare"]], "CLONE_NEWTIME"
    assert "mknod" not in rules and "mknodat" not in rules, "as docker: the devices cgroup refuses opening the node"
    for name in ("mount", "keyctl", "bpf", "perf_event_open", "open_by_handle_at", "kexec_load", "init_module",
                 "reboot", "settimeofday", "clock_settime", "setns", "pivot_root", "sethostname"):
        assert rules[name] == [], name
    assert "ptrace" not in rules, "as docker since 4.8: the kernel confines it"
    assert filters[1] == ("allow", 0, "errno", 38, {"clone3": []})
    # a capability lifts what it makes legitimate
    admin = security._default_filters(frozenset(security.DEFAULT_CAPS) | {"CAP_SYS_ADMIN"})
    assert "mount" not in admin[0][4] and "unshare" not in admin[0][4] and len(admin) == 1
    assert "bpf" not in security._default_filters(frozenset({"CAP_BPF"}))[0][4]


@pytest.mark.parametrize(
    "text,expected",
    [("nofile=1024:2048", Ulimit("nofile", 1024, 2048)), ("NPROC=50", Ulimit("nproc", 50, 50)),
     ("core=0:unlimited", Ulimit("core", 0, security.RLIM_INFINITY))],
)
def test_ulimits_parse(text, expected):
    assert Ulimit.parse("ulimits[0]", text) == expected


@pytest.mark.parametrize("text,reason", [("nofile", "NAME=SOFT"), ("files=1", "not a ulimit"),
                                         ("nofile=9:3", "soft limit is above"), ("nofile=x", "not a number")])
def test_bad_ulimits_are_named(text, reason):
    with pytest.raises(ConfigError, match=reason) as e:
        Config("busybox", ulimits=[text])
    assert e.value.field == "ulimits[0]"


def test_devices_parse_and_must_be_device_nodes():
    assert Device.parse("d", "/dev/null") == Device("/dev/null", "/dev/null", "rwm")
    assert Device.parse("d", "/dev/null:/dev/mynull") == Device("/dev/null", "/dev/mynull", "rwm")
    assert Device.parse("d", "/dev/null:/dev/n:mrw").container == "/dev/n"
    with pytest.raises(ConfigError, match="not a character or block device"):
        Config("busybox", devices=["/etc/passwd"])
    assert Device.parse("d", "/dev/null:r") == Device("/dev/null", "/dev/null", "r")
    for bad in ("/dev/null:/dev/x:rwx", "/dev/null:rx"):
        with pytest.raises(ConfigError, match="a combination of r, w and m"):
            Device.parse("d", bad)
    assert Config("busybox", devices=["/dev/null:/dev/x:r"]).resources.device_policy.allows("c", 1, 3, "w"), \
        "the defaults already allow /dev/null: a narrower --device adds, as in docker"
    with pytest.raises(ConfigError, match="No such file"):
        Config("busybox", devices=["/dev/no-such-device-fastcontain"])


def test_security_opt(tmp_path):
    assert SecurityOpt.parse(["no-new-privileges=false"]) == SecurityOpt(False, None)
    assert SecurityOpt.parse(["no-new-privileges", "seccomp=unconfined"]) == SecurityOpt(True, "unconfined")
    p = tmp_path / "p.json"
    p.write_text("{}")
    assert SecurityOpt.parse([f"seccomp:{p}"]).seccomp == str(p)
    for bad, reason in (("seccomp=/nope/x.json", "no such profile"), ("apparmor=x", "not supported"),
                        ("label=disable", "not supported"), ("colour=red", "unknown security option"),
                        ("no-new-privileges=maybe", "true or false")):
        with pytest.raises(ConfigError, match=reason):
            Config("busybox", security_opt=[bad])


def test_tmpfs_mounts_default_to_nosuid_nodev_noexec():
    (m,) = Config("busybox", tmpfs=["/run:size=1m,exec"]).tmpfs
    assert (m.source, m.target, m.type) == ("tmpfs", "/run", "tmpfs")
    assert m.options == ("nosuid", "nodev", "noexec", "size=1m", "exec")  # later wins, as mount(8)
    assert Config("busybox", tmpfs={"/a": ""}).tmpfs[0].options == ("nosuid", "nodev", "noexec")
    with pytest.raises(ConfigError) as e:
        Config("busybox", tmpfs=["relative"])
    assert e.value.field == "tmpfs"


def test_oom_score_adj_range_and_privilege():
    with pytest.raises(ConfigError, match="-1000 to 1000"):
        Config("busybox", oom_score_adj=5000)
    assert Config("busybox", oom_score_adj=500).oom_score_adj == 500
    if "CAP_SYS_RESOURCE" not in security.effective_caps():
        with pytest.raises(ConfigError, match="CAP_SYS_RESOURCE"):
            Config("busybox", oom_score_adj=-1000)


def test_the_security_part_of_the_spec_default_and_privileged(tmp_path):
    from fastcontain.image import Image

    layer = tmp_path / "l"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "group").write_text("root:x:0:\nvideo:x:44:\n")
    image = Image(name="t", layers=(str(layer),))
    part = security.spec_part(Config("t", group_add=["video", "7"], devices=["/dev/null:/dev/x"]), image)
    assert part["capabilities"] == list(security.capabilities())
    assert part["no_new_privileges"] is True and part["seccomp"] is security.default_seccomp(
        frozenset(security.capabilities()))
    assert part["masked_paths"] == list(security.MASKED_PATHS) and "/proc/sys" in part["readonly_paths"]
    assert part["groups"] == [44, 7]
    assert part["mounts"] == [{"source": "/dev/null", "target": "/dev/x", "type": "bind", "options": ["bind"]}]
    priv = security.spec_part(Config("t", privileged=True), image)
    assert priv["seccomp"] is None and priv["masked_paths"] == [] and priv["no_new_privileges"] is False
    assert set(priv["capabilities"]) == security.host_bounding_set()
    with pytest.raises(ConfigError, match="no group 'audio'"):
        security.spec_part(Config("t", group_add=["audio"]), image)
    nnp = security.spec_part(Config("t", privileged=True, security_opt=["no-new-privileges"]), image)
    assert nnp["no_new_privileges"] is True
    assert os.path.exists("/dev/null")


def test_userns_values(tmp_path, monkeypatch):
    f = tmp_path / "subuid"
    f.write_text("other:1:2\nfastcontain:500000:100000\nfastcontain:900000:10\n")
    monkeypatch.setenv(security.SUBUID_ENV, str(f))
    monkeypatch.setenv(security.SUBGID_ENV, str(f))
    monkeypatch.setattr(security, "check_userns_support", lambda: None)  # the host's policy: not this test's
    auto = security.Userns.parse("auto")
    assert auto == security.Userns(((0, 500000, 65536),), ((0, 500000, 65536),))
    assert security.Userns.parse("900000:10").uid_map == ((0, 900000, 10),)
    assert security.Userns.parse("host") is None and security.Userns.parse(None) is None
    assert auto.shift(0, 65534) == (500000, 565534) and auto.shift(70000, 1) == (70000, 500001)
    for bad, reason in (("0:900000:11", "outside the ranges"), ("x", "expected auto"), ("1:500000:5", "must map 0")):
        with pytest.raises(ConfigError, match=reason):
            Config("busybox", userns=bad)
