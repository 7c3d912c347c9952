"""Security defaults: capabilities, seccomp, masked and read-only paths.

The defaults match what a default docker container gets: docker's default
capability set, its masked and read-only /proc and /sys paths, no_new_privs,
and a seccomp filter with the same effect as docker's default profile (the
list below is ours, written from the syscalls' documented dangers). A seccomp
profile is compiled to BPF once per process and shared by every container
(``_native.compile_seccomp``, through the seccompiler crate).
"""

from __future__ import annotations

import errno as _errno
import functools
import json
import os
from typing import Any, Iterable, Mapping, Sequence

from . import _native
from .errors import ConfigError

ALL_CAPS: tuple[str, ...] = tuple(_native.CAPABILITIES)

# docker's default set (moby's oci/caps/defaults.go documents the same list)
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


def host_bounding_set() -> frozenset[str]:
    """The capabilities this process may still hold (CapBnd in /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return frozenset(c for i, c in enumerate(ALL_CAPS) if mask >> i & 1)
    return frozenset(ALL_CAPS)


def _cap_name(field: str, name: object) -> str:
    if not isinstance(name, str):
        raise ConfigError(field, name, "expected a capability name such as NET_ADMIN")
    upper = name.upper()
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full != "CAP_ALL" and full not in ALL_CAPS:
        raise ConfigError(field, name, "not a Linux capability (see capabilities(7))")
    return full


def capabilities(cap_add: Sequence[str] = (), cap_drop: Sequence[str] = (), privileged: bool = False) -> tuple[str, ...]:
    """docker's rule: start from the default set (every capability when privileged),
    drop cap_drop (ALL empties it), then add cap_add (ALL adds every one)."""
    bounding = host_bounding_set()
    adds = [_cap_name("cap_add", c) for c in cap_add]
    drops = [_cap_name("cap_drop", c) for c in cap_drop]
    caps: set[str] = set(bounding if privileged else DEFAULT_CAPS)
    if "CAP_ALL" in drops:
        caps.clear()
    caps.difference_update(drops)
    if "CAP_ALL" in adds:
        caps.update(bounding)
    for c in adds:
        if c == "CAP_ALL":
            continue
        if c not in bounding:
            raise ConfigError("cap_add", c, "this host's capability bounding set lacks it (CapBnd in /proc/self/status), "
                              "so no container started from here can have it")
        caps.add(c)
    return tuple(c for c in ALL_CAPS if c in caps & bounding)


# -- seccomp -----------------------------------------------------------------

# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (clone(2)'s low byte is the exit signal,
# so CLONE_NEWTIME, 0x80, only exists for clone3 and unshare, both denied without CAP_SYS_ADMIN)
_NS_FLAGS = 0x7E020000

# Denied unless the container holds the capability that makes them legitimate.
_GATED: Mapping[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
        "mount_setattr", "move_mount", "open_tree", "open_tree_attr", "perf_event_open", "pivot_root",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "swapon", "swapoff", "syslog",
        "umount", "umount2", "unshare", "vm86", "vm86old", "listmount", "statmount",
    ),
    "CAP_SYS_BOOT": ("reboot", "kexec_load", "kexec_file_load"),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_PTRACE": ("ptrace", "kcmp", "process_vm_readv", "process_vm_writev", "pidfd_getfd"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_NICE": ("get_mempolicy", "set_mempolicy", "mbind", "move_pages", "set_mempolicy_home_node"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at", "name_to_handle_at"),
    "CAP_BPF": (),
}
# Always denied: obsolete, kernel-keyring, or too sharp for a container.
_DENIED = (
    "add_key", "keyctl", "request_key", "create_module", "get_kernel_syms", "query_module", "nfsservctl",
    "_sysctl", "sysfs", "uselib", "ustat", "userfaultfd", "afs_syscall", "tuxcall", "security",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)
# personality(2) values docker lets through: PER_LINUX, PER_LINUX32, UNAME26 variants, and the query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _default_filters(caps: frozenset[str]) -> list[tuple[str, int, str, int, dict[str, list[list[tuple[int, str, int, int]]]]]]:
    denied = set(_DENIED)
    for cap, calls in _GATED.items():
        if cap not in caps:
            denied.update(calls)
    rules: dict[str, list[list[tuple[int, str, int, int]]]] = {name: [] for name in denied}
    admin = "CAP_SYS_ADMIN" in caps
    if not admin:
        # clone with a namespace flag, unless the container may make namespaces
        rules["clone"] = [[(0, "masked_eq", bit, bit)] for bit in _bits(_NS_FLAGS)]
    rules["personality"] = [[(0, "ne", 0, 0)] + [(0, "ne", v, 0) for v in _PERSONALITIES[1:]]]
    filters = [("allow", 0, "errno", _errno.EPERM, rules)]
    if not admin:
        # clone3's flags sit behind a pointer a filter cannot read: say ENOSYS, so libc falls back to clone
        filters.append(("allow", 0, "errno", _errno.ENOSYS, {"clone3": []}))
    return filters


def _bits(mask: int) -> Iterable[int]:
    b = 1
    while b <= mask:
        if mask & b:
            yield b
        b <<= 1


@functools.lru_cache(maxsize=32)
def default_seccomp(caps: frozenset[str]) -> Any:
    """The default filter for a capability set, compiled once per process."""
    return _native.compile_seccomp(_default_filters(caps))


_DOCKER_ACTIONS = {
    "SCMP_ACT_ALLOW": "allow",
    "SCMP_ACT_ERRNO": "errno",
    "SCMP_ACT_KILL": "kill_thread",
    "SCMP_ACT_KILL_THREAD": "kill_thread",
    "SCMP_ACT_KILL_PROCESS": "kill_process",
    "SCMP_ACT_TRAP": "trap",
    "SCMP_ACT_LOG": "log",
}
_DOCKER_OPS = {
    "SCMP_CMP_EQ": "eq", "SCMP_CMP_NE": "ne", "SCMP_CMP_LT": "lt", "SCMP_CMP_LE": "le",
    "SCMP_CMP_GT": "gt", "SCMP_CMP_GE": "ge", "SCMP_CMP_MASKED_EQ": "masked_eq",
}


def compile_profile(path: str, caps: frozenset[str]) -> Any:
    """A docker or OCI seccomp profile (JSON) compiled for this capability set.
    Rules with includes/excludes of capabilities or architectures are applied
    as docker applies them."""
    field = "security_opt.seccomp"
    try:
        with open(path) as f:
            prof = json.load(f)
    except OSError as e:
        raise ConfigError(field, path, f"cannot read the profile: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(field, path, f"not valid JSON: {e}") from None
    if not isinstance(prof, dict) or "defaultAction" not in prof:
        raise ConfigError(field, path, "not a seccomp profile: no defaultAction")
    arches = prof.get("architectures") or []
    if arches and not {"SCMP_ARCH_X86_64", "x86_64"} & set(arches):
        raise ConfigError(field, path, f"the profile does not cover x86_64 (architectures: {arches})")

    def action(where: str, a: object, errno_ret: object) -> tuple[str, int]:
        if a not in _DOCKER_ACTIONS:
            raise ConfigError(field, f"{path}: {where}", f"unknown action {a!r}")
        name = _DOCKER_ACTIONS[str(a)]
        if name != "errno":
            return name, 0
        return name, errno_ret if isinstance(errno_ret, int) else _errno.EPERM

    default = action("defaultAction", prof["defaultAction"], prof.get("defaultErrnoRet"))
    groups: dict[tuple[str, int], dict[str, list[list[tuple[int, str, int, int]]]]] = {}
    for i, rule in enumerate(prof.get("syscalls") or []):
        where = f"syscalls[{i}]"
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if exc.get("caps") and set(exc["caps"]) & caps:
            continue
        if inc.get("arches") and not {"amd64", "x86_64", "x32"} & set(inc["arches"]):
            continue
        if exc.get("arches") and {"amd64", "x86_64"} & set(exc["arches"]):
            continue
        act = action(where, rule.get("action"), rule.get("errnoRet"))
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        conds = []
        for j, a in enumerate(rule.get("args") or []):
            op = _DOCKER_OPS.get(a.get("op"))
            if op is None:
                raise ConfigError(field, f"{path}: {where}.args[{j}]", f"unknown op {a.get('op')!r}")
            if op == "masked_eq":
                conds.append((int(a["index"]), op, int(a.get("valueTwo", 0)), int(a["value"])))
            else:
                conds.append((int(a["index"]), op, int(a["value"]), 0))
        group = groups.setdefault(act, {})
        for n in names:
            group.setdefault(n, [])
            if conds:
                group[n].append(conds)
            elif group[n]:
                group[n] = []  # an unconditional rule wins over conditional ones
    filters: list[tuple[str, int, str, int, dict[str, list[list[tuple[int, str, int, int]]]]]] = []
    allow = groups.pop(("allow", 0), {})
    if default[0] != "allow":
        # one allow-list filter; syscalls with other actions are allowed here so that their own filter decides
        listed = dict(allow)
        for calls in groups.values():
            for n in calls:
                listed.setdefault(n, [])
                listed[n] = []
        filters.append((default[0], default[1], "allow", 0, listed))
    for (act, eno), calls in groups.items():
        if (act, eno) == default:
            continue
        filters.append(("allow", 0, act, eno, calls))
    if not filters:
        raise ConfigError(field, path, "the profile allows everything: use seccomp=unconfined instead")
    return _native.compile_seccomp(filters)


@functools.lru_cache(maxsize=32)
def _cached_profile(path: str, mtime: float, caps: frozenset[str]) -> Any:
    return compile_profile(path, caps)


def seccomp_for(profile: str | None, caps: Sequence[str]) -> Any:
    """The compiled filter for a container: None (unconfined), the default, or a profile file."""
    cset = frozenset(caps)
    if profile == "unconfined":
        return None
    if profile is None or profile == "default":
        return default_seccomp(cset)
    try:
        mtime = os.stat(profile).st_mtime
    except OSError as e:
        raise ConfigError("security_opt.seccomp", profile, f"cannot read the profile: {e.strerror}") from None
    return _cached_profile(os.path.abspath(profile), mtime, cset)
