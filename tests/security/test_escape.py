"""The escape-attempt suite: escape.c, run inside a default container, tries the
well-known ways out one by one; each must be refused, and the errno the container
saw is named. The same run with privileged=True shows which of them open up, so
the defaults are proven to be what closes them.

Every attempt is harmless to the host even when privileged (see escape.c): calls
that would act get arguments a permitted call rejects (EINVAL, EFAULT), and
those are told apart from the refusals (EPERM, EACCES, ENOSYS, EROFS)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastcontain

pytestmark = pytest.mark.privileged
HERE = Path(__file__).parent
LIMIT = 120

# What the default container must see. "absent" is allowed only where the host itself
# lacks the file (checked below), never as a stand-in for a refusal.
REFUSED: dict[str, str] = {
    "mount_tmpfs": "EPERM",
    "umount_mask": "EPERM",
    "remount_proc_sys_rw": "EPERM",
    "pivot_root": "EPERM",
    "unshare_mount_ns": "EPERM",
    "chroot_breakout": "confined",  # CAP_SYS_CHROOT is docker's default; the climb ends at the container's root
    "mknod_char_mem": "EPERM",  # made (CAP_MKNOD, as docker), then its open refused by the devices cgroup
    "mknod_block_disk": "EPERM",
    "open_leaked_device": "EPERM",  # the host's /dev/kmsg bound in without --device: the devices cgroup
    "read_kcore": "masked",
    "read_keys": "masked",
    "read_timer_list": "masked",
    "read_sys_firmware": "masked",
    "write_sysrq_trigger": "EROFS",
    "write_core_pattern": "EROFS",
    "write_sys_power_state": "EROFS",
    "init_module": "EPERM",
    "finit_module": "EPERM",
    "kexec_load": "EPERM",
    "ptrace_host_process": "ESRCH",  # host processes are not in the container's pid namespace
    "keyctl": "EPERM",
    "add_key": "EPERM",
    "bpf": "EPERM",
    "perf_event_open": "EPERM",
    "unshare_user_ns": "EPERM",
    "clone_user_ns": "EPERM",
    "clone3": "ENOSYS",  # its flags cannot be checked: libc falls back to clone, which is
    "open_by_handle_at": "EPERM",
    "name_to_handle_at": "EPERM",
    "raw_socket": "confined",  # CAP_NET_RAW is docker's default; the netns has only lo
    "vsock_socket": "EPERM",
    "sethostname": "EPERM",
    "setns_leaked_fd": "EPERM",
    "leaked_fd": "confined",
    "proc1_root": "confined",
    "write_readonly_bind": "EROFS",
    "remount_readonly_bind_rw": "EPERM",
    "settimeofday": "EPERM",
    "clock_settime": "EPERM",
    "reboot": "EPERM",
    "swapon": "EPERM",
    "syslog": "EPERM",
    "io_uring_setup": "EPERM",
    "personality": "EPERM",
    "userfaultfd": "EPERM",
    "iopl": "EPERM",
}
HOST_FILES = {"read_kcore": "/proc/kcore", "read_timer_list": "/proc/timer_list",
              "write_sysrq_trigger": "/proc/sysrq-trigger", "write_core_pattern": "/proc/sys/kernel/core_pattern",
              "write_sys_power_state": "/sys/power/state"}
# What a permitted call answers to the harmless arguments escape.c gives it.
OPENED = {"ok", "exposed", "EINVAL", "EFAULT", "EBADF", "ENOENT", "EOPNOTSUPP", "ENOEXEC", "ENXIO"}
# Attempts that privileged=True must open: the defaults are what closes these.
OPEN_WHEN_PRIVILEGED = {
    "mount_tmpfs", "umount_mask", "remount_proc_sys_rw", "pivot_root", "unshare_mount_ns", "mknod_char_mem",
    "mknod_block_disk", "open_leaked_device", "read_keys", "read_timer_list", "read_sys_firmware",
    "write_core_pattern", "write_sys_power_state", "keyctl",
    "add_key", "bpf", "perf_event_open", "unshare_user_ns", "clone_user_ns", "clone3", "open_by_handle_at",
    "name_to_handle_at", "vsock_socket", "sethostname", "setns_leaked_fd", "remount_readonly_bind_rw",
    "settimeofday", "clock_settime", "reboot", "swapon", "syslog", "io_uring_setup", "personality", "userfaultfd",
}
# ...and those that stay closed even then, with the reason.
CLOSED_WHEN_PRIVILEGED = {
    "chroot_breakout": "pivot_root and the detached old root: there is nothing above the container's root",
    "ptrace_host_process": "the pid namespace: host processes have no pid inside",
    "leaked_fd": "the runtime closes every descriptor above 2 before execve",
    "proc1_root": "pid 1 is the container's own init",
    "raw_socket": "the network namespace has only lo",
    "write_readonly_bind": "a read-only bind stays read-only until remounted",
}
# Closed under privileged only because this kernel lacks the feature (ENOSYS from the kernel itself).
KERNEL_FEATURES = {"init_module": "/proc/modules", "finit_module": "/proc/modules", "kexec_load": "/sys/kernel/kexec_loaded",
                   "iopl": None}


@pytest.fixture(scope="module")
def escape() -> Iterator[Path]:
    cc = shutil.which("cc")
    assert cc, "a C compiler is needed for the escape helper (apt-get install gcc libc6-dev)"
    # a folder a user namespace's root can reach (pytest's own are 0700)
    d = Path(tempfile.mkdtemp(prefix="fastcontain-escape-"))
    try:
        os.chmod(d, 0o755)
        out = d / "escape"
        subprocess.run([cc, "-static", "-O1", "-Wall", "-Werror", "-o", str(out), str(HERE / "escape.c")], check=True)
        yield out
    finally:
        shutil.rmtree(d)


@pytest.fixture
def readonly_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="fastcontain-ro-"))
    try:
        os.chmod(d, 0o755)
        yield d
        assert list(d.iterdir()) == [], "something was written through the read-only bind"
    finally:
        shutil.rmtree(d)


def attempt_all(escape: Path, readonly_dir: Path, **options: object) -> dict[str, str]:
    """Run escape.c in a container; {attempt: outcome}. Its stdin is a descriptor of the
    host's network namespace, leaked on purpose; a non-close-on-exec descriptor of the
    host's / is open in this process and must not reach the container."""
    ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    host_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(host_root, True)
    hostname = socket.gethostname()
    try:
        r = fastcontain.run(
            "busybox", ["/fc/escape", str(os.getpid())], stdin=ns, capture_output=True, text=True, timeout=LIMIT,
            volumes=[f"{escape}:/fc/escape:ro", f"{readonly_dir}:/ro:ro", "/dev/kmsg:/fc/leaked-dev"], **options,
        )
    finally:
        os.close(ns)
        os.close(host_root)
    assert socket.gethostname() == hostname, "the host's hostname changed"
    assert r.returncode == 0, r.stderr
    results = {}
    for line in r.stdout.splitlines():
        name, kind, *rest = line.split()
        results[name] = rest[0] if kind == "errno" else kind
    assert set(results) == set(REFUSED), "escape.c and this table disagree"
    return results


def test_every_attempt_is_refused_by_default(escape: Path, readonly_dir: Path) -> None:
    seen = attempt_all(escape, readonly_dir)
    wrong = {}
    for name, expected in REFUSED.items():
        if name in HOST_FILES and not os.path.exists(HOST_FILES[name]):
            expected = "absent"  # this kernel has no such file: nothing to mask or refuse
        if seen[name] != expected:
            wrong[name] = f"saw {seen[name]}, expected {expected}"
    assert not wrong, wrong
    refused = [n for n, v in seen.items() if v not in ("absent", "confined")]
    assert len(refused) >= 25, f"only {len(refused)} attempts were refused with an errno or a mask"
    print("\n" + "\n".join(f"  {n:26} {v}" for n, v in seen.items()))


def test_privileged_opens_what_the_defaults_close(escape: Path, readonly_dir: Path) -> None:
    default = attempt_all(escape, readonly_dir)
    seen = attempt_all(escape, readonly_dir, privileged=True)
    wrong = {}
    for name in OPEN_WHEN_PRIVILEGED:
        if name in HOST_FILES and not os.path.exists(HOST_FILES[name]):
            continue
        if seen[name] not in OPENED:
            wrong[name] = f"privileged saw {seen[name]}: expected it to open"
        elif default[name] in OPENED:
            wrong[name] = f"the default saw {default[name]}: not closed"
    for name in CLOSED_WHEN_PRIVILEGED:
        if seen[name] in OPENED or seen[name] == "leaked":
            wrong[name] = f"privileged saw {seen[name]}, expected closed ({CLOSED_WHEN_PRIVILEGED[name]})"
    for name, probe in KERNEL_FEATURES.items():
        if (probe is None or not os.path.exists(probe)) and seen[name] == "ENOSYS":
            continue  # the kernel has no such call: ENOSYS from the kernel, not from a filter
        if seen[name] not in OPENED:
            wrong[name] = f"privileged saw {seen[name]}"
    assert not wrong, wrong
    assert set(OPEN_WHEN_PRIVILEGED) | set(CLOSED_WHEN_PRIVILEGED) | set(KERNEL_FEATURES) | {
        "read_kcore", "write_sysrq_trigger"} == set(REFUSED)
    print("\n" + "\n".join(f"  {n:26} default {default[n]:9} privileged {seen[n]}" for n in REFUSED))


# Root of a user namespace holds every capability only over the container's own
# namespaces: even privileged, what reaches the host stays closed. (Only attempts whose
# kernel check of the capability comes before that of escape.c's arguments: swapon,
# bpf and open_by_handle_at reject the arguments first, so they prove nothing here.)
HOST_LEVEL = ("write_core_pattern", "setns_leaked_fd", "init_module", "finit_module", "kexec_load", "syslog",
              "settimeofday", "mknod_char_mem", "mknod_block_disk")


def test_privileged_in_a_user_namespace_keeps_the_host_closed(
    escape: Path, readonly_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastcontain import security

    f = tmp_path / "subuid"
    f.write_text(f"{security.SUBID_USER}:3000000:65536\n")
    monkeypatch.setenv(security.SUBUID_ENV, str(f))
    monkeypatch.setenv(security.SUBGID_ENV, str(f))
    default = attempt_all(escape, readonly_dir, userns="auto")
    assert not {n: default[n] for n in HOST_LEVEL if default[n] in OPENED}
    seen = attempt_all(escape, readonly_dir, userns="auto", privileged=True)
    opened = {n: seen[n] for n in HOST_LEVEL if seen[n] in OPENED}
    assert not opened, opened
    assert seen["mount_tmpfs"] == "ok" and seen["sethostname"] == "ok", "its own namespaces are its to change"
    print("\n" + "\n".join(f"  {n:26} userns {default[n]:9} userns+privileged {seen[n]}" for n in REFUSED))
