"""Device access control: which device nodes a container may open, read, write or make.

The rules are the cgroup v1 devices controller's (and the OCI spec's
``linux.resources.devices``): each one allows or denies ``r``/``w``/``m`` access to
character (``c``), block (``b``) or all (``a``) devices by major:minor, ``None``
standing for ``*``. A list of rules reduces to a :class:`Policy` exactly as the v1
kernel reduces its writes (a default, and the exceptions to it), and the kernel
enforces that policy:

- cgroup v2 and hybrid hosts: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program generated
  from the policy (:meth:`Policy.program`), loaded once per distinct policy and
  attached to each container's cgroup2 directory with ``BPF_F_ALLOW_MULTI`` before the
  child is born in it (the kernel runs the device programs of the cgroup2 hierarchy
  on a hybrid host too);
- cgroup v1 hosts (and hybrid ones with ``FASTCONTAIN_DEVICE_CGROUP=v1``): the
  container's own cgroup in the ``devices`` controller, written ``devices.deny a`` and
  then one ``devices.allow`` line per exception (:meth:`Policy.v1_lines`).
  (cgroups.device_backend chooses.)

Every container gets runc's default rules (:data:`DEFAULT_RULES`): mknod of any node
(opening it is what the rules decide), and read/write of the nodes of the default
/dev: null, zero, full, random, urandom, tty, console, ptmx, the pts terminals and
tun. ``--device HOST[:CONTAINER][:PERMS]`` adds one rule for the host node's numbers
with PERMS (any of r, w, m); ``privileged`` allows every device.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import stat
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import CgroupError, ConfigError

__all__ = ["Rule", "Policy", "DEFAULT_RULES", "ALLOW_ALL", "policy", "attach", "load"]

_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_TYPE_BITS = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, _CHAR


def _access(text: str) -> str:
    """Access letters in the kernel's order (r, w, m), each once."""
    return "".join(c for c in "rwm" if c in text)


@dataclass(frozen=True)
class Rule:
    """One rule, as a line of v1 devices.allow / devices.deny: ``allow`` or deny
    ``access`` (letters of rwm) to devices of ``type`` ("a", "c", "b") numbered
    ``major``:``minor`` (None: any)."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def __post_init__(self) -> None:
        if self.type not in ("a", "b", "c"):
            raise ConfigError("devices.type", self.type, "one of a (all), c (character), b (block)")
        if not isinstance(self.access, str) or not self.access or not set(self.access) <= set("rwm"):
            raise ConfigError("devices.access", self.access, "a combination of r, w and m")
        for name in ("major", "minor"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**32 - 1):
                raise ConfigError(f"devices.{name}", v, "a device number, or None (or -1) for any")
        object.__setattr__(self, "access", _access(self.access))

    @classmethod
    def parse(cls, field: str, text: str, allow: bool = True) -> Rule:
        """A v1 line: "c 1:3 rwm", "b *:* m", "a"."""
        parts = text.split()
        try:
            if parts == ["a"]:
                return cls(allow)
            kind, numbers, access = parts
            major, minor = numbers.split(":")
            return cls(allow, kind, None if major == "*" else int(major), None if minor == "*" else int(minor), access)
        except (ValueError, ConfigError):
            raise ConfigError(field, text, "expected a rule such as 'c 1:3 rwm' (type a, b or c; numbers or *; rwm)") from None

    @property
    def line(self) -> str:
        if self.type == "a" and self.major is None and self.minor is None and self.access == "rwm":
            return "a"
        return f"{self.type} {_num(self.major)}:{_num(self.minor)} {self.access}"

    @property
    def resets(self) -> bool:
        """"a" alone (every access to every device): the v1 kernel's reset of the list."""
        return self.line == "a"


def _num(n: int | None) -> str:
    return "*" if n is None else str(n)


# runc's libcontainer/specconv AllowedDevices, which docker and podman rely on: mknod of any
# node (the rules below decide whether it can be opened), the default /dev's nodes, and tun.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(False),  # deny everything not allowed below
    Rule(True, "c", None, None, "m"),
    Rule(True, "b", None, None, "m"),
    Rule(True, "c", 1, 3, "rwm"),  # null
    Rule(True, "c", 1, 5, "rwm"),  # zero
    Rule(True, "c", 1, 7, "rwm"),  # full
    Rule(True, "c", 1, 8, "rwm"),  # random
    Rule(True, "c", 1, 9, "rwm"),  # urandom
    Rule(True, "c", 5, 0, "rwm"),  # tty
    Rule(True, "c", 5, 1, "rwm"),  # console
    Rule(True, "c", 5, 2, "rwm"),  # ptmx
    Rule(True, "c", 136, None, "rwm"),  # pts/*
    Rule(True, "c", 10, 200, "rwm"),  # net/tun (creating an interface still needs CAP_NET_ADMIN)
)
ALLOW_ALL: tuple[Rule, ...] = (Rule(True),)

Entry = tuple[str, "int | None", "int | None", str]  # an exception: (type, major, minor, access)


@dataclass(frozen=True)
class Policy:
    """What a list of rules leaves, as the v1 kernel keeps it: a default (allow or
    deny everything) and exceptions to it, each (type, major, minor, access)."""

    default_allow: bool
    exceptions: tuple[Entry, ...] = ()

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> Policy:
        """The v1 kernel's reduction (security/device_cgroup.c): "a" resets the default
        and clears the exceptions; a rule of the default's kind removes its access from
        the exception with the same type and numbers; a rule of the other kind adds an
        exception, merged into one with the same type and numbers. A rule of type "a"
        with numbers or fewer letters stands for one "c" and one "b" rule."""
        default_allow = True  # a new v1 cgroup's (and the root's) behaviour
        ex: dict[tuple[str, int | None, int | None], str] = {}
        for r in rules:
            if r.resets:
                default_allow, ex = r.allow, {}
                continue
            for kind in ("c", "b") if r.type == "a" else (r.type,):
                key = (kind, r.major, r.minor)
                if r.allow == default_allow:
                    left = _access("".join(c for c in ex.get(key, "") if c not in r.access))
                    if left:
                        ex[key] = left
                    else:
                        ex.pop(key, None)
                else:
                    ex[key] = _access(ex.get(key, "") + r.access)
        return cls(default_allow, tuple((k[0], k[1], k[2], a) for k, a in ex.items()))

    @property
    def allows_all(self) -> bool:
        """Nothing to enforce (privileged): no devices cgroup, no program."""
        return self.default_allow and not self.exceptions

    def allows(self, kind: str, major: int, minor: int, access: str) -> bool:
        """The kernel's check (v1 match_exception / match_exception_partial): with a
        deny default one exception must cover every letter asked; with an allow
        default an exception naming any of them refuses."""
        for t, ma, mi, a in self.exceptions:
            if t != kind or (ma is not None and ma != major) or (mi is not None and mi != minor):
                continue
            if self.default_allow and set(access) & set(a):
                return False
            if not self.default_allow and set(access) <= set(a):
                return True
        return self.default_allow

    def v1_lines(self) -> list[tuple[str, str]]:
        """(file, line) to write, in order, in a new v1 devices cgroup."""
        first = ("devices.allow", "a") if self.default_allow else ("devices.deny", "a")
        other = "devices.deny" if self.default_allow else "devices.allow"
        return [first] + [(other, f"{t} {_num(ma)}:{_num(mi)} {a}") for t, ma, mi, a in self.exceptions]

    def program(self) -> bytes:
        """The policy as a BPF_PROG_TYPE_CGROUP_DEVICE program (struct bpf_insn, little
        endian), in the shape of runc's devicefilter: load the request's type, access,
        major and minor into r2..r5, then one block per exception that returns the
        exception's verdict when it matches, and the default at the end."""
        out = [
            _insn(0x61, 2, 1, 0, 0),  # r2 = *(u32 *)(ctx + 0): access_type
            _insn(0x54, 2, 0, 0, 0xFFFF),  # w2 &= 0xffff: the device type
            _insn(0x61, 3, 1, 0, 0),  # r3 = access_type
            _insn(0x74, 3, 0, 0, 16),  # w3 >>= 16: the access asked
            _insn(0x61, 4, 1, 4, 0),  # r4 = major
            _insn(0x61, 5, 1, 8, 0),  # r5 = minor
        ]
        verdict = 0 if self.default_allow else 1
        for t, ma, mi, a in self.exceptions:
            block: list[tuple[int, int, int, int | None, int]] = []  # (code, dst, src, off or None: to next, imm)
            block.append((0x55, 2, 0, None, _TYPE_BITS[t]))  # if r2 != type goto next
            bits = sum(_ACCESS_BITS[c] for c in a)
            if self.default_allow:  # a denial: matches when it names any letter asked
                block += [(0xBC, 1, 3, 0, 0), (0x54, 1, 0, 0, bits), (0x15, 1, 0, None, 0)]  # w1 = w3 & bits; if 0 goto next
            elif bits != 7:  # an allowance: matches when it covers every letter asked
                block += [(0xBC, 1, 3, 0, 0), (0x54, 1, 0, 0, bits), (0x5D, 1, 3, None, 0)]  # if w1 != w3 goto next
            if ma is not None:
                block.append((0x55, 4, 0, None, ma))
            if mi is not None:
                block.append((0x55, 5, 0, None, mi))
            block += [(0xB7, 0, 0, 0, verdict), (0x95, 0, 0, 0, 0)]  # r0 = verdict; exit
            for i, (code, dst, src, off, imm) in enumerate(block):
                out.append(_insn(code, dst, src, len(block) - i - 1 if off is None else off, imm))
        out += [_insn(0xB7, 0, 0, 0, 1 - verdict), _insn(0x95, 0, 0, 0, 0)]
        return b"".join(out)


def _insn(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm if imm < 2**31 else imm - 2**32)


DEFAULT_POLICY = Policy.of(DEFAULT_RULES)
"""Every container's policy unless told otherwise."""


def device_rule(field: str, host: str, permissions: str) -> Rule:
    """The rule --device HOST:...:PERMS adds: the host node's type and numbers."""
    try:
        st = os.stat(host)
    except OSError as e:
        raise ConfigError(field, host, f"cannot use {host}: {e.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ConfigError(field, host, f"{host} is not a character or block device")
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    return Rule(True, kind, os.major(st.st_rdev), os.minor(st.st_rdev), permissions)


def policy(devices: Sequence[tuple[str, str]] = (), privileged: bool = False, extra: Sequence[Rule] = ()) -> Policy:
    """A container's policy: runc's defaults, then `extra` rules (OCI's), then one
    rule per (host node, permissions) of --device; everything when privileged."""
    if privileged:
        return Policy.of(ALLOW_ALL)
    rules = list(DEFAULT_RULES) + list(extra)
    rules += [device_rule(f"devices[{i}]", host, perms) for i, (host, perms) in enumerate(devices)]
    return Policy.of(rules)


# -- cgroup v2: the BPF program -------------------------------------------------------

_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2


class _ProgLoad(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
    ]


class _ProgAttach(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32), ("replace_bpf_fd", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_programs: OrderedDict[Policy, int] = OrderedDict()  # loaded programs (close-on-exec), least recently used first
_lock = threading.Lock()
CACHED = 32  # programs of policies other than the defaults kept loaded


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    if _SYS_BPF is None:
        raise OSError(_errno.ENOSYS, f"no bpf(2) number known for {os.uname().machine}")
    r = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return int(r)


def load(p: Policy) -> int:
    """Load the policy's program (BPF_PROG_LOAD); returns its descriptor (close-on-exec)."""
    code = p.program()
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"Apache-2.0")  # no GPL-only helpers are called
    log = ctypes.create_string_buffer(1 << 16)

    def attr(log_level: int) -> _ProgLoad:
        return _ProgLoad(
            prog_type=_BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(code) // 8, insns=ctypes.addressof(buf),
            license=ctypes.addressof(lic), log_level=log_level, log_size=len(log) if log_level else 0,
            log_buf=ctypes.addressof(log) if log_level else 0, prog_name=b"fastcontain_dev",
            expected_attach_type=_BPF_CGROUP_DEVICE,
        )

    try:
        return _bpf(_BPF_PROG_LOAD, attr(0))
    except OSError as e:
        err = e.errno or 0
    verifier = ""
    if err == _errno.EACCES or err == _errno.EINVAL:  # again with the verifier's log, to say why
        try:
            os.close(_bpf(_BPF_PROG_LOAD, attr(1)))
        except OSError:
            verifier = " / ".join(log.value.decode(errors="replace").strip().splitlines()[-3:])
    hint = {_errno.EPERM: " (loading BPF programs needs CAP_SYS_ADMIN or CAP_BPF)",
            _errno.EINVAL: " (does this kernel have CONFIG_CGROUP_BPF?)"}.get(err, "")
    raise CgroupError(
        f"loading the device filter (BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program) failed{hint}"
        + (f"; the verifier said: {verifier}" if verifier else ""), errno=err)


def _program(p: Policy) -> int:
    """The loaded program of a policy, loaded on its first use and kept: each container
    then only attaches it. The defaults' stays for the process; of the others (--device,
    OCI rules) the CACHED most recently used do, and an older one is closed (the cgroups
    it is attached to keep it alive)."""
    with _lock:
        fd = _programs.get(p)
        if fd is not None:
            if p != DEFAULT_POLICY:
                _programs.move_to_end(p)
            return fd
        fd = load(p)
        _programs[p] = fd
        others = [q for q in _programs if q != DEFAULT_POLICY]
        if len(others) > CACHED:
            os.close(_programs.pop(others[0]))
        return fd


def _forget_after_fork() -> None:
    """A forked child (a detached container's supervisor, which closes what it inherited)
    loads its own: the parent's descriptors are closed here, before anything else runs."""
    global _lock
    _lock = threading.Lock()
    for fd in _programs.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _programs.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def cached_descriptors() -> frozenset[int]:
    """The descriptors of the programs kept loaded (for a leak check: they are the process's)."""
    with _lock:
        return frozenset(_programs.values())


def program_fd(p: Policy) -> int:
    """The descriptor of the policy's loaded program (loaded now if it is not yet), for
    an attach made elsewhere (cgroups.Manager.create's native one)."""
    return _program(p)


def attach(p: Policy, cgroup_fd: int, path: str) -> None:
    """Attach the policy's program to a cgroup v2 directory (BPF_PROG_ATTACH with
    BPF_F_ALLOW_MULTI: the programs of its ancestors keep applying too)."""
    fd = _program(p)
    try:
        _bpf(_BPF_PROG_ATTACH, _ProgAttach(target_fd=cgroup_fd, attach_bpf_fd=fd, attach_type=_BPF_CGROUP_DEVICE,
                                           attach_flags=_BPF_F_ALLOW_MULTI))
    except OSError as e:
        raise CgroupError(f"attaching the device filter to the cgroup {path} (BPF_PROG_ATTACH, BPF_CGROUP_DEVICE) failed",
                          path=path, errno=e.errno or 0) from None


def prepare(p: Policy) -> None:
    """Load a policy's program now (the defaults', at the Manager's start), so no
    container waits for it: BPF_PROG_LOAD with its verifier and JIT costs about
    0.3 ms here, an attach a few microseconds."""
    if not p.allows_all:
        _program(p)


# -- privileged: the host's nodes ------------------------------------------------------

# What runc's GetDevices("/dev") passes over: other file systems' folders and the console.
_SKIP_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
# Nodes and links every container's /dev already has (rust/src/mount.rs DEVICES and DEV_LINKS).
_OWN = frozenset({"null", "zero", "full", "random", "urandom", "tty", "ptmx", "console"})


HostNode = tuple[str, int, int, int, int, int]  # (path, st_mode, major, minor, uid, gid)
_scan: tuple[tuple[tuple[str, int], ...], list[HostNode]] | None = None  # (folders' mtimes, nodes)


def host_devices(root: str = "/dev") -> list[HostNode]:
    """The host's character and block nodes under /dev, as docker gives a privileged
    container: (path, st_mode, major, minor, uid, gid). Devices come and go: the last
    scan is reused only while no folder it read has changed (their mtimes)."""
    global _scan
    if _scan is not None and _scan[0] and _scan[0][0][0] == root:
        try:
            if all(os.stat(d).st_mtime_ns == m for d, m in _scan[0]):
                return list(_scan[1])
        except OSError:
            pass
    folders: list[tuple[str, int]] = []
    found: list[HostNode] = []

    def walk(d: str, top: bool) -> None:
        try:
            folders.append((d, os.stat(d).st_mtime_ns))
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name not in _SKIP_DIRS:
                    walk(e.path, False)
                continue
            if top and e.name in _OWN:
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                found.append((e.path, st.st_mode, os.major(st.st_rdev), os.minor(st.st_rdev), st.st_uid, st.st_gid))

    walk(root, True)
    _scan = (tuple(folders), found)
    return list(found)
