"""Cgroups: one per container, under a parent fastcontain owns, on any host layout.

Three layouts exist and all work:

- ``v2``: ``/sys/fs/cgroup`` is cgroup2 (most hosts). The child is born in its
  cgroup through clone3's CLONE_INTO_CGROUP with a directory fd; limits are
  ``memory.max``, ``cpu.max``, ``pids.max``, ``cpuset.cpus``, ``io.max``...
- ``hybrid``: v1 controllers plus a cgroup2 mount (``/sys/fs/cgroup/unified``)
  without controllers. The unified cgroup still carries membership (the child
  is born in it), ``cgroup.kill`` and CPU time; the v1 controllers carry the
  limits, and the pid is written to them while the child waits for start.
- ``v1``: controllers only. The pid is written to each controller's cgroup;
  kill-all goes through the freezer.

Everything that can be done once (detection, the parent cgroups, enabling
controllers) is done once per :class:`Manager`.
"""

from __future__ import annotations

import errno as _errno
import os
import signal
import stat as _stat
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .config import format_cpu_list, online_cpus, parse_cpu_list
from .errors import ConfigError, FastcontainError

DEFAULT_PARENT = "fastcontain"
CPU_PERIOD_US = 100_000
V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum


class CgroupError(FastcontainError):
    """A cgroup operation failed; names the file, the value and the errno."""

    def __init__(self, message: str, *, path: str | None = None, errno: int = 0) -> None:
        self.path = path
        self.errno = errno
        if errno:
            message = f"{message}: {_errno.errorcode.get(errno, errno)} ({os.strerror(errno)})"
        super().__init__(message)


# -- values -------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(field_name: str, value: int | str | None) -> int | None:
    """docker's sizes: 1048576, "512k", "32m", "1g" (also "32mb"); -1 means unlimited."""
    if value is None or isinstance(value, bool):
        return None if value is None else _bad_bytes(field_name, value)
    if isinstance(value, int):
        return value
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
    raise ConfigError(field_name, value, "expected a size such as 67108864, '512k', '64m' or '1g'")


@dataclass(frozen=True)
class Resources:
    """Limits, with docker's names (``--memory`` is ``memory``, ``--pids-limit`` is ``pids_limit``)."""

    memory: int | str | None = None
    memory_swap: int | str | None = None
    memory_reservation: int | str | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    pids_limit: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    blkio_weight: int | None = None
    device_read_bps: tuple[tuple[str, int | str], ...] = ()
    device_write_bps: tuple[tuple[str, int | str], ...] = ()

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name in ("memory", "memory_swap", "memory_reservation"):
            put(name, parse_bytes(name, getattr(self, name)))
        mem, swap = self.memory, self.memory_swap
        if mem is not None and mem != -1 and mem < MIN_MEMORY:
            raise ConfigError("memory", mem, f"the minimum is {MIN_MEMORY} bytes (6m)")
        if swap is not None:
            if mem is None or mem == -1:
                raise ConfigError("memory_swap", swap, "needs memory to be set too (it is memory plus swap)")
            if swap != -1 and swap < mem:
                raise ConfigError("memory_swap", swap, f"must be at least memory ({mem}), or -1 for unlimited swap")
        for name in ("cpu_shares", "cpu_period", "cpu_quota", "pids_limit", "blkio_weight"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(name, v, "expected an integer")
        if self.cpus is not None:
            if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or self.cpus <= 0:
                raise ConfigError("cpus", self.cpus, "expected a positive number of CPUs, such as 0.5 or 2")
            n = len(online_cpus())
            if self.cpus > n:
                raise ConfigError("cpus", self.cpus, f"only {n} CPUs are available")
            if self.cpu_quota is not None or self.cpu_period is not None:
                raise ConfigError("cpus", self.cpus, "cpus and cpu_period/cpu_quota are exclusive, as in docker")
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
            try:
                cpus = parse_cpu_list(str(self.cpuset_cpus))
            except ValueError as e:
                raise ConfigError("cpuset_cpus", self.cpuset_cpus, f"expected a CPU list such as '0-1,3' ({e})") from None
            allowed = online_cpus()
            if not cpus <= allowed:
                raise ConfigError(
                    "cpuset_cpus", self.cpuset_cpus, f"CPUs {format_cpu_list(cpus - allowed)} are not online here "
                    f"(online: {format_cpu_list(allowed)})")
            put("cpuset_cpus", format_cpu_list(cpus))
        if self.cpuset_mems is not None:
            try:
                put("cpuset_mems", format_cpu_list(parse_cpu_list(str(self.cpuset_mems))))
            except ValueError:
                raise ConfigError("cpuset_mems", self.cpuset_mems, "expected a node list such as '0'") from None
        for name in ("device_read_bps", "device_write_bps"):
            rates = []
            for i, item in enumerate(getattr(self, name)):
                try:
                    path, rate = item
                except (TypeError, ValueError):
                    raise ConfigError(f"{name}[{i}]", item, "expected (DEVICE_PATH, RATE)") from None
                try:
                    st = os.stat(path)
                except OSError as e:
                    raise ConfigError(f"{name}[{i}]", path, f"cannot stat the device: {e.strerror}") from None
                if not _stat.S_ISBLK(st.st_mode):
                    raise ConfigError(f"{name}[{i}]", path, "not a block device")
                rates.append((f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", parse_bytes(f"{name}[{i}]", rate)))
            put(name, tuple(rates))

    @property
    def cpu_set(self) -> tuple[int, ...] | None:
        """The CPUs of cpuset_cpus, for sched_setaffinity."""
        return tuple(sorted(parse_cpu_list(self.cpuset_cpus))) if self.cpuset_cpus else None

    def quota(self) -> tuple[int, int] | None:
        """(quota, period) in µs; quota -1 is unlimited."""
        if self.cpus is not None:
            return int(self.cpus * CPU_PERIOD_US), CPU_PERIOD_US
        if self.cpu_quota is not None or self.cpu_period is not None:
            return (self.cpu_quota if self.cpu_quota is not None else -1), self.cpu_period or CPU_PERIOD_US
        return None

    def v2_files(self) -> list[tuple[str, str, str]]:
        """(controller, file, value) for a cgroup v2 directory."""
        out: list[tuple[str, str, str]] = []
        if self.memory is not None:
            out.append(("memory", "memory.max", _max(self.memory)))
        if self.memory_swap is not None:
            assert isinstance(self.memory, int)
            out.append(("memory", "memory.swap.max", "max" if self.memory_swap == -1 else str(self.memory_swap - self.memory)))
        if self.memory_reservation is not None:
            out.append(("memory", "memory.low", _max(self.memory_reservation)))
        q = self.quota()
        if q is not None:
            out.append(("cpu", "cpu.max", f"{_max(q[0])} {q[1]}"))
        if self.cpu_shares is not None:  # docker's conversion of shares to weight
            out.append(("cpu", "cpu.weight", str(1 + ((self.cpu_shares - 2) * 9999) // 262142)))
        if self.pids_limit is not None:
            out.append(("pids", "pids.max", _max(self.pids_limit)))
        if self.cpuset_cpus is not None:
            out.append(("cpuset", "cpuset.cpus", self.cpuset_cpus))
        if self.cpuset_mems is not None:
            out.append(("cpuset", "cpuset.mems", self.cpuset_mems))
        if self.blkio_weight is not None:
            out.append(("io", "io.weight", f"default {1 + (self.blkio_weight - 10) * 9999 // 990}"))
        for dev, rate in self.device_read_bps:
            out.append(("io", "io.max", f"{dev} rbps={rate}"))
        for dev, rate in self.device_write_bps:
            out.append(("io", "io.max", f"{dev} wbps={rate}"))
        return out

    def v1_files(self) -> list[tuple[str, str, str]]:
        """(controller, file, value) for cgroup v1 controllers, in a valid order."""
        out: list[tuple[str, str, str]] = []
        if self.memory is not None:
            out.append(("memory", "memory.limit_in_bytes", str(self.memory)))
        if self.memory_swap is not None:
            out.append(("memory", "memory.memsw.limit_in_bytes", str(self.memory_swap)))
        if self.memory_reservation is not None:
            out.append(("memory", "memory.soft_limit_in_bytes", str(self.memory_reservation)))
        q = self.quota()
        if q is not None:
            out.append(("cpu", "cpu.cfs_period_us", str(q[1])))
            out.append(("cpu", "cpu.cfs_quota_us", str(q[0])))
        if self.cpu_shares is not None:
            out.append(("cpu", "cpu.shares", str(self.cpu_shares)))
        if self.pids_limit is not None:
            out.append(("pids", "pids.max", _max(self.pids_limit)))
        if self.cpuset_cpus is not None:
            out.append(("cpuset", "cpuset.cpus", self.cpuset_cpus))
        if self.cpuset_mems is not None:
            out.append(("cpuset", "cpuset.mems", self.cpuset_mems))
        if self.blkio_weight is not None:
            out.append(("blkio", "blkio.weight", str(self.blkio_weight)))
        for dev, rate in self.device_read_bps:
            out.append(("blkio", "blkio.throttle.read_bps_device", f"{dev} {rate}"))
        for dev, rate in self.device_write_bps:
            out.append(("blkio", "blkio.throttle.write_bps_device", f"{dev} {rate}"))
        return out


def _max(v: int) -> str:
    return "max" if v == -1 else str(v)


# -- the host -------------------------------------------------------------------


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
                        if opt in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices"):
                            v1.setdefault(opt, point)
        if unified is None and not v1:
            raise CgroupError(f"no cgroup filesystem is mounted (read {mountinfo}): mount cgroup2 on /sys/fs/cgroup")
        if not v1:
            return cls("v2", unified, {})
        return cls("hybrid" if unified else "v1", unified, v1)


# -- per container ---------------------------------------------------------------


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"opening {path} to write {value!r} failed", path=path, errno=e.errno or 0) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        hint = ""
        if path.endswith("cpuset.cpus") or path.endswith("cpuset.mems"):
            hint = " (a v1 cpuset needs both cpuset.cpus and cpuset.mems, within its parent's)"
        raise CgroupError(f"writing {value!r} to {path} failed{hint}", path=path, errno=e.errno or 0) from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: str) -> int | None:
    try:
        text = _read(path).strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def _keyed(path: str) -> dict[str, int]:
    """A "key value" file (cpu.stat, memory.events, memory.oom_control)."""
    try:
        text = _read(path)
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _rmdir(path: str, deadline: float) -> None:
    """rmdir with bounded retries: a cgroup is busy until its last process is reaped."""
    delay = 0.0005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != _errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"removing the cgroup {path} failed", path=path, errno=e.errno or 0) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class Cgroup:
    """One container's cgroup: a directory per hierarchy, owned until :meth:`remove`."""

    def __init__(self, manager: Manager, cid: str) -> None:
        self.manager = manager
        self.id = cid
        self.dirs: dict[str, str] = {}  # "unified" or a v1 controller -> directory
        self.fd: int | None = None  # the unified directory, for CLONE_INTO_CGROUP

    @property
    def needs_attach(self) -> bool:
        """True when the pid must be written to v1 controllers (before exec)."""
        return any(k != "unified" for k in self.dirs)

    def attach(self, pid: int) -> None:
        for key, d in self.dirs.items():
            if key != "unified":
                _write(os.path.join(d, "cgroup.procs"), str(pid))

    def procs(self) -> list[int]:
        d = self.dirs.get("unified") or self.dirs.get("freezer") or self.dirs.get("pids") or next(iter(self.dirs.values()), None)
        if d is None:
            return []
        try:
            return [int(p) for p in _read(os.path.join(d, "cgroup.procs")).split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, so a forking payload cannot escape."""
        if "unified" in self.dirs and os.path.exists(os.path.join(self.dirs["unified"], "cgroup.kill")):
            _write(os.path.join(self.dirs["unified"], "cgroup.kill"), "1")
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
        for _ in range(3):  # no freezer and no cgroup.kill: kill in rounds
            for pid in self.procs():
                _kill(pid)

    def oom_kills(self) -> int:
        if self.manager.host.layout == "v2":
            return _keyed(os.path.join(self.dirs["unified"], "memory.events")).get("oom_kill", 0)
        if "memory" in self.dirs:
            return _keyed(os.path.join(self.dirs["memory"], "memory.oom_control")).get("oom_kill", 0)
        return 0

    def stats(self) -> dict[str, int | None]:
        """CPU time (µs), memory now and at peak (bytes), pids, OOM kills, I/O bytes: read at once."""
        s: dict[str, int | None] = {}
        uni = self.dirs.get("unified")
        if uni:
            s["cpu_usage_us"] = _keyed(os.path.join(uni, "cpu.stat")).get("usage_usec")
        elif "cpuacct" in self.dirs:
            ns = _read_int(os.path.join(self.dirs["cpuacct"], "cpuacct.usage"))
            s["cpu_usage_us"] = None if ns is None else ns // 1000
        if self.manager.host.layout == "v2":
            assert uni
            s["memory_current"] = _read_int(os.path.join(uni, "memory.current"))
            s["memory_peak"] = _read_int(os.path.join(uni, "memory.peak"))
            s["pids_current"] = _read_int(os.path.join(uni, "pids.current"))
            io = {"rbytes": 0, "wbytes": 0}
            try:
                for line in _read(os.path.join(uni, "io.stat")).splitlines():
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        if k in io:
                            io[k] += int(v)
            except OSError:
                pass
            s["io_read_bytes"], s["io_write_bytes"] = io["rbytes"], io["wbytes"]
        else:
            mem = self.dirs.get("memory")
            s["memory_current"] = _read_int(os.path.join(mem, "memory.usage_in_bytes")) if mem else None
            s["memory_peak"] = _read_int(os.path.join(mem, "memory.max_usage_in_bytes")) if mem else None
            pids = self.dirs.get("pids")
            s["pids_current"] = _read_int(os.path.join(pids, "pids.current")) if pids else None
        s["oom_kills"] = self.oom_kills()
        return s

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left, then rmdir every directory (bounded retries)."""
        self.close()
        if self.procs():
            self.kill()
        deadline = time.monotonic() + timeout
        errors: list[CgroupError] = []
        for d in reversed(list(self.dirs.values())):
            try:
                _rmdir(d, deadline)
            except CgroupError as e:
                errors.append(e)
        self.dirs.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Manager:
    """The parent cgroups fastcontain owns on this host, prepared once."""

    def __init__(self, parent: str | None = None, host: Host | None = None) -> None:
        self.parent = (parent or os.environ.get("FASTCONTAIN_CGROUP_PARENT") or DEFAULT_PARENT).strip("/")
        if not self.parent or ".." in self.parent.split("/"):
            raise ConfigError("cgroup_parent", parent, "a relative cgroup path such as 'fastcontain'")
        self.host = host or Host.detect()
        self._ready: set[str] = set()

    # The parents, created on first use of each controller.
    def _parent_dir(self, key: str) -> str:
        mount = self.host.unified if key == "unified" else self.host.v1[key]
        assert mount is not None
        d = os.path.join(mount, self.parent)
        if key in self._ready:
            return d
        os.makedirs(d, exist_ok=True)
        if key == "unified" and self.host.layout == "v2":
            self._enable_v2_controllers(mount)
        if key == "cpuset":  # v1: an empty cpuset refuses tasks; take the parent's
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(d, f)).strip():
                    _write(os.path.join(d, f), _read(os.path.join(os.path.dirname(d), f)).strip())
        self._ready.add(key)
        return d

    def _enable_v2_controllers(self, mount: str) -> None:
        """Enable every controller we use from the root down to our parent's children."""
        path = mount
        for part in [""] + self.parent.split("/"):
            path = os.path.join(path, part) if part else path
            have = set(_read(os.path.join(path, "cgroup.controllers")).split())
            want = [c for c in V2_CONTROLLERS if c in have]
            enabled = set(_read(os.path.join(path, "cgroup.subtree_control")).split())
            missing = [c for c in want if c not in enabled]
            if missing:
                _write(os.path.join(path, "cgroup.subtree_control"), " ".join("+" + c for c in missing))

    def controllers_for(self, res: Resources) -> list[str]:
        """The controllers a container with these limits needs, in this host's terms."""
        files = res.v2_files() if self.host.layout == "v2" else res.v1_files()
        asked = {c for c, _f, _v in files}
        if self.host.layout == "v2":
            have = set(_read(os.path.join(self.host.unified or "", "cgroup.controllers")).split())
            for c in sorted(asked - have):
                raise CgroupError(
                    f"the cgroup v2 controller '{c}' is not available: it is missing from "
                    f"{os.path.join(self.host.unified or '', 'cgroup.controllers')} (enable it in the parent's "
                    "cgroup.subtree_control, or delegate it to this user)")
            return []
        for c in sorted(asked - set(self.host.v1)):
            raise CgroupError(f"the cgroup v1 controller '{c}' is not mounted under /sys/fs/cgroup (see /proc/self/mountinfo)")
        base = ["memory", "pids"] + (["cpuacct", "freezer"] if self.host.layout == "v1" else [])
        return [c for c in dict.fromkeys(base + sorted(asked)) if c in self.host.v1]

    def create(self, cid: str, res: Resources = Resources()) -> Cgroup:
        """Make the container's cgroup with its limits; on any failure nothing is left."""
        cg = Cgroup(self, cid)
        try:
            keys = (["unified"] if self.host.unified else []) + self.controllers_for(res)
            for key in keys:
                d = os.path.join(self._parent_dir(key), cid)
                os.mkdir(d)
                cg.dirs[key] = d
            if self.host.layout == "v2":
                for _c, name, value in res.v2_files():
                    _write(os.path.join(cg.dirs["unified"], name), value)
            else:
                if "cpuset" in cg.dirs:
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        _write(os.path.join(cg.dirs["cpuset"], f), _read(os.path.join(os.path.dirname(cg.dirs["cpuset"]), f)).strip())
                for c, name, value in res.v1_files():
                    _write(os.path.join(cg.dirs[c], name), value)
            if "unified" in cg.dirs:
                cg.fd = os.open(cg.dirs["unified"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            cg.remove()
            raise CgroupError(f"creating the cgroup {cid} under {self.parent} failed", path=e.filename, errno=e.errno or 0) from None
        except BaseException:
            cg.remove()
            raise
        return cg

    def dirs_of(self, cid: str) -> Iterable[str]:
        for key in (["unified"] if self.host.unified else []) + list(self.host.v1):
            mount = self.host.unified if key == "unified" else self.host.v1[key]
            yield os.path.join(mount or "", self.parent, cid)

    def sweep(self, is_live: Callable[[str], bool], min_age: float = 60.0) -> list[str]:
        """Remove cgroups under our parent that no live container owns (a crashed
        run's). Cgroups younger than min_age are left alone: their creator may be
        between mkdir and clone. Returns the ids removed."""
        ids: set[str] = set()
        for key in (["unified"] if self.host.unified else []) + list(self.host.v1):
            mount = self.host.unified if key == "unified" else self.host.v1[key]
            try:
                ids.update(e.name for e in os.scandir(os.path.join(mount or "", self.parent)) if e.is_dir())
            except OSError:
                continue
        removed = []
        now = time.time()
        for cid in sorted(ids):
            if is_live(cid):
                continue
            dirs = [d for d in self.dirs_of(cid) if os.path.isdir(d)]
            if any(now - os.stat(d).st_ctime < min_age for d in dirs):
                continue
            cg = Cgroup(self, cid)
            for key, d in zip((["unified"] if self.host.unified else []) + list(self.host.v1), self.dirs_of(cid)):
                if os.path.isdir(d):
                    cg.dirs[key] = d
            try:
                cg.remove()
                removed.append(cid)
            except CgroupError:
                pass
        return removed

    def remove_parent(self) -> None:
        """Remove our parent cgroups if empty (tests; an operator's cleanup)."""
        for key in (["unified"] if self.host.unified else []) + list(self.host.v1):
            mount = self.host.unified if key == "unified" else self.host.v1[key]
            try:
                os.rmdir(os.path.join(mount or "", self.parent))
            except OSError:
                pass
        self._ready.clear()
