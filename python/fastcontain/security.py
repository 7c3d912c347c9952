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
import resource
import stat
from dataclasses import dataclass
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config, Mount
    from .image import Image

# Every capability by number, as rust/src/caps.rs (tests check they agree): kept here so
# that config validation works without the native module.
ALL_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

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


@functools.lru_cache(maxsize=1)
def host_bounding_set() -> frozenset[str]:
    """The capabilities this process may still hold (CapBnd in /proc/self/status).
    Read once per process (it was ~40 us of every container's start): the bounding set
    only ever shrinks, so a process that drops capabilities later calls
    host_bounding_set.cache_clear()."""
    return _status_caps("CapBnd:")


def effective_caps() -> frozenset[str]:
    """The capabilities this process has now (CapEff)."""
    return _status_caps("CapEff:")


def _status_caps(key: str) -> frozenset[str]:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
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
    """docker's rule (moby's caps.TweakCapabilities): privileged is every capability; ALL
    in cap_add starts from every capability and removes cap_drop; ALL in cap_drop keeps only cap_add;
    otherwise the default set minus cap_drop plus cap_add. A name this host's bounding set
    lacks cannot be granted and is an error, unless it came in through ALL."""
    bounding = host_bounding_set()
    adds = [_cap_name("cap_add", c) for c in cap_add]
    drops = [_cap_name("cap_drop", c) for c in cap_drop]
    for c in adds:
        if c != "CAP_ALL" and c not in bounding:
            raise ConfigError("cap_add", c, "this host's capability bounding set lacks it (CapBnd in /proc/self/status), "
                              "so no container started from here can have it")
    if privileged:  # docker ignores cap_add and cap_drop then
        caps = set(bounding)
    elif "CAP_ALL" in adds:
        caps = set(bounding) - set(drops)
    elif "CAP_ALL" in drops:
        caps = set(adds)
    else:
        caps = (set(DEFAULT_CAPS) - set(drops)) | set(adds)
    granted = caps & bounding
    return tuple(c for c in ALL_CAPS if c in granted)


# -- seccomp -----------------------------------------------------------------

# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (clone(2)'s low byte is the exit signal,
# so CLONE_NEWTIME, 0x80, only exists for clone3 and unshare, both denied without CAP_SYS_ADMIN)
_NS_FLAGS = 0x7E020000

# Denied unless the container holds one of the capabilities that make them legitimate
# (docker's profile gates the same calls by the same capabilities).
_GATED: Mapping[tuple[str, ...], tuple[str, ...]] = {
    ("CAP_SYS_ADMIN",): (
        "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
        "mount_setattr", "move_mount", "open_tree", "open_tree_attr", "pivot_root",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "swapon", "swapoff",
        "umount", "umount2", "vm86", "vm86old", "listmount", "statmount",
    ),
    ("CAP_SYS_ADMIN", "CAP_BPF"): ("bpf",),
    ("CAP_SYS_ADMIN", "CAP_PERFMON"): ("perf_event_open",),
    ("CAP_SYS_ADMIN", "CAP_SYSLOG"): ("syslog",),
    ("CAP_SYS_BOOT",): ("reboot",),
    ("CAP_SYS_MODULE",): ("init_module", "finit_module", "delete_module"),
    ("CAP_SYS_RAWIO",): ("iopl", "ioperm"),
    ("CAP_SYS_PTRACE",): ("kcmp", "pidfd_getfd"),
    ("CAP_SYS_TIME",): ("settimeofday", "stime", "clock_settime", "clock_adjtime"),
    ("CAP_SYS_PACCT",): ("acct",),
    ("CAP_SYS_NICE",): ("get_mempolicy", "set_mempolicy", "mbind", "move_pages", "set_mempolicy_home_node"),
    ("CAP_SYS_TTY_CONFIG",): ("vhangup",),
    ("CAP_DAC_READ_SEARCH",): ("open_by_handle_at", "name_to_handle_at"),
}
# Always denied: obsolete, kernel-keyring, kexec, or too sharp for a container.
# (ptrace and process_vm_* stay allowed, as in docker since kernel 4.8: without
# CAP_SYS_PTRACE they reach only the container's own processes.)
_DENIED = (
    "add_key", "keyctl", "request_key", "create_module", "get_kernel_syms", "query_module", "nfsservctl",
    "_sysctl", "sysfs", "uselib", "ustat", "userfaultfd", "afs_syscall", "tuxcall", "security",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
)
# personality(2) values docker lets through: PER_LINUX, PER_LINUX32, UNAME26 variants, and the query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_CLONE_NEWTIME = 0x80
_AF_VSOCK = 40

Rules = dict[str, list[list[tuple[int, str, int, int]]]]
Filters = list[tuple[str, int, str, int, Rules]]


def _default_filters(caps: frozenset[str]) -> Filters:
    denied = set(_DENIED)
    for gate, calls in _GATED.items():
        if not caps & set(gate):
            denied.update(calls)
    rules: Rules = {name: [] for name in denied}
    if "CAP_SYS_ADMIN" not in caps:
        # a new namespace, the user namespace above all (it needs no capability and gives
        # every one inside), only with CAP_SYS_ADMIN: clone's and unshare's flags are checked
        rules["clone"] = [[(0, "masked_eq", bit, bit)] for bit in _bits(_NS_FLAGS)]
        rules["unshare"] = [[(0, "masked_eq", bit, bit)] for bit in _bits(_NS_FLAGS | _CLONE_NEWTIME)]
    rules["personality"] = [[(0, "ne", 0, 0)] + [(0, "ne", v, 0) for v in _PERSONALITIES[1:]]]
    rules["socket"] = [[(0, "eq", _AF_VSOCK, 0)]]  # as docker: no vsock to the hypervisor
    # Device nodes: as docker, mknod is let through (CAP_MKNOD is a default capability);
    # opening a node is what the devices cgroup refuses (fastcontain.devices), on v1 and v2.
    filters: Filters = [("allow", 0, "errno", _errno.EPERM, rules)]
    if "CAP_SYS_ADMIN" not in caps:
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
    from . import _native

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
    for (name, eno), calls in groups.items():
        if (name, eno) == default:
            continue
        filters.append(("allow", 0, name, eno, calls))
    if not filters:
        raise ConfigError(field, path, "the profile allows everything: use seccomp=unconfined instead")
    from . import _native

    try:
        return _native.compile_seccomp(filters)
    except ConfigError as e:
        raise ConfigError(field, f"{path}: {e.field}", e.reason) from None


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


# -- options -------------------------------------------------------------------

RLIM_INFINITY = 2**64 - 1
# docker's --ulimit names (RLIMIT_ without the prefix, lower case)
ULIMITS = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)
_RESOURCE = {name: getattr(resource, f"RLIMIT_{name.upper()}") for name in ULIMITS if hasattr(resource, f"RLIMIT_{name.upper()}")}


@dataclass(frozen=True)
class Ulimit:
    """One rlimit: docker's --ulimit NAME=SOFT[:HARD] (-1 or 'unlimited' for no limit)."""

    name: str
    soft: int
    hard: int

    @classmethod
    def parse(cls, field: str, value: object) -> Ulimit:
        if isinstance(value, Ulimit):
            return cls.check(field, value)
        if isinstance(value, tuple) and len(value) == 3:
            return cls.check(field, cls(*value))
        if not isinstance(value, str) or "=" not in value:
            raise ConfigError(field, value, "expected NAME=SOFT[:HARD], e.g. nofile=1024:2048")
        name, _, limits = value.partition("=")
        soft_s, _, hard_s = limits.partition(":")

        def number(s: str) -> int:
            if s in ("-1", "unlimited"):
                return RLIM_INFINITY
            if not s.isdigit():
                raise ConfigError(field, value, f"{s!r} is not a number (or -1 / unlimited)")
            return int(s)

        soft = number(soft_s)
        return cls.check(field, cls(name, soft, number(hard_s) if hard_s else soft))

    @classmethod
    def check(cls, field: str, u: Ulimit) -> Ulimit:
        name = str(u.name).lower().removeprefix("rlimit_")
        if name not in _RESOURCE:
            raise ConfigError(field, u.name, f"not a ulimit (known: {', '.join(ULIMITS)})")
        for part in (u.soft, u.hard):
            if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part <= RLIM_INFINITY:
                raise ConfigError(field, f"{name}={u.soft}:{u.hard}", "limits are integers from 0, or -1 for unlimited")
        if u.soft > u.hard:
            raise ConfigError(field, f"{name}={u.soft}:{u.hard}", "the soft limit is above the hard limit")
        _, hard_now = resource.getrlimit(_RESOURCE[name])
        hard_now = RLIM_INFINITY if hard_now == resource.RLIM_INFINITY else hard_now
        if u.hard > hard_now and "CAP_SYS_RESOURCE" not in effective_caps():
            raise ConfigError(
                field, f"{name}={u.soft}:{u.hard}",
                f"above this process's hard limit ({hard_now}): raising a hard limit needs CAP_SYS_RESOURCE, "
                "which this process does not have",
            )
        return cls(name, u.soft, u.hard)


@dataclass(frozen=True)
class Device:
    """A host device node made available inside: docker's --device HOST[:CONTAINER][:PERMISSIONS]."""

    host: str
    container: str
    permissions: str = "rwm"

    @classmethod
    def parse(cls, field: str, value: object) -> Device:
        if isinstance(value, Device):
            d = value
        elif isinstance(value, str) and value:
            parts = value.split(":")
            if len(parts) > 3:
                raise ConfigError(field, value, "expected HOST[:CONTAINER][:rwm]")
            perms = "rwm"
            if len(parts) == 3 or (len(parts) == 2 and not parts[1].startswith("/")):
                perms = parts.pop()  # checked below
            d = cls(parts[0], parts[1] if len(parts) > 1 else parts[0], perms)
        else:
            raise ConfigError(field, value, "expected HOST[:CONTAINER][:rwm]")
        if not d.host.startswith("/") or not d.container.startswith("/") or ".." in d.container.split("/"):
            raise ConfigError(field, value, "both paths must be absolute (and the container path without '..')")
        if not d.permissions or not set(d.permissions) <= set("rwm"):
            raise ConfigError(field, value, f"permissions {d.permissions!r}: a combination of r, w and m")
        try:
            st = os.stat(d.host)
        except OSError as e:
            raise ConfigError(field, value, f"cannot use {d.host}: {e.strerror}") from None
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise ConfigError(field, value, f"{d.host} is not a character or block device")
        return d


@dataclass(frozen=True)
class SecurityOpt:
    """--security-opt: no-new-privileges[=true|false], seccomp=unconfined|default|PROFILE.json."""

    no_new_privileges: bool | None = None
    seccomp: str | None = None

    @classmethod
    def parse(cls, values: Sequence[str]) -> SecurityOpt:
        nnp: bool | None = None
        seccomp: str | None = None
        for i, item in enumerate(values):
            field = f"security_opt[{i}]"
            if not isinstance(item, str):
                raise ConfigError(field, item, "expected a string such as seccomp=unconfined")
            key, sep, value = item.partition("=")
            if not sep:
                key, sep, value = item.partition(":")  # docker's older spelling
            if key == "no-new-privileges":
                if value not in ("", "true", "false"):
                    raise ConfigError(field, item, "no-new-privileges takes true or false")
                nnp = value != "false"
            elif key == "seccomp":
                if not value:
                    raise ConfigError(field, item, "seccomp=unconfined, seccomp=default or seccomp=PROFILE.json")
                if value not in ("unconfined", "default"):
                    if not os.path.isfile(value):
                        raise ConfigError("security_opt.seccomp", value, "no such profile file")
                    value = os.path.abspath(value)
                seccomp = value
            elif key in ("apparmor", "label", "systempaths", "mask", "unmask"):
                raise ConfigError(field, item, f"{key} is not supported (this runtime applies no LSM profile)")
            else:
                raise ConfigError(field, item, "unknown security option (known: no-new-privileges, seccomp)")
        return cls(nnp, seccomp)


_TMPFS_DEFAULTS = ("nosuid", "nodev", "noexec")


def tmpfs_mounts(value: object) -> tuple[Mount, ...]:
    """--tmpfs PATH[:OPTIONS] (a list) or docker-py's {PATH: "OPTIONS"} as tmpfs Mounts:
    nosuid, nodev and noexec unless the options say otherwise."""
    from .config import Mount

    if isinstance(value, Mapping):
        items = [(k, v) for k, v in value.items()]
    elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError("tmpfs", value, "expected a list of 'PATH[:OPTIONS]' or a {PATH: OPTIONS} mapping")
    else:
        items = []
        for v in value:
            if not isinstance(v, str):
                raise ConfigError("tmpfs", v, "expected 'PATH[:OPTIONS]'")
            path, _, opts = v.partition(":")
            items.append((path, opts))
    out = []
    for path, opts in items:
        if not isinstance(path, str) or not isinstance(opts, str):
            raise ConfigError("tmpfs", (path, opts), "expected 'PATH[:OPTIONS]'")
        options = _TMPFS_DEFAULTS + tuple(o for o in opts.split(",") if o)
        try:
            out.append(Mount("tmpfs", path, type="tmpfs", options=options))
        except ConfigError as e:
            raise ConfigError("tmpfs", f"{path}:{opts}" if opts else path, e.reason) from None
    return tuple(out)


def check_oom_score_adj(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -1000 <= value <= 1000:
        raise ConfigError("oom_score_adj", value, "an integer from -1000 to 1000")
    try:
        with open("/proc/self/oom_score_adj") as f:
            current = int(f.read())
    except OSError:
        current = 0
    if value < min(0, current) and "CAP_SYS_RESOURCE" not in effective_caps():
        raise ConfigError(
            "oom_score_adj", value,
            f"below this process's own ({current}): lowering it needs CAP_SYS_RESOURCE, which this process does not have",
        )
    return value


def normalize_options(cfg: Config) -> dict[str, object]:
    """Config's security fields checked and normalized (called from Config.__post_init__):
    every error here comes before anything is created."""

    def names(field: str) -> tuple[str, ...]:
        v = getattr(cfg, field)
        if isinstance(v, str) or not isinstance(v, Sequence):
            raise ConfigError(field, v, "must be a sequence of capability names")
        return tuple(v)

    if not isinstance(cfg.privileged, bool):
        raise ConfigError("privileged", cfg.privileged, "must be a bool")
    cap_add, cap_drop = names("cap_add"), names("cap_drop")
    capabilities(cap_add, cap_drop, cfg.privileged)  # unknown names and missing ones fail now
    if isinstance(cfg.security_opt, str) or not isinstance(cfg.security_opt, Sequence):
        raise ConfigError("security_opt", cfg.security_opt, "must be a sequence of strings")
    SecurityOpt.parse(cfg.security_opt)
    for field in ("devices", "device_cgroup_rules", "ulimits", "group_add"):
        v = getattr(cfg, field)
        if isinstance(v, str) or not isinstance(v, Sequence):
            raise ConfigError(field, v, "must be a sequence")
    for i, g in enumerate(cfg.group_add):
        if isinstance(g, bool) or not isinstance(g, (int, str)) or not str(g):
            raise ConfigError(f"group_add[{i}]", g, "a group name or number")
    from . import rootless

    if rootless.active():
        from .net.ports import parse_network

        rootless.check_network(parse_network(cfg.network)[0], cfg.network)
        rootless.check_limits(cfg.resources)
    return {
        "cap_add": cap_add,
        "cap_drop": cap_drop,
        "security_opt": tuple(cfg.security_opt),
        "tmpfs": tmpfs_mounts(cfg.tmpfs),
        "devices": tuple(Device.parse(f"devices[{i}]", d) for i, d in enumerate(cfg.devices)),
        "device_cgroup_rules": tuple(_device_cgroup_rule(f"device_cgroup_rules[{i}]", r)
                                     for i, r in enumerate(cfg.device_cgroup_rules)),
        "ulimits": tuple(Ulimit.parse(f"ulimits[{i}]", u) for i, u in enumerate(cfg.ulimits)),
        "group_add": tuple(cfg.group_add),
        "oom_score_adj": check_oom_score_adj(cfg.oom_score_adj),
        "userns": Userns.parse(cfg.userns),
    }


def _device_cgroup_rule(field: str, value: object) -> Any:
    from . import devices

    if not isinstance(value, str):
        raise ConfigError(field, value, "expected a rule such as 'c 1:11 r'")
    return devices.Rule.parse(field, value)  # "a" (or "a *:* rwm") allows every device, as in docker


def device_policy(cfg: Config) -> Any:
    """The devices cgroup's policy (fastcontain.devices): runc's defaults, the
    --device-cgroup-rule rules, then each --device node with its permissions; every
    device when privileged."""
    from . import devices

    if not cfg.privileged and not cfg.devices and not cfg.device_cgroup_rules:
        return devices.DEFAULT_POLICY
    return devices.policy([(d.host, d.permissions) for d in cast("tuple[Device, ...]", cfg.devices)], cfg.privileged,
                          extra=cast("tuple[devices.Rule, ...]", cfg.device_cgroup_rules))


def group_ids(group_add: Sequence[str | int], image: Image) -> tuple[int, ...]:
    """--group-add: numbers, or names from the image's /etc/group."""
    from .spec import MAX_ID, _table

    if not group_add:  # the common case: no need to read the image's /etc/group
        return ()
    table = _table(image.read_etc("group"), 4)
    out = []
    for i, g in enumerate(group_add):
        s = str(g)
        if s.isdigit():
            if int(s) > MAX_ID:
                raise ConfigError(f"group_add[{i}]", g, f"out of range (0..{MAX_ID})")
            out.append(int(s))
            continue
        found = next((row for row in table if row[0] == s and row[2].isdigit()), None)
        if found is None:
            raise ConfigError(f"group_add[{i}]", g, f"no group {s!r} in the /etc/group of image {image.name!r}")
        out.append(int(found[2]))
    return tuple(out)


def process_part(cfg: Config) -> dict[str, Any]:
    """The security of the container's process: capabilities, no_new_privs, seccomp and
    rlimits. The same for the container's init and for a process exec'd into it later."""
    caps = capabilities(cfg.cap_add, cfg.cap_drop, cfg.privileged)
    opt = SecurityOpt.parse(cfg.security_opt)
    nnp = opt.no_new_privileges if opt.no_new_privileges is not None else not cfg.privileged
    profile = opt.seccomp if opt.seccomp is not None else ("unconfined" if cfg.privileged else None)
    return {
        "capabilities": list(caps),
        "no_new_privileges": nnp,
        "seccomp": seccomp_for(profile, caps),
        "rlimits": [(f"RLIMIT_{u.name.upper()}", u.soft, u.hard) for u in cast("tuple[Ulimit, ...]", cfg.ulimits)],
    }


def host_device_nodes(cfg: Config) -> list[tuple[str, int, int, int, int, int]]:
    """The host's device nodes in /dev, made alike in the container's, as docker's
    --privileged gives them (not under a user namespace, whose point is to keep the
    host's closed, and where mknod is refused anyway). The devices cgroup then allows
    every device."""
    from . import devices

    if not cfg.privileged or cfg.userns is not None:
        return []
    # a --device target is bound over by its own node: not made first (the bind's mount
    # point would be opened for writing, which some devices act on, a watchdog above all)
    bound = {d.container for d in cast("tuple[Device, ...]", cfg.devices)}
    return [n for n in devices.host_devices() if n[0] not in bound]


def spec_part(cfg: Config, image: Image, paths: Any = None) -> dict[str, Any]:
    """The security part of the native spec (see _native.pyi), computed in one place:
    process_part plus masked and read-only paths, tmpfs and device mounts, extra groups
    and oom_score_adj. spec.compile merges it into the spec."""
    from .spec import mount_spec

    part = process_part(cfg)
    part["masked_paths"] = [] if cfg.privileged else list(MASKED_PATHS)
    part["readonly_paths"] = [] if cfg.privileged else list(READONLY_PATHS)
    part["sysfs_rw"] = cfg.privileged  # docker's --privileged: /sys writable
    part["device_nodes"] = host_device_nodes(cfg)
    part["oom_score_adj"] = cfg.oom_score_adj
    mounts = [mount_spec(m) for m in cast("tuple[Mount, ...]", cfg.tmpfs)]
    for d in cast("tuple[Device, ...]", cfg.devices):
        # bound from the host's node, as runc does in user namespaces: no mknod needed
        mounts.append({"source": d.host, "target": d.container, "type": "bind", "options": ["bind"]})
    part["mounts"] = mounts
    part["groups"] = list(group_ids(cfg.group_add, image))
    if paths is not None:
        part.update(userns_part(cfg, image, paths))
    return part


# -- user namespaces -------------------------------------------------------------

SUBUID_ENV, SUBGID_ENV = "FASTCONTAIN_SUBUID", "FASTCONTAIN_SUBGID"
SUBID_USER = "fastcontain"
AUTO_COUNT = 65536
IdMap = tuple[tuple[int, int, int], ...]


def subid_ranges(kind: str) -> tuple[str, list[tuple[int, int]]]:
    """(file, [(start, count)]) allotted to the user `fastcontain` in the /etc/subuid-style
    file ($FASTCONTAIN_SUBUID / $FASTCONTAIN_SUBGID, default /etc/subuid and /etc/subgid)."""
    path = os.environ.get(SUBUID_ENV if kind == "uid" else SUBGID_ENV) or f"/etc/sub{kind}"
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("userns", path, f"cannot read the sub{kind} file: {e.strerror}") from None
    ranges = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == SUBID_USER and parts[1].isdigit() and parts[2].isdigit():
            ranges.append((int(parts[1]), int(parts[2])))
    return path, ranges


@dataclass(frozen=True)
class Userns:
    """A user namespace's mappings: (inside, outside, count) ranges for uids and gids.
    Config's `userns` takes "auto" (the first range of the user `fastcontain` in the
    subuid/subgid files, at most 65536 ids), "OUTSIDE:COUNT" or "INSIDE:OUTSIDE:COUNT"
    (the same for uids and gids), a Userns, or None / "host" for none. Every outside id
    must lie in a range those files give `fastcontain`."""

    uid_map: IdMap
    gid_map: IdMap

    @classmethod
    def parse(cls, value: object) -> Userns | None:
        from . import rootless

        if rootless.active():  # always a user namespace: the caller's own ids as root
            return rootless.userns(value)
        if value is None or value == "host":
            return None
        if isinstance(value, Userns):
            u = value
        elif value == "auto":
            maps = []
            for kind in ("uid", "gid"):
                path, ranges = subid_ranges(kind)
                if not ranges:
                    raise ConfigError("userns", value, f"{path} gives the user {SUBID_USER!r} no range "
                                      f"(add a line such as '{SUBID_USER}:100000:65536')")
                start, count = ranges[0]
                maps.append(((0, start, min(count, AUTO_COUNT)),))
            u = cls(maps[0], maps[1])
        elif isinstance(value, str):
            parts = value.split(":")
            if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
                raise ConfigError("userns", value, "expected auto, host, OUTSIDE:COUNT or INSIDE:OUTSIDE:COUNT")
            nums = [int(p) for p in parts]
            line = (0, nums[0], nums[1]) if len(nums) == 2 else (nums[0], nums[1], nums[2])
            u = cls((line,), (line,))
        else:
            raise ConfigError("userns", value, "expected auto, host, OUTSIDE:COUNT, INSIDE:OUTSIDE:COUNT or a Userns")
        for kind, m in (("uid", u.uid_map), ("gid", u.gid_map)):
            if not any(inside == 0 for inside, _, _ in m):
                raise ConfigError("userns", value, f"the {kind} map must map 0 (the container's root)")
            path, ranges = subid_ranges(kind)
            for inside, outside, count in m:
                if count <= 0 or min(inside, outside) < 0:
                    raise ConfigError("userns", value, f"{kind} range {inside}:{outside}:{count} is empty or negative")
                if outside == 0:
                    raise ConfigError("userns", value, f"{kind} range {inside}:{outside}:{count} maps the host's root")
                if not any(start <= outside and outside + count <= start + n for start, n in ranges):
                    allowed = ", ".join(f"{s}-{s + n - 1}" for s, n in ranges) or "none"
                    raise ConfigError("userns", value, f"{kind}s {outside}-{outside + count - 1} are outside the ranges "
                                      f"{path} gives {SUBID_USER!r} ({allowed})")
        check_userns_support()
        return u

    def shift(self, uid: int, gid: int) -> tuple[int, int]:
        """The host ids of (uid, gid) inside; unmapped ids stay as they are."""

        def one(m: IdMap, i: int) -> int:
            for inside, outside, count in m:
                if inside <= i < inside + count:
                    return outside + i - inside
            return i

        return one(self.uid_map, uid), one(self.gid_map, gid)


def check_userns_support() -> None:
    """The host's policy on user namespaces, named when it says no."""
    if not os.path.exists("/proc/self/ns/user"):
        raise ConfigError("userns", None, "this kernel has no user namespaces (CONFIG_USER_NS)")
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                raise ConfigError("userns", None, "the sysctl user.max_user_namespaces is 0: user namespaces are off")
    except OSError:
        pass


def _copy_node(src: str, dst: str) -> None:
    """copytree's copy: device nodes and fifos (overlayfs whiteouts are 0/0 character
    devices in stored image layers) are made anew, not opened and read."""
    import shutil

    st = os.lstat(src)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.mknod(dst, st.st_mode, st.st_rdev)
        return
    shutil.copy2(src, dst)


def shifted_layer(layer: str, userns: Userns, store: str) -> str:
    """A copy of an image layer with every owner shifted into the mapping, cached in the
    store (fallback for idmapped mounts): the container's root sees its files as its own."""
    import hashlib
    import shutil
    import tempfile

    st = os.stat(layer)
    key = hashlib.sha256(f"{os.path.realpath(layer)}\0{st.st_mtime_ns}\0{userns}".encode()).hexdigest()[:24]
    base = os.path.join(store, "userns")
    dest = os.path.join(base, key)
    if os.path.isdir(dest):
        return dest
    os.makedirs(base, mode=0o711, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=base)
    try:
        root = os.path.join(tmp, "rootfs")
        shutil.copytree(layer, root, symlinks=True, copy_function=_copy_node)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames, None]:
                p = dirpath if name is None else os.path.join(dirpath, name)
                if name is not None and name in dirnames and not os.path.islink(p):
                    continue  # a directory: done when os.walk reaches it
                src = os.path.join(layer, os.path.relpath(p, root))
                s = os.lstat(src)
                uid, gid = userns.shift(s.st_uid, s.st_gid)
                os.lchown(p, uid, gid)
                if not stat.S_ISLNK(s.st_mode):
                    os.chmod(p, stat.S_IMODE(s.st_mode))  # chown cleared set-id bits
        os.chmod(tmp, 0o711)
        try:
            os.rename(root, dest)
        except OSError:
            if not os.path.isdir(dest):  # another process made it first: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def userns_part(cfg: Config, image: Image, paths: Any) -> dict[str, Any]:
    """The user namespace's part of the spec: the maps, the folders its root gets, and how
    the overlay is made (userns.py: over idmapped layers, or over shifted copies of them).
    Empty without a user namespace."""
    u = cast("Userns | None", cfg.userns)
    if u is None:
        return {}
    from . import rootless
    from . import userns as _userns
    from .image import store as _store

    if rootless.active():
        return {"userns": {"uid_map": list(u.uid_map), "gid_map": list(u.gid_map), **rootless.spec_part(u)}}
    part: dict[str, Any] = {"userns": {
        "uid_map": list(u.uid_map),
        "gid_map": list(u.gid_map),
        "own": [paths.dir, paths.rootfs, paths.upper, paths.work],
        "traverse": [paths.root],
        "overlay_by": _userns.overlay_by(image.layers, u),
    }}
    if part["userns"]["overlay_by"] == "parent":
        store = _store.default_store()
        part["lower"] = [shifted_layer(layer, u, store) for layer in image.layers]
    return part
