"""Cgroups: one per container, under a parent fastcontain owns, on any host layout.

Three layouts exist and all work:

- ``v2``: ``/sys/fs/cgroup`` is cgroup2 (most hosts). The child is born in its
  cgroup through clone3's CLONE_INTO_CGROUP with a directory fd; limits are
  ``memory.max``, ``cpu.max``, ``pids.max``, ``cpuset.cpus``, ``io.max``...
- ``hybrid``: v1 controllers plus a cgroup2 mount (``/sys/fs/cgroup/unified``)
  without controllers. The unified cgroup carries membership (the child is born
  in it), ``cgroup.kill`` and CPU time; v1 controllers carry the limits, and the
  pid is written to them while the child waits for start. Only the controllers
  the limits need are joined: a v1 attach costs an RCU grace period (~8 ms) when
  the host was idle, so a container without limits has none.
- ``v1``: controllers only. The pid is written to each controller's cgroup;
  kill-all goes through the freezer.

Everything that can be done once (detection, the parent cgroups, enabling and
checking controllers and files) is done once per :class:`Manager`; `manager()`
is the process's, and its first use sweeps cgroups left by crashed runs.
Each container's cgroup records its owner (the state dir, whose lock a live
owner holds) in an extended attribute, so the sweep never takes a live one.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import signal
import stat as _stat
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, cast

from . import cgroupdir as _cgroupdir
from . import devices as _devices
from . import nativefn as _nativefn
from .errors import CgroupError, ConfigError

__all__ = [
    "CgroupError", "Resources", "Setting", "Host", "Manager", "Cgroup", "manager",
    "parse_bytes", "parse_cpu_list", "format_cpu_list", "online_cpus",
]

DEFAULT_PARENT = "fastcontain"
CPU_PERIOD_US = 100_000
V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices")
MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum
OWNER_XATTR = "trusted.fastcontain.owner"  # the owning container's state dir
_MAKE_FAILED = {  # what failed in making a cgroup v2 directory (_native.make_cgroup_dir's parts)
    "mkdir": "creating the cgroup {} failed",
    "open": "opening the cgroup {} failed",
    "attach": "attaching the device filter to the cgroup {} (BPF_PROG_ATTACH, BPF_CGROUP_DEVICE) failed",
}
_ID = re.compile(r"[0-9a-f]{16}\Z")


# -- CPU lists ----------------------------------------------------------------------


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parse the kernel's CPU list format ("0-3,6,8-9")."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        lo, dash, hi = part.partition("-")
        first, last = int(lo), int(hi) if dash else int(lo)
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | Sequence[int]) -> str:
    """The kernel's CPU list format: "0-3,6"."""
    out: list[str] = []
    for c in sorted(set(cpus)):
        if out and out[-1].split("-")[-1] == str(c - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        else:
            out.append(str(c))
    return ",".join(out)


def online_cpus() -> frozenset[int]:
    """The CPUs a container may be given: online ones this process may use."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            online = parse_cpu_list(f.read())
    except (OSError, ValueError):
        return frozenset(os.sched_getaffinity(0))
    return online & frozenset(os.sched_getaffinity(0))


# -- values ---------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(field_name: str, value: int | str | None) -> int | None:
    """docker's sizes: 1048576, "512k", "32m", "1g" (also "32mb"); -1 means unlimited."""
    if value is None or isinstance(value, bool):
        return None if value is None else _bad_bytes(field_name, value)
    if isinstance(value, int):
        return value if value >= -1 else _bad_bytes(field_name, value)
    text = str(value).strip().lower()
    if text == "-1":
        return -1
    if text.endswith("b") and len(text) > 1 and text[-2] in "kmgt":
        text = text[:-1]
    num, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "")
    try:
        n = float(num)
    except ValueError:
        return _bad_bytes(field_name, value)
    if n < 0:
        return _bad_bytes(field_name, value)
    return int(n * _UNITS[unit])


def _bad_bytes(field_name: str, value: object) -> int:
    raise ConfigError(field_name, value, "expected a size such as 67108864, '512k', '64m' or '1g' (-1: unlimited)")


class Setting(NamedTuple):
    """One value to write: which option asked for it, in which controller and file;
    `fallback` is (file, value) where a kernel may offer only that instead."""

    field: str
    controller: str
    file: str
    value: str
    fallback: tuple[str, str] | None = None


@dataclass(frozen=True)
class Resources:
    """Limits, with docker's names (``--memory`` is ``memory``, ``--pids-limit`` is ``pids_limit``).

    ``cpus`` is docker's ``--cpus``: a CFS quota of that many CPUs' time per
    period. ``cpuset_cpus`` pins to CPUs: the cpuset cgroup and, before exec,
    sched_setaffinity. ``blkio_weight`` and ``device_*_bps`` need the io (v2) or
    blkio (v1) controller."""

    memory: int | str | None = None
    memory_swap: int | str | None = None
    memory_reservation: int | str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    pids_limit: int | None = None
    cpuset_cpus: str | Sequence[int] | None = None
    cpuset_mems: str | None = None
    blkio_weight: int | None = None
    device_read_bps: Sequence[tuple[str, int | str]] = ()
    device_write_bps: Sequence[tuple[str, int | str]] = ()
    device_policy: _devices.Policy = _devices.DEFAULT_POLICY
    """Which device nodes may be opened or made (fastcontain.devices): runc's defaults
    unless --device, privileged or OCI rules say otherwise. Not a Config field."""

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name in ("memory", "memory_swap", "memory_reservation"):
            put(name, parse_bytes(name, getattr(self, name)))
        mem, swap, reservation = (cast("int | None", getattr(self, n)) for n in ("memory", "memory_swap", "memory_reservation"))
        if mem is not None and mem != -1 and mem < MIN_MEMORY:
            raise ConfigError("memory", mem, f"the minimum is {MIN_MEMORY} bytes (6m)")
        if swap is not None:
            if mem is None or mem == -1:
                raise ConfigError("memory_swap", swap, "needs memory to be set too (it is memory plus swap)")
            if swap != -1 and swap < mem:
                raise ConfigError("memory_swap", swap, f"must be at least memory ({mem}), or -1 for unlimited swap")
        if reservation is not None and mem is not None and mem != -1 and reservation != -1 and reservation > mem:
            raise ConfigError("memory_reservation", reservation, f"must not exceed memory ({mem})")
        for name in ("cpu_shares", "cpu_period", "cpu_quota", "pids_limit", "blkio_weight"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(name, v, "expected an integer")
        if self.cpus is not None:
            if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or not self.cpus > 0:
                raise ConfigError("cpus", self.cpus, "expected a positive number of CPUs, such as 0.5 or 2")
            n = len(online_cpus())
            if self.cpus > n:
                raise ConfigError("cpus", self.cpus, f"only {n} CPUs are available")
            if self.cpus * CPU_PERIOD_US < 1000:
                raise ConfigError("cpus", self.cpus, "the minimum is 0.01 (a quota of 1 ms per 100 ms)")
            if self.cpu_quota is not None or self.cpu_period is not None:
                raise ConfigError("cpus", self.cpus, "cpus and cpu_period/cpu_quota are exclusive, as in docker")
            put("cpus", float(self.cpus))
        if self.cpu_shares is not None and not 2 <= self.cpu_shares <= 262144:
            raise ConfigError("cpu_shares", self.cpu_shares, "must be between 2 and 262144")
        if self.cpu_period is not None and not 1000 <= self.cpu_period <= 1_000_000:
            raise ConfigError("cpu_period", self.cpu_period, "must be between 1000 and 1000000 microseconds")
        if self.cpu_quota is not None and self.cpu_quota != -1 and self.cpu_quota < 1000:
            raise ConfigError("cpu_quota", self.cpu_quota, "must be at least 1000 microseconds, or -1")
        if self.pids_limit is not None and self.pids_limit != -1 and self.pids_limit < 1:
            raise ConfigError("pids_limit", self.pids_limit, "must be positive, or -1 for unlimited")
        if self.blkio_weight is not None and not 10 <= self.blkio_weight <= 1000:
            raise ConfigError("blkio_weight", self.blkio_weight, "must be between 10 and 1000")
        if self.cpuset_cpus is not None:
            put("cpuset_cpus", _cpu_set_field(self.cpuset_cpus))
        if self.cpuset_mems is not None:
            try:
                if not isinstance(self.cpuset_mems, str):
                    raise ValueError
                put("cpuset_mems", format_cpu_list(parse_cpu_list(self.cpuset_mems)))
            except ValueError:
                raise ConfigError("cpuset_mems", self.cpuset_mems, "expected a memory node list such as '0' or '0-1'") from None
        for name in ("device_read_bps", "device_write_bps"):
            items = getattr(self, name)
            if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
                raise ConfigError(name, items, "expected a sequence of (DEVICE_PATH, RATE)")
            rates = []
            for i, item in enumerate(items):
                if isinstance(item, str):  # docker's "PATH:RATE"
                    path, colon, rate_text = item.rpartition(":")
                    if not colon or not path:
                        raise ConfigError(f"{name}[{i}]", item, "expected DEVICE_PATH:RATE, such as /dev/vda:1m")
                    item = (path, rate_text)
                try:
                    path, rate = item
                except (TypeError, ValueError):
                    raise ConfigError(f"{name}[{i}]", item, "expected (DEVICE_PATH, RATE)") from None
                try:
                    st = os.stat(path)
                except (OSError, TypeError, ValueError) as e:
                    raise ConfigError(f"{name}[{i}]", path, f"cannot stat the device: {getattr(e, 'strerror', e)}") from None
                if not _stat.S_ISBLK(st.st_mode):
                    raise ConfigError(f"{name}[{i}]", path, "not a block device")
                bps = parse_bytes(f"{name}[{i}]", rate)
                if bps is None or bps < 1:
                    raise ConfigError(f"{name}[{i}]", rate, "expected a positive rate in bytes per second, such as '1m'")
                rates.append((f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", bps))
            put(name, tuple(rates))

    @property
    def cpu_set(self) -> tuple[int, ...] | None:
        """The CPUs of cpuset_cpus, for sched_setaffinity."""
        assert self.cpuset_cpus is None or isinstance(self.cpuset_cpus, str)
        return tuple(sorted(parse_cpu_list(self.cpuset_cpus))) if self.cpuset_cpus else None

    @property
    def empty(self) -> bool:
        """No limit at all: the container's cgroup is only membership and accounting."""
        return not self.v2_files()

    def quota(self) -> tuple[int, int] | None:
        """(quota, period) in µs; quota -1 is unlimited."""
        if self.cpus is not None:
            return int(self.cpus * CPU_PERIOD_US), CPU_PERIOD_US
        if self.cpu_quota is not None or self.cpu_period is not None:
            return (self.cpu_quota if self.cpu_quota is not None else -1), self.cpu_period or CPU_PERIOD_US
        return None

    def _cpu_field(self) -> str:
        return "cpus" if self.cpus is not None else "cpu_quota" if self.cpu_quota is not None else "cpu_period"

    def v2_files(self) -> list[Setting]:
        """What to write in a cgroup v2 directory."""
        out: list[Setting] = []
        mem, swap, low = (cast("int | None", getattr(self, n)) for n in ("memory", "memory_swap", "memory_reservation"))
        if mem is not None:
            out.append(Setting("memory", "memory", "memory.max", _max(mem)))
        if swap is not None:
            assert mem is not None
            out.append(Setting("memory_swap", "memory", "memory.swap.max", "max" if swap == -1 else str(swap - mem)))
        if low is not None:
            out.append(Setting("memory_reservation", "memory", "memory.low", _max(low)))
        q = self.quota()
        if q is not None:
            out.append(Setting(self._cpu_field(), "cpu", "cpu.max", f"{_max(q[0])} {q[1]}"))
        if self.cpu_shares is not None:  # docker's (runc's) conversion of shares to weight
            out.append(Setting("cpu_shares", "cpu", "cpu.weight", str(1 + ((self.cpu_shares - 2) * 9999) // 262142)))
        if self.pids_limit is not None:
            out.append(Setting("pids_limit", "pids", "pids.max", _max(self.pids_limit)))
        if self.cpuset_mems is not None:
            out.append(Setting("cpuset_mems", "cpuset", "cpuset.mems", str(self.cpuset_mems)))
        if self.cpuset_cpus is not None:
            out.append(Setting("cpuset_cpus", "cpuset", "cpuset.cpus", str(self.cpuset_cpus)))
        if self.blkio_weight is not None:
            weight = f"default {1 + (self.blkio_weight - 10) * 9999 // 990}"  # runc's conversion
            # without iocost, BFQ's weight takes blkio's scale, as runc writes it
            out.append(Setting("blkio_weight", "io", "io.weight", weight, ("io.bfq.weight", f"default {self.blkio_weight}")))
        for dev, rate in self.device_read_bps:
            out.append(Setting("device_read_bps", "io", "io.max", f"{dev} rbps={rate}"))
        for dev, rate in self.device_write_bps:
            out.append(Setting("device_write_bps", "io", "io.max", f"{dev} wbps={rate}"))
        return out

    def v1_files(self) -> list[Setting]:
        """What to write in cgroup v1 controllers, in a valid order (memory before
        memory+swap, the period before the quota)."""
        out: list[Setting] = []
        if self.memory is not None:
            out.append(Setting("memory", "memory", "memory.limit_in_bytes", str(self.memory)))
        if self.memory_swap is not None:
            out.append(Setting("memory_swap", "memory", "memory.memsw.limit_in_bytes", str(self.memory_swap)))
        if self.memory_reservation is not None:
            out.append(Setting("memory_reservation", "memory", "memory.soft_limit_in_bytes", str(self.memory_reservation)))
        q = self.quota()
        if q is not None:
            out.append(Setting(self._cpu_field(), "cpu", "cpu.cfs_period_us", str(q[1])))
            out.append(Setting(self._cpu_field(), "cpu", "cpu.cfs_quota_us", str(q[0])))
        if self.cpu_shares is not None:
            out.append(Setting("cpu_shares", "cpu", "cpu.shares", str(self.cpu_shares)))
        if self.pids_limit is not None:
            out.append(Setting("pids_limit", "pids", "pids.max", _max(self.pids_limit)))
        if self.cpuset_mems is not None:
            out.append(Setting("cpuset_mems", "cpuset", "cpuset.mems", str(self.cpuset_mems)))
        if self.cpuset_cpus is not None:
            out.append(Setting("cpuset_cpus", "cpuset", "cpuset.cpus", str(self.cpuset_cpus)))
        if self.blkio_weight is not None:
            out.append(Setting("blkio_weight", "blkio", "blkio.weight", str(self.blkio_weight),
                               ("blkio.bfq.weight", str(self.blkio_weight))))  # CFQ's, else BFQ's
        for dev, rate in self.device_read_bps:
            out.append(Setting("device_read_bps", "blkio", "blkio.throttle.read_bps_device", f"{dev} {rate}"))
        for dev, rate in self.device_write_bps:
            out.append(Setting("device_write_bps", "blkio", "blkio.throttle.write_bps_device", f"{dev} {rate}"))
        return out


RESOURCE_FIELDS = tuple(f for f in Resources.__dataclass_fields__ if f != "device_policy")
"""Config's fields that are limits (the same names as Resources')."""


def _cpu_set_field(value: object) -> str:
    try:
        if isinstance(value, str):
            cpus = parse_cpu_list(value)
        elif isinstance(value, Sequence) and value and all(isinstance(c, int) and not isinstance(c, bool) for c in value):
            cpus = frozenset(value)
            if min(cpus) < 0:
                raise ValueError("negative CPU number")
        else:
            raise ValueError("not a list")
    except ValueError as e:
        raise ConfigError("cpuset_cpus", value, f"expected a CPU list such as '0-1,3' or [0, 1, 3] ({e})") from None
    allowed = online_cpus()
    if not cpus <= allowed:
        raise ConfigError(
            "cpuset_cpus", value, f"CPUs {format_cpu_list(cpus - allowed)} are not online CPUs this process may use "
            f"(those are {format_cpu_list(allowed)})")
    return format_cpu_list(cpus)


def _max(v: int) -> str:
    return "max" if v == -1 else str(v)


# -- the host -------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    layout: str  # "v2", "hybrid" or "v1"
    unified: str | None  # the cgroup2 mount point
    v1: Mapping[str, str] = field(default_factory=dict)  # controller -> mount point

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo") -> Host:
        unified: str | None = None
        v1: dict[str, str] = {}
        with open(mountinfo) as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fstype, _src, super_opts = (post.split() + ["", "", ""])[:3]
                point = pre.split()[4]
                if fstype == "cgroup2" and unified is None:
                    unified = point
                elif fstype == "cgroup":
                    for opt in super_opts.split(","):
                        if opt in V1_CONTROLLERS:
                            v1.setdefault(opt, point)
        if unified is None and not v1:
            raise CgroupError(f"no cgroup filesystem is mounted (read {mountinfo}): mount cgroup2 on /sys/fs/cgroup")
        if not v1:
            return cls("v2", unified, {})
        return cls("hybrid" if unified else "v1", unified, v1)

    def mount(self, key: str) -> str:
        """The mount point of a hierarchy: "unified" or a v1 controller."""
        point = self.unified if key == "unified" else self.v1.get(key)
        assert point is not None, key
        return point

    @property
    def keys(self) -> list[str]:
        """Every hierarchy: "unified" (if mounted), then the v1 controllers."""
        return (["unified"] if self.unified else []) + list(self.v1)


# -- file access -------------------------------------------------------------------------


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"opening {path} to write {value!r} failed", path=path, errno=e.errno or 0) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        hint = ""
        if path.endswith(("cpuset.cpus", "cpuset.mems")):
            hint = " (a cpuset must be within its parent's, and v1 needs both cpuset.cpus and cpuset.mems)"
        elif path.endswith("cgroup.procs") and e.errno == _errno.ENOSPC:
            hint = " (an empty v1 cpuset: its cpuset.cpus or cpuset.mems is not set)"
        raise CgroupError(f"writing {value!r} to {path} failed{hint}", path=path, errno=e.errno or 0) from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    """A cgroup file's text, with os.open and os.read: four syscalls where open() takes
    nine (two fstat, an ioctl and two lseek for its buffering), on the path of every run()
    on v2 hosts (memory.events and memory.peak after each container)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _read_int(path: str) -> int | None:
    try:
        text = _read(path).strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _keyed(path: str) -> dict[str, int] | None:
    """A "key value" file (cpu.stat, memory.events, memory.oom_control); None if absent."""
    try:
        text = _read(path)
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- per container ---------------------------------------------------------------------


class Cgroup:
    """One container's cgroup: a directory per hierarchy, owned until :meth:`remove`."""

    def __init__(self, manager: Manager, cid: str) -> None:
        self.manager = manager
        self.id = cid
        self.dirs: dict[str, str] = {}  # "unified" or a v1 controller -> directory
        self.fd: int | None = None  # the unified directory, for CLONE_INTO_CGROUP

    @classmethod
    def of(cls, cid: str, dirs: Mapping[str, str]) -> Cgroup:
        """A view of an existing container's cgroup from its recorded directories (another
        process made it: a detached container's supervisor), to read stats or OOM kills."""
        cg = cls(manager(), cid)
        cg.dirs = dict(dirs)
        return cg

    @property
    def path(self) -> str | None:
        """The unified directory, else the first v1 one (for messages and tests)."""
        return self.dirs.get("unified") or next(iter(self.dirs.values()), None)

    @property
    def needs_attach(self) -> bool:
        """True when the pid must be written to v1 controllers (before exec)."""
        return any(k != "unified" for k in self.dirs)

    def attach(self, pid: int) -> None:
        """Write pid to every v1 controller's cgroup.procs (the unified one it was born in)."""
        for key, d in self.dirs.items():
            if key != "unified":
                _write(os.path.join(d, "cgroup.procs"), str(pid))

    def procs(self) -> list[int]:
        d = self.dirs.get("unified") or self.dirs.get("freezer") or self.dirs.get("pids") or self.path
        if d is None:
            return []
        try:
            return [int(p) for p in _read(os.path.join(d, "cgroup.procs")).split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, so a forking payload cannot escape:
        cgroup.kill where there is a cgroup2 directory (v2, and hybrid's unified one),
        else the v1 freezer: freeze, kill each, thaw."""
        uni = self.dirs.get("unified")
        if uni and self.manager.has_cgroup_kill:
            _write(os.path.join(uni, "cgroup.kill"), "1")
            return
        freezer = self.dirs.get("freezer")
        if freezer:
            state = os.path.join(freezer, "freezer.state")
            _write(state, "FROZEN")
            try:
                for _ in range(1000):
                    if _read(state).strip() == "FROZEN":
                        break
                    time.sleep(0.001)
                for pid in self.procs():
                    _kill(pid)
            finally:
                _write(state, "THAWED")
            return
        for _ in range(3):  # neither cgroup.kill nor a freezer: kill in rounds
            for pid in self.procs():
                _kill(pid)

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer took in this cgroup; None when the
        container has no memory cgroup (hybrid and v1 without a memory limit)."""
        if self.manager.host.layout == "v2" and "unified" in self.dirs:  # (a rootless container has none)
            events = _keyed(os.path.join(self.dirs["unified"], "memory.events"))
        elif "memory" in self.dirs:
            events = _keyed(os.path.join(self.dirs["memory"], "memory.oom_control"))
        else:
            return None
        return None if events is None else events.get("oom_kill", 0)

    def memory_peak(self) -> int | None:
        """stats()'s memory_peak alone (bytes): what run() reports after every container,
        without reading the other files."""
        if self.manager.host.layout == "v2":
            uni = self.dirs.get("unified")
            return _read_int(os.path.join(uni, "memory.peak")) if uni else None
        mem = self.dirs.get("memory")
        return _read_int(os.path.join(mem, "memory.max_usage_in_bytes")) if mem else None

    def stats(self) -> dict[str, int | None]:
        """Read at once: cpu_usage_us, memory_current and memory_peak (bytes), pids_current,
        oom_kills, io_read_bytes and io_write_bytes. None where the layout cannot tell."""
        s: dict[str, int | None] = dict.fromkeys(
            ("cpu_usage_us", "memory_current", "memory_peak", "pids_current", "oom_kills", "io_read_bytes", "io_write_bytes"))
        uni = self.dirs.get("unified")
        if uni:
            s["cpu_usage_us"] = (_keyed(os.path.join(uni, "cpu.stat")) or {}).get("usage_usec")
            try:  # cgroup.threads lists every task, which is what pids.current counts
                s["pids_current"] = len(_read(os.path.join(uni, "cgroup.threads")).split())
            except OSError:
                pass
        elif "cpuacct" in self.dirs:
            ns = _read_int(os.path.join(self.dirs["cpuacct"], "cpuacct.usage"))
            s["cpu_usage_us"] = None if ns is None else ns // 1000
        if self.manager.host.layout == "v2" and uni:  # (a rootless container has no cgroup)
            s["memory_current"] = _read_int(os.path.join(uni, "memory.current"))
            s["memory_peak"] = _read_int(os.path.join(uni, "memory.peak"))
            s["pids_current"] = _read_int(os.path.join(uni, "pids.current"))
            try:
                text = _read(os.path.join(uni, "io.stat"))
                io = {"rbytes": 0, "wbytes": 0}
                for line in text.splitlines():
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        if k in io:
                            io[k] += int(v)
                s["io_read_bytes"], s["io_write_bytes"] = io["rbytes"], io["wbytes"]
            except OSError:
                pass
        else:
            mem = self.dirs.get("memory")
            if mem:
                s["memory_current"] = _read_int(os.path.join(mem, "memory.usage_in_bytes"))
                s["memory_peak"] = _read_int(os.path.join(mem, "memory.max_usage_in_bytes"))
            if "pids" in self.dirs:
                s["pids_current"] = _read_int(os.path.join(self.dirs["pids"], "pids.current"))
            if "blkio" in self.dirs:
                try:
                    text = _read(os.path.join(self.dirs["blkio"], "blkio.throttle.io_service_bytes_recursive"))
                    io = {"Read": 0, "Write": 0}
                    for line in text.splitlines():
                        parts = line.split()
                        if len(parts) == 3 and parts[1] in io:
                            io[parts[1]] += int(parts[2])
                    s["io_read_bytes"], s["io_write_bytes"] = io["Read"], io["Write"]
                except OSError:
                    pass
        s["oom_kills"] = self.oom_kills()
        return s

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left, then rmdir every directory (bounded retries). Idempotent."""
        self.close()
        # The usual case first: the container was reaped and nothing else is in its cgroup,
        # so each rmdir succeeds at once (a cgroup with a process in it refuses, EBUSY: then
        # the kill and the retries below). One syscall a directory on the teardown worker,
        # instead of reading cgroup.procs through Python's io first: each of those syscalls
        # hands the GIL to and fro with the threads starting containers.
        for key, d in reversed(list(self.dirs.items())):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                break
            del self.dirs[key]
        if not self.dirs:
            return
        if self.procs():
            self.kill()
        deadline = time.monotonic() + timeout
        errors: list[CgroupError] = []
        for key, d in reversed(list(self.dirs.items())):
            try:
                _cgroupdir.rmdir(d, deadline)
                del self.dirs[key]
            except CgroupError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<Cgroup {self.path or self.id}>"


class Manager:
    """The parent cgroups fastcontain owns on this host, prepared and checked once."""

    def __init__(self, parent: str | None = None, host: Host | None = None) -> None:
        self.parent = (parent or os.environ.get("FASTCONTAIN_CGROUP_PARENT") or DEFAULT_PARENT).strip("/")
        if not self.parent or ".." in self.parent.split("/"):
            raise ConfigError("cgroup_parent", parent, "a relative cgroup path such as 'fastcontain'")
        self.host = host or Host.detect()
        self._ready: dict[str, str] = {}  # hierarchy key -> our parent directory in it
        self._checked: set[tuple[str, str]] = set()  # (controller, file) known to exist
        self._lock = threading.Lock()
        self.has_cgroup_kill = False  # cgroup.kill (5.14+) is not in a root: known once our parent exists
        self.device_backend = device_backend(self.host)

    # -- once per process ------------------------------------------------------------

    def prepare(self) -> None:
        """Create our parent in every hierarchy a container may join (on v2, enabling
        the controllers), so no container pays for it and none finds it half-made."""
        keys = ["unified"] if self.host.unified else []
        wanted = ("memory", "pids", "cpu", "cpuset", "blkio") + (("freezer", "cpuacct") if self.host.layout == "v1" else ())
        keys += [c for c in wanted + (("devices",) if self.device_backend == "v1" else ()) if c in self.host.v1]
        for key in keys:
            self.parent_dir(key)
        if self.device_backend == "bpf":
            _devices.prepare(_devices.DEFAULT_POLICY)  # loaded once: each container only attaches it

    def parent_dir(self, key: str) -> str:
        """Our parent in a hierarchy, created (and on v2 given its controllers) on first use."""
        d = self._ready.get(key)
        if d is not None:
            return d
        with self._lock:
            mount = self.host.mount(key)
            d = os.path.join(mount, self.parent)
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise CgroupError(f"creating fastcontain's parent cgroup {d} failed", path=d, errno=e.errno or 0) from None
            if key == "unified" and self.host.layout == "v2":
                self._enable_v2_controllers(mount)
            if key == "cpuset":  # v1: an empty cpuset refuses tasks; take the parent's
                for f in ("cpuset.mems", "cpuset.cpus"):
                    if not _read(os.path.join(d, f)).strip():
                        _write(os.path.join(d, f), _read(os.path.join(os.path.dirname(d), f)).strip())
            if key == "unified":
                self.has_cgroup_kill = os.path.exists(os.path.join(d, "cgroup.kill"))
            self._ready[key] = d
        return d

    def _enable_v2_controllers(self, mount: str) -> None:
        """Enable every controller we use, from the root down to our parent's children."""
        path = mount
        for part in [""] + self.parent.split("/"):
            path = os.path.join(path, part) if part else path
            have = set(_read(os.path.join(path, "cgroup.controllers")).split())
            enabled = set(_read(os.path.join(path, "cgroup.subtree_control")).split())
            missing = [c for c in V2_CONTROLLERS if c in have and c not in enabled]
            if missing:
                # One at a time: a controller that cannot be enabled must not stop the others.
                for c in missing:
                    try:
                        _write(os.path.join(path, "cgroup.subtree_control"), "+" + c)
                    except CgroupError:
                        pass  # check() names it if a container needs it

    def check(self, settings: Iterable[Setting]) -> None:
        """Raise CgroupError naming the controller and file if this host cannot apply a
        setting. Each (controller, file) is checked once per process."""
        for s in settings:
            if (s.controller, s.file) in self._checked:
                continue
            if self.host.layout == "v2":
                parent = self.parent_dir("unified")
                control = os.path.join(parent, "cgroup.subtree_control")
                if s.controller not in _read(control).split():
                    root = os.path.join(self.host.mount("unified"), "cgroup.controllers")
                    raise CgroupError(
                        f"{s.field} needs the cgroup v2 controller '{s.controller}', which is not enabled in {control} "
                        f"(available at the root, {root}: {_read(root).strip() or 'none'}); enable it with "
                        f"'echo +{s.controller} > cgroup.subtree_control' in each cgroup down to {parent}")
            elif s.controller not in self.host.v1:
                raise CgroupError(
                    f"{s.field} needs the cgroup v1 controller '{s.controller}', which is not mounted "
                    f"(no cgroup filesystem with '{s.controller}' in /proc/self/mountinfo; docker expects "
                    f"/sys/fs/cgroup/{s.controller})")
            else:
                parent = self.parent_dir(s.controller)
            if not os.path.exists(os.path.join(parent, s.file)):
                if s.fallback and os.path.exists(os.path.join(parent, s.fallback[0])):
                    self._checked.add((s.controller, s.file))
                    continue
                also = f" nor {s.fallback[0]}" if s.fallback else ""
                raise CgroupError(
                    f"{s.field} cannot be applied: this kernel's '{s.controller}' controller has no {s.file}{also} "
                    f"({os.path.join(parent, s.file)} does not exist)", path=os.path.join(parent, s.file))
            self._checked.add((s.controller, s.file))

    def settings(self, res: Resources) -> list[Setting]:
        return res.v2_files() if self.host.layout == "v2" else res.v1_files()

    def keys_for(self, res: Resources) -> list[str]:
        """The hierarchies a container with these limits joins."""
        if self.host.layout == "v2":
            return ["unified"]
        asked = [s.controller for s in self.settings(res)]
        if self.device_backend == "v1" and not res.device_policy.allows_all:
            asked.append("devices")
        if self.host.layout == "hybrid":  # membership, kill and CPU time are the unified cgroup's
            return ["unified"] + list(dict.fromkeys(asked))
        base = [c for c in ("freezer", "cpuacct", "memory", "pids") if c in self.host.v1]
        return list(dict.fromkeys(base + asked))

    # -- per container -----------------------------------------------------------------

    def create(self, cid: str, res: Resources = Resources(), owner: str | None = None) -> Cgroup:
        """Make the container's cgroup with its limits, recording `owner` (its state dir)
        for the sweep. On any failure nothing is left."""
        settings = self.settings(res)
        self.check(settings)
        if self.device_backend == "v1" and not res.device_policy.allows_all and "devices" not in self.host.v1:
            raise CgroupError("device rules (every container's defaults) need the cgroup v1 'devices' controller, "
                              "which is not mounted (no cgroup filesystem with 'devices' in /proc/self/mountinfo), "
                              "or a cgroup2 hierarchy for a device program")
        keys = self.keys_for(res)
        parents = [self.parent_dir(k) for k in keys]
        cg = Cgroup(self, cid)
        program = self.device_backend == "bpf" and not res.device_policy.allows_all
        make_dir = _nativefn.get("make_cgroup_dir")
        try:
            for key, parent in zip(keys, parents):
                d = os.path.join(parent, cid)
                if key == "unified" and make_dir is not None:  # natively: mkdir, xattr, open, attach
                    fd, failed = make_dir(d, (OWNER_XATTR, owner.encode()) if owner is not None else None,
                                          _devices.program_fd(res.device_policy) if program else -1)
                    if failed is not None:
                        part, err = failed
                        raise CgroupError(_MAKE_FAILED[part].format(d), path=d, errno=err)
                    cg.dirs[key], cg.fd = d, fd
                    continue
                try:
                    os.mkdir(d)
                except OSError as e:
                    raise CgroupError(_MAKE_FAILED["mkdir"].format(d), path=d, errno=e.errno or 0) from None
                cg.dirs[key] = d
                if owner is not None:
                    try:
                        os.setxattr(d, OWNER_XATTR, owner.encode())
                    except OSError:
                        pass  # the sweep then goes by age
            if "cpuset" in cg.dirs and self.host.layout != "v2":
                parent = os.path.dirname(cg.dirs["cpuset"])
                for f in ("cpuset.mems", "cpuset.cpus"):  # v1 children start empty
                    _write(os.path.join(cg.dirs["cpuset"], f), _read(os.path.join(parent, f)).strip())
            for s in settings:
                d = cg.dirs["unified" if self.host.layout == "v2" else s.controller]
                name, value = s.file, s.value
                if s.fallback and not os.path.exists(os.path.join(d, name)):
                    name, value = s.fallback
                _write(os.path.join(d, name), value)
            if "devices" in cg.dirs:  # v1: the policy as the controller's own lines
                for file, line in res.device_policy.v1_lines():
                    _write(os.path.join(cg.dirs["devices"], file), line)
            if "unified" in cg.dirs and cg.fd is None:
                d = cg.dirs["unified"]
                try:
                    cg.fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError as e:
                    raise CgroupError(_MAKE_FAILED["open"].format(d), path=d, errno=e.errno or 0) from None
                if self.device_backend == "bpf" and not res.device_policy.allows_all:
                    _devices.attach(res.device_policy, cg.fd, d)  # before the child is born in it
        except BaseException:
            cg.remove()
            raise
        return cg

    # -- crash recovery ----------------------------------------------------------------

    def sweep(self, owner_alive: Callable[[str], bool], min_age: float = 60.0) -> list[str]:
        """Remove the cgroups under our parent that no live container owns (a crashed
        run's), killing what still runs in them. A cgroup names its owner's state dir
        in an xattr; one without (its creator was between mkdir and setxattr, or the
        file system refused xattrs) is left alone while younger than min_age.
        Returns the ids removed."""
        found: dict[str, dict[str, str]] = {}
        for key in self.host.keys:
            base = os.path.join(self.host.mount(key), self.parent)
            try:
                entries = list(os.scandir(base))
            except OSError:
                continue
            for e in entries:
                if _ID.match(e.name) and e.is_dir(follow_symlinks=False):
                    found.setdefault(e.name, {})[key] = e.path
        removed = []
        now = time.time()
        for cid, dirs in sorted(found.items()):
            owner = _owner(dirs.values())
            if owner is not None:
                if owner_alive(owner):
                    continue
            elif any(now - _ctime(d) < min_age for d in dirs.values()):
                continue
            cg = Cgroup(self, cid)
            cg.dirs = dict(dirs)
            try:
                cg.remove()
                removed.append(cid)
            except CgroupError:
                pass  # still busy: the next start tries again
        return removed

    def sweep_session_parents(self) -> list[str]:
        """Remove the empty parents test sessions left (`<parent>-test-PID-HEX`, beside
        ours, in every hierarchy) whose session process is gone: a killed pytest run's.
        Only empty ones go (rmdir of a cgroup with children or tasks fails, and is left);
        nothing whose session still runs, nor anything not named so, is touched."""
        pattern = re.compile(rf"{re.escape(DEFAULT_PARENT)}-test-(\d+)-[0-9a-f]{{6}}\Z")
        removed = []
        for key in self.host.keys:
            base = self.host.mount(key)
            try:
                entries = list(os.scandir(base))
            except OSError:
                continue
            for e in entries:
                m = pattern.match(e.name)
                if m is None or e.name == self.parent or not e.is_dir(follow_symlinks=False) or _pid_alive(int(m.group(1))):
                    continue
                try:
                    os.rmdir(e.path)
                    removed.append(e.path)
                except OSError:
                    pass  # not empty (a leak the session reported) or busy: left alone
        return removed

    def remove_parent(self) -> None:
        """Remove our parent cgroups if empty (tests; an operator's cleanup)."""
        for key in self.host.keys:
            try:
                os.rmdir(os.path.join(self.host.mount(key), self.parent))
            except OSError:
                pass
        self._ready.clear()
        self._checked.clear()


DEVICE_BACKEND_ENV = "FASTCONTAIN_DEVICE_CGROUP"


def device_backend(host: Host) -> str:
    """How device rules are enforced: "bpf", a cgroup device program attached to the
    container's cgroup2 directory (v2 hosts, and hybrid ones: the kernel runs device
    programs of the cgroup2 hierarchy whatever the v1 controllers say, and the child is
    born there), or "v1", the devices controller (v1 hosts). On a hybrid host both
    work, and $FASTCONTAIN_DEVICE_CGROUP=v1|bpf chooses; bpf is the default there: an
    attach of the loaded program costs ~6 us and confines the child from its birth,
    while the v1 controller costs a cgroup of its own per container (mkdir, 13 rule
    writes, the join: ~0.3 ms a spawn here) and, for a container the parent must place
    (a user namespace's), a cgroup.procs write, which waits for an RCU grace period
    when the host was idle (6-27 ms)."""
    asked = os.environ.get(DEVICE_BACKEND_ENV)
    if asked not in (None, "", "v1", "bpf"):
        raise ConfigError(DEVICE_BACKEND_ENV, asked, "v1 (the devices controller) or bpf (a cgroup v2 device program)")
    if asked == "bpf" and host.unified is None:
        raise ConfigError(DEVICE_BACKEND_ENV, asked, "no cgroup2 hierarchy is mounted to attach a device program to")
    if asked == "v1" and "devices" not in host.v1:
        raise ConfigError(DEVICE_BACKEND_ENV, asked, "no cgroup v1 devices controller is mounted")
    if asked:
        return asked
    return "bpf" if host.unified else "v1"


def _owner(dirs: Iterable[str]) -> str | None:
    for d in dirs:
        try:
            return os.getxattr(d, OWNER_XATTR).decode()
        except OSError:
            continue
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ctime(path: str) -> float:
    try:
        return os.stat(path).st_ctime
    except OSError:
        return 0.0


_manager: Manager | None = None
_manager_lock = threading.Lock()


def manager() -> Manager:
    """This process's Manager (parent from $FASTCONTAIN_CGROUP_PARENT, default
    'fastcontain'). Its creation sweeps what crashed runs left under the parent."""
    global _manager
    m = _manager
    if m is not None:
        return m
    with _manager_lock:
        if _manager is None:
            from . import state

            m = Manager()
            m.prepare()
            m.sweep(state.owner_alive)
            m.sweep_session_parents()
            _manager = m
        return _manager


def reset() -> None:
    """Forget this process's Manager (tests that change the parent or the host)."""
    global _manager
    with _manager_lock:
        _manager = None
