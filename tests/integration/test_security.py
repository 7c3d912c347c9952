"""The security defaults every container gets, and the options that change them."""

from __future__ import annotations

import os

import pytest

from fastcontain import security

from .util import out

pytestmark = pytest.mark.privileged


def status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def caps_of(mask: str) -> set[str]:
    m = int(mask, 16)
    return {c for i, c in enumerate(security.ALL_CAPS) if m >> i & 1}


def test_defaults_are_dockers_caps_no_new_privs_and_a_filter():
    s = status(out("cat /proc/self/status"))
    want = set(security.capabilities())
    for key in ("CapBnd", "CapPrm", "CapEff"):
        assert caps_of(s[key]) == want, key
    assert caps_of(s["CapInh"]) == set() and caps_of(s["CapAmb"]) == set()
    assert s["NoNewPrivs"] == "1" and s["Seccomp"] == "2"
    assert int(s["Seccomp_filters"]) == len(security.default_seccomp(frozenset(want)).sizes)


def test_masked_and_readonly_paths():
    text = out("for p in /proc/keys /proc/timer_list; do [ -c $p ] && echo $p masked; done; "
               "ls -A /sys/firmware | wc -l; (printf box > /proc/sys/kernel/hostname) 2>&1; grep ' /proc/sys ' /proc/self/mountinfo")
    assert "/proc/keys masked" in text and "/proc/timer_list masked" in text
    assert "Read-only file system" in text
    assert text.splitlines()[-1].split()[5].split(",")[0] == "ro"


def test_masked_directories_are_empty_and_read_only_and_proc_stays_writable():
    # the second masked directory is a bind of the first's empty tmpfs; the read-only paths
    # are bound while /proc is read-only, which it is not afterwards
    dirs = [d for d in ("/proc/acpi", "/sys/firmware", "/proc/scsi", "/proc/asound") if os.path.isdir(d)]
    script = "; ".join(f"ls -A {d} | wc -l; (mkdir {d}/x) 2>&1" for d in dirs)
    text = out(f"{script}; grep -E ' /proc | /proc/(bus|fs|irq|sys) ' /proc/self/mountinfo")
    lines = text.splitlines()
    for i, d in enumerate(dirs):
        assert lines[2 * i] == "0", (d, text)
        assert "Read-only file system" in lines[2 * i + 1], (d, text)
    flags = {line.split()[4]: line.split()[5].split(",")[0] for line in lines[2 * len(dirs):]}
    assert flags.pop("/proc") == "rw", text
    assert flags and set(flags.values()) == {"ro"}, text


def test_a_non_root_user_has_no_effective_capabilities_but_keeps_the_bounding_set():
    s = status(out("cat /proc/self/status", user="nobody"))
    assert caps_of(s["CapEff"]) == set() and caps_of(s["CapPrm"]) == set()
    assert caps_of(s["CapBnd"]) == set(security.capabilities())


def test_cap_add_drop_and_privileged():
    s = status(out("cat /proc/self/status", cap_add=["SYS_ADMIN"], cap_drop=["NET_RAW", "CHOWN"]))
    assert caps_of(s["CapEff"]) == set(security.capabilities()) - {"CAP_NET_RAW", "CAP_CHOWN"} | {"CAP_SYS_ADMIN"}
    s = status(out("cat /proc/self/status", privileged=True))
    assert caps_of(s["CapEff"]) == security.host_bounding_set() and s["Seccomp"] == "0" and s["NoNewPrivs"] == "0"
    assert "masked" not in out("[ -c /proc/keys ] && echo masked; true", privileged=True)


def test_security_opt_lifts_no_new_privs_and_seccomp():
    s = status(out("cat /proc/self/status", security_opt=["no-new-privileges=false"]))
    assert s["NoNewPrivs"] == "0" and s["Seccomp"] == "2", "the filter is loaded while CAP_SYS_ADMIN is held"
    s = status(out("cat /proc/self/status", security_opt=["seccomp=unconfined"]))
    assert s["Seccomp"] == "0" and s["NoNewPrivs"] == "1"


def test_a_profile_file_is_applied(tmp_path):
    import json

    p = tmp_path / "deny-mkdir.json"
    p.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    text = out("mkdir /tmp/d 2>&1; grep Seccomp_filters /proc/self/status", security_opt=[f"seccomp={p}"])
    assert "Permission denied" in text


def test_readonly_rootfs_with_tmpfs_ulimits_groups_oom_and_a_device():
    text = out(
        "touch /x 2>&1; touch /run/ok && echo run-writable; grep ' /run ' /proc/self/mountinfo; "
        "ulimit -Sn; ulimit -Hn; id -G; cat /proc/self/oom_score_adj; ls -l /dev/mynull; echo hi > /dev/mynull && echo dev-ok",
        readonly_rootfs=True, tmpfs=["/run:size=1m"], ulimits=["nofile=100:200"], group_add=["nogroup", "7"],
        oom_score_adj=300, devices=["/dev/null:/dev/mynull"],
    )
    lines = text.splitlines()
    assert "Read-only file system" in lines[0] and lines[1] == "run-writable"
    assert "nosuid" in lines[2] and "nodev" in lines[2] and "noexec" in lines[2]
    assert lines[3:5] == ["100", "200"] and set(lines[5].split()) == {"0", "65534", "7"} and lines[6] == "300"
    assert lines[7].startswith("c") and lines[8] == "dev-ok"


def test_device_nodes_can_be_made_but_not_opened_and_fifos_work():
    # as docker: mknod is allowed (CAP_MKNOD), opening the node is what the devices cgroup refuses
    text = out("mknod /dev/mem c 1 1 && cat /dev/mem 2>&1; mknod /dev/sda b 8 0 && cat /dev/sda 2>&1; "
               "mknod /tmp/p p && echo fifo")
    assert text.count("Operation not permitted") == 2 and text.endswith("fifo\n"), text
