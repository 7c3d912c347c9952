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
    assert len(prog.sizes) == 2  # the allow list, then the ENOSYS filter


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
