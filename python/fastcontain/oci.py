"""An OCI bundle (runtime-spec 1.1 config.json) translated into what fastcontain runs.

`load(bundle)` reads and checks config.json: every field is either carried out or
refused with an OciError naming it (`linux.timeOffsets: time namespaces are not
supported yet`), never ignored. `translate` gives a Plan: the native spec (see
_native.pyi) plus what the supervisor does around the spawn, because the native core
has no notion of it: namespaces joined by path (setns before clone), the cgroup at
cgroupsPath with linux.resources, sysctls (written from inside the container's
namespaces), extra device nodes, the seccomp profile, and the hooks.

Where the native core differs from runc, the difference is named here:
- /proc, /sys, /dev (with its nodes), /dev/pts, /dev/shm and /dev/mqueue come from the
  native default mounts; config mounts identical to those (same destination and type)
  are satisfied by them, any other mount is applied after them in order.
- a "cgroup" mount is the host's cgroup2 hierarchy, read-only (runc builds a tmpfs of
  v1 controllers; on a v2 host the two are the same).
- prestart and createRuntime hooks (runtime namespace) and createContainer hooks (setns
  into the container's mount, net, ipc, uts and cgroup namespaces, not its user or pid
  namespace) run while the native child waits after its mounts, before pivot_root
  (`pause_before_pivot`, only asked for when there are such hooks); startContainer
  hooks run the same way after pivot_root, before the process is released.
- a new user namespace (linux.uidMappings / gidMappings) is the native spec's userns;
  its "cgroup" mount is a read-only bind of the host's cgroup2 (the container's cgroup
  namespace comes after start), and its /sys is the host's, bound, without a network
  namespace of its own. Joining one by path is refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import FastcontainError

from .oci_runtime import OCI_VERSION
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mount", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup",
              "user": "user", "time": "time"}
# the native default mounts: (destination, type)
NATIVE_DEFAULTS = {("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "tmpfs"), ("/dev/pts", "devpts"),
                   ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue")}
# mount(8) flag and propagation names the native core knows (rust/src/mount.rs OPTIONS)
MOUNT_FLAGS = frozenset("""defaults ro rw nosuid suid nodev dev noexec exec sync async dirsync mand nomand atime
noatime diratime nodiratime relatime norelatime strictatime nostrictatime bind rbind private rprivate shared
rshared slave rslave unbindable runbindable""".split())


class OciError(FastcontainError):
    """config.json asks for something invalid or unsupported; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"config.json: {field}: {reason}")


def _obj(value: Any, where: str, known: set[str] | frozenset[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OciError(where, f"must be an object, not {type(value).__name__}")
    for key in value:
        if key not in known:
            raise OciError(f"{where}.{key}" if where else key, "unknown or unsupported field")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OciError(where, f"must be an array, not {type(value).__name__}")
    return value


def _str(value: Any, where: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise OciError(where, "must be a string" + (" (required)" if value is None else ""))
    return value


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise OciError(where, f"must be an integer, not {value!r}")
    return value


def _unsupported(value: Any, where: str, reason: str) -> None:
    """Refuse `where` unless it is absent or empty."""
    if value not in (None, "", [], {}, False):
        raise OciError(where, reason)


@dataclass(frozen=True)
class Hook:
    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None


@dataclass
class Plan:
    """What one container of a bundle needs: the native spec and the runtime's part."""

    bundle: str
    spec: dict[str, Any]
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (rows, columns)
    joins: list[tuple[str, str]] = field(default_factory=list)  # (native namespace name, path), setns order
    cgroups_path: str = ""
    resources: dict[str, Any] = field(default_factory=dict)  # linux.resources, checked
    sysctl: dict[str, str] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    seccomp: dict[str, Any] | None = None
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    oci_version: str = OCI_VERSION


def load(bundle: str) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise OciError("config.json", f"no such file in the bundle {bundle}") from None
    except ValueError as e:
        raise OciError("config.json", f"not valid JSON ({path}): {e}") from None
    if not isinstance(config, dict):
        raise OciError("config.json", "must be a JSON object")
    return config


# -- the parts ---------------------------------------------------------------------------


def _process(p: Any, plan: Plan) -> None:
    p = _obj(p, "process", {"terminal", "consoleSize", "user", "args", "commandLine", "env", "cwd",
                            "capabilities", "rlimits", "noNewPrivileges", "apparmorProfile", "oomScoreAdj",
                            "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity"})
    if not p:
        raise OciError("process", "required (the bundle has no process to run)")
    spec = plan.spec
    args = _list(p.get("args"), "process.args")
    if not args or not all(isinstance(a, str) for a in args):
        raise OciError("process.args", "required: a non-empty array of strings")
    _unsupported(p.get("commandLine"), "process.commandLine", "Windows only")
    spec["argv"] = list(args)
    env = _list(p.get("env"), "process.env")
    for i, e in enumerate(env):
        if not isinstance(e, str) or "=" not in e:
            raise OciError(f"process.env[{i}]", f"expected KEY=VALUE, not {e!r}")
    spec["env"] = list(env)
    cwd = _str(p.get("cwd"), "process.cwd", required=True)
    if not cwd.startswith("/"):
        raise OciError("process.cwd", f"must be absolute, not {cwd!r}")
    spec["cwd"] = cwd
    plan.terminal = bool(p.get("terminal"))
    size = _obj(p.get("consoleSize"), "process.consoleSize", {"height", "width"})
    if size:
        plan.console_size = (_int(size.get("height"), "process.consoleSize.height") or 0,
                             _int(size.get("width"), "process.consoleSize.width") or 0)
    user = _obj(p.get("user"), "process.user", {"uid", "gid", "umask", "additionalGids", "username"})
    _unsupported(user.get("username"), "process.user.username", "Windows only")
    spec["uid"] = _int(user.get("uid"), "process.user.uid") or 0
    spec["gid"] = _int(user.get("gid"), "process.user.gid") or 0
    groups = _list(user.get("additionalGids"), "process.user.additionalGids")
    spec["groups"] = [_int(g, "process.user.additionalGids") for g in groups]
    if user.get("umask") is not None:
        spec["umask"] = _int(user.get("umask"), "process.user.umask")
    _capabilities(p.get("capabilities"), spec)
    rlimits = []
    for i, r in enumerate(_list(p.get("rlimits"), "process.rlimits")):
        r = _obj(r, f"process.rlimits[{i}]", {"type", "soft", "hard"})
        rlimits.append((_str(r.get("type"), f"process.rlimits[{i}].type", required=True),
                        _int(r.get("soft"), f"process.rlimits[{i}].soft") or 0,
                        _int(r.get("hard"), f"process.rlimits[{i}].hard") or 0))
    spec["rlimits"] = rlimits
    spec["no_new_privileges"] = bool(p.get("noNewPrivileges"))
    if p.get("oomScoreAdj") is not None:
        spec["oom_score_adj"] = _int(p.get("oomScoreAdj"), "process.oomScoreAdj")
    if p.get("apparmorProfile") not in (None, "", "unconfined"):
        raise OciError("process.apparmorProfile", "AppArmor is not supported (and not enabled on this host)")
    _unsupported(p.get("selinuxLabel"), "process.selinuxLabel", "SELinux is not supported")
    _unsupported(p.get("ioPriority"), "process.ioPriority", "not supported yet")
    _unsupported(p.get("scheduler"), "process.scheduler", "not supported yet")
    _unsupported(p.get("execCPUAffinity"), "process.execCPUAffinity", "not supported yet")


def _capabilities(value: Any, spec: dict[str, Any]) -> None:
    """The native core keeps one set in bounding, permitted and effective, clears ambient
    and inheritable. Accept what that carries out exactly."""
    if value is None:
        spec["capabilities"] = []  # the spec: absent means none
        return
    caps = _obj(value, "process.capabilities", {"bounding", "effective", "inheritable", "permitted", "ambient"})
    sets = {k: _list(caps.get(k), f"process.capabilities.{k}") for k in caps}
    bounding = sets.get("bounding", [])
    for k, names in sets.items():
        for n in names:
            if not isinstance(n, str) or not n.startswith("CAP_"):
                raise OciError(f"process.capabilities.{k}", f"not a capability name: {n!r}")
    uid = spec.get("uid", 0)
    for k in ("effective", "permitted", "ambient", "inheritable"):
        extra = set(sets.get(k, [])) - set(bounding)
        if extra:
            raise OciError(f"process.capabilities.{k}", f"{sorted(extra)} are not in the bounding set")
    for k in ("effective", "permitted"):
        if uid == 0 and set(sets.get(k, [])) != set(bounding):
            raise OciError(f"process.capabilities.{k}",
                           "differs from the bounding set: fastcontain gives root one set for all three")
    if uid != 0:
        # the native core changes uid without keeping capabilities: a non-root process has none
        for k in ("effective", "permitted", "ambient", "inheritable"):
            if sets.get(k):
                raise OciError(f"process.capabilities.{k}", "capabilities for a non-root user are not supported yet")
    # for root, ambient and inheritable (within the bounding set) change nothing at execve
    spec["capabilities"] = sorted(set(bounding))


def _root(value: Any, plan: Plan) -> None:
    root = _obj(value, "root", {"path", "readonly"})
    path = _str(root.get("path"), "root.path", required=True)
    path = path if os.path.isabs(path) else os.path.join(plan.bundle, path)
    if not os.path.isdir(path):
        raise OciError("root.path", f"{path} is not a directory")
    plan.spec["rootfs"] = os.path.realpath(path)
    plan.spec["overlay"] = None
    plan.spec["readonly_rootfs"] = bool(root.get("readonly"))


def _mounts(value: Any, plan: Plan, has_unified: bool) -> None:
    mounts = []
    for i, m in enumerate(_list(value, "mounts")):
        where = f"mounts[{i}]"
        m = _obj(m, where, {"destination", "type", "source", "options", "uidMappings", "gidMappings"})
        dest = _str(m.get("destination"), f"{where}.destination", required=True)
        if not dest.startswith("/"):
            raise OciError(f"{where}.destination", f"must be absolute, not {dest!r}")
        dest = os.path.normpath(dest)
        options = _list(m.get("options"), f"{where}.options")
        fstype = _str(m.get("type"), f"{where}.type")
        source = _str(m.get("source"), f"{where}.source")
        _unsupported(m.get("uidMappings"), f"{where}.uidMappings", "id-mapped mounts are not supported yet")
        _unsupported(m.get("gidMappings"), f"{where}.gidMappings", "id-mapped mounts are not supported yet")
        is_bind = "bind" in options or "rbind" in options or fstype == "bind"
        if not fstype:
            fstype = "bind" if is_bind else ""
            if not fstype:
                raise OciError(f"{where}.type", "required unless the options say bind or rbind")
        if (dest, fstype) in NATIVE_DEFAULTS:
            continue  # the native default mount stands in for it (with /dev's nodes)
        if fstype == "cgroup":
            if not has_unified:
                raise OciError(f"{where}.type", "a cgroup mount needs a cgroup2 hierarchy on the host")
            fstype, source = "cgroup2", "cgroup2"
            options = [o for o in options if o in MOUNT_FLAGS and o != "ro"] + ["ro"]
        for o in options:
            if not isinstance(o, str):
                raise OciError(f"{where}.options", f"not a string: {o!r}")
            if o in ("rro", "rrw", "tmpcopyup", "idmap", "ridmap", "copy-symlink", "src-nofollow", "dest-nofollow"):
                raise OciError(f"{where}.options", f"{o!r} is not supported yet")
            if is_bind and o not in MOUNT_FLAGS:
                raise OciError(f"{where}.options", f"{o!r} means nothing to a bind mount")
        if is_bind:
            fstype = "bind"
            if not os.path.isabs(source):
                source = os.path.join(plan.bundle, source)
            if not os.path.exists(source):
                raise OciError(f"{where}.source", f"{source} does not exist")
        mounts.append({"source": source or fstype, "target": dest, "type": fstype, "options": list(options)})
    plan.spec["mounts"] = mounts


def _namespaces(value: Any, plan: Plan) -> None:
    new = []
    seen = set()
    for i, ns in enumerate(_list(value, "linux.namespaces")):
        where = f"linux.namespaces[{i}]"
        ns = _obj(ns, where, {"type", "path"})
        kind = _str(ns.get("type"), f"{where}.type", required=True)
        if kind not in NAMESPACES:
            raise OciError(f"{where}.type", f"unknown namespace {kind!r} (known: {', '.join(NAMESPACES)})")
        if kind in seen:
            raise OciError(f"{where}.type", f"{kind} is listed twice")
        seen.add(kind)
        if kind == "time":
            raise OciError(f"{where}.type", "time namespaces are not supported yet")
        path = _str(ns.get("path"), f"{where}.path")
        if path:
            if kind == "user":
                raise OciError(f"{where}.path", "joining a user namespace by path is not supported yet "
                                                "(give uidMappings and gidMappings for a new one)")
            if kind == "mount":
                raise OciError(f"{where}.path", "joining a mount namespace is not supported: the root is set up in a new one")
            if not os.path.exists(path):
                raise OciError(f"{where}.path", f"{path} does not exist")
            plan.joins.append((NAMESPACES[kind], path))
        elif kind != "user":  # a new user namespace is the native spec's userns (see _userns)
            new.append(NAMESPACES[kind])
    if "mount" not in new:
        raise OciError("linux.namespaces", "a mount namespace is required (fastcontain sets the root up in one)")
    plan.spec["namespaces"] = new
    if plan.spec.get("hostname") and "uts" not in new:
        raise OciError("hostname", "setting a hostname needs a new uts namespace")


def _id_mappings(value: Any, where: str) -> list[tuple[int, int, int]]:
    out = []
    for i, m in enumerate(_list(value, where)):
        m = _obj(m, f"{where}[{i}]", {"containerID", "hostID", "size"})
        ids = []
        for k in ("containerID", "hostID", "size"):
            v = _int(m.get(k), f"{where}[{i}].{k}")
            if v is None or v < 0 or v > 2**32 - 1:
                raise OciError(f"{where}[{i}].{k}", f"required: an id from 0 to 4294967295, not {m.get(k)!r}")
            ids.append(v)
        if ids[2] == 0:
            raise OciError(f"{where}[{i}].size", "must be positive")
        out.append((ids[0], ids[1], ids[2]))
    if out and not any(inside == 0 for inside, _, _ in out):
        raise OciError(where, "must map the container's root (containerID 0)")
    return out


def _userns(linux: Mapping[str, Any], plan: Plan, has_unified: bool) -> None:
    """A new user namespace with linux.uidMappings and gidMappings: the native spec's
    userns (the native parent writes the maps while the child waits, before its first
    mount; the child then is 0:0 inside). The rootfs stays as the bundle has it: its
    owner is the engine's choice (files owned by the mapped range, or readable by it)."""
    uid_map = _id_mappings(linux.get("uidMappings"), "linux.uidMappings")
    gid_map = _id_mappings(linux.get("gidMappings"), "linux.gidMappings")
    wanted = any(isinstance(ns, dict) and ns.get("type") == "user" and not ns.get("path")
                 for ns in linux.get("namespaces") or [])
    if not wanted:
        if uid_map or gid_map:
            raise OciError("linux.uidMappings" if uid_map else "linux.gidMappings",
                           "id mappings need a new user namespace in linux.namespaces")
        return
    if not uid_map or not gid_map:
        raise OciError("linux.uidMappings" if not uid_map else "linux.gidMappings",
                       "a new user namespace needs both uidMappings and gidMappings")
    if plan.devices:
        raise OciError("linux.devices", "device nodes with a user namespace are not supported yet (a node made "
                                        "on the container's /dev cannot be opened there)")
    root_uid = next(out for inside, out, _ in uid_map if inside == 0)
    root_gid = next(out for inside, out, _ in gid_map if inside == 0)
    blocked = _unreachable(plan.spec["rootfs"], root_uid, root_gid)
    if blocked:
        raise OciError("root.path", f"the user namespace's root (host uid {root_uid}, gid {root_gid}) cannot "
                                    f"reach {plan.spec['rootfs']}: {blocked} has no search permission for it")
    for name, v, m in (("uid", plan.spec.get("uid", 0), uid_map), ("gid", plan.spec.get("gid", 0), gid_map)):
        if not any(inside <= v < inside + n for inside, _, n in m):
            raise OciError(f"process.user.{name}", f"{v} is not mapped by linux.{name}Mappings")
    plan.spec["userns"] = {"uid_map": uid_map, "gid_map": gid_map, "own": [], "traverse": []}
    if has_unified:
        # cgroup2 can only be mounted in a cgroup namespace the user namespace owns, and the
        # container's is made after start: the host's hierarchy is bound read-only instead (as runc does)
        for m in plan.spec["mounts"]:
            if m["type"] == "cgroup2":
                m.update(type="bind", source=_unified_mount(),
                         options=["rbind"] + [o for o in m["options"] if o != "ro"] + ["ro"])


def _unified_mount() -> str:
    from .cgroups import Host

    host = Host.detect()
    return host.unified or "/sys/fs/cgroup"


def _unreachable(path: str, uid: int, gid: int) -> str:
    """The first directory on the way to `path` (itself included) that uid:gid may not search."""
    import stat as st

    parts = path.rstrip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i]) or "/"
        try:
            info = os.stat(d)
        except OSError:
            return d
        bit = st.S_IXUSR if info.st_uid == uid else st.S_IXGRP if info.st_gid == gid else st.S_IXOTH
        if not info.st_mode & bit:
            return d
    return ""


_RESOURCES = {"devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified"}


def _resources(value: Any, plan: Plan) -> None:
    res = _obj(value, "linux.resources", _RESOURCES)
    for i, d in enumerate(_list(res.get("devices"), "linux.resources.devices")):
        # fastcontain.devices: the v1 devices controller or a cgroup v2 device program
        d = _obj(d, f"linux.resources.devices[{i}]", {"allow", "type", "major", "minor", "access"})
        if not set(d.get("access") or "rwm") <= set("rwm"):
            raise OciError(f"linux.resources.devices[{i}].access", f"{d.get('access')!r}: letters of rwm")
        if (d.get("type") or "a") not in ("a", "b", "c"):
            raise OciError(f"linux.resources.devices[{i}].type", f"{d.get('type')!r}: one of a, b, c")
        for k in ("major", "minor"):
            if d.get(k) is not None and (isinstance(d[k], bool) or not isinstance(d[k], int) or d[k] < -1):
                raise OciError(f"linux.resources.devices[{i}].{k}", f"{d[k]!r}: a device number, or -1 for any")
    mem = _obj(res.get("memory"), "linux.resources.memory",
               {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
                "useHierarchy", "checkBeforeUpdate"})
    for k in ("kernel", "kernelTCP"):
        _unsupported(mem.get(k), f"linux.resources.memory.{k}", "kernel memory limits are gone from this kernel")
    _unsupported(mem.get("disableOOMKiller"), "linux.resources.memory.disableOOMKiller", "not supported yet")
    if mem.get("swappiness") not in (None, 0) and mem.get("swappiness") != -1:
        raise OciError("linux.resources.memory.swappiness", "not supported yet")
    cpu = _obj(res.get("cpu"), "linux.resources.cpu",
               {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"})
    for k in ("burst", "realtimeRuntime", "realtimePeriod", "idle"):
        _unsupported(cpu.get(k), f"linux.resources.cpu.{k}", "not supported yet")
    _obj(res.get("pids"), "linux.resources.pids", {"limit"})
    blkio = _obj(res.get("blockIO"), "linux.resources.blockIO",
                 {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                  "throttleReadIOPSDevice", "throttleWriteIOPSDevice"})
    for k in blkio:
        if k != "weight":
            _unsupported(blkio.get(k), f"linux.resources.blockIO.{k}", "not supported yet")
    _unsupported(res.get("hugepageLimits"), "linux.resources.hugepageLimits", "not supported yet")
    _unsupported(res.get("network"), "linux.resources.network", "net_cls/net_prio are absent from this kernel")
    _unsupported(res.get("rdma"), "linux.resources.rdma", "not supported yet")
    _unsupported(res.get("unified"), "linux.resources.unified", "not supported yet")
    plan.resources = res


def limits(res: Mapping[str, Any]) -> Any:
    """linux.resources as cgroups.Resources (docker's names; 0 means unset, as runc reads it)."""
    from .cgroups import Resources

    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    pids, blkio = res.get("pids") or {}, res.get("blockIO") or {}

    def pos(v: Any) -> Any:
        return v if v not in (None, 0) else None

    limit = pos(mem.get("limit"))
    swap = pos(mem.get("swap"))
    if swap is not None and (limit is None or limit == -1):
        swap = None
    try:
        return Resources(
            memory=limit, memory_swap=swap, memory_reservation=pos(mem.get("reservation")),
            cpu_shares=pos(cpu.get("shares")), cpu_quota=pos(cpu.get("quota")), cpu_period=pos(cpu.get("period")),
            pids_limit=pos(pids.get("limit")), cpuset_cpus=cpu.get("cpus") or None, cpuset_mems=cpu.get("mems") or None,
            blkio_weight=pos(blkio.get("weight")),
            device_policy=device_policy(res.get("devices") or []),
        )
    except FastcontainError as e:
        raise OciError("linux.resources", str(e)) from None


def device_policy(rules: list[dict[str, Any]]) -> Any:
    """linux.resources.devices as runc applies them: the config's rules, then runc's
    defaults (the nodes of the default /dev, mknod of any); no rules at all leave every
    device allowed, as runc does (engines send a deny-all first)."""
    from . import devices

    if not rules:
        return devices.Policy.of(devices.ALLOW_ALL)
    out = []
    for r in rules:
        major, minor = (None if r.get(k) in (None, -1) else r[k] for k in ("major", "minor"))
        out.append(devices.Rule(bool(r.get("allow")), r.get("type") or "a", major, minor, r.get("access") or "rwm"))
    return devices.Policy.of(out + list(devices.DEFAULT_RULES[1:]))


def _devices(value: Any, plan: Plan) -> None:
    for i, d in enumerate(_list(value, "linux.devices")):
        where = f"linux.devices[{i}]"
        d = _obj(d, where, {"path", "type", "major", "minor", "fileMode", "uid", "gid"})
        path = _str(d.get("path"), f"{where}.path", required=True)
        if not path.startswith("/dev/"):
            raise OciError(f"{where}.path", f"{path!r} is not under /dev")
        kind = _str(d.get("type"), f"{where}.type", required=True)
        if kind not in ("c", "u", "b", "p"):
            raise OciError(f"{where}.type", f"{kind!r}: one of c, u, b, p")
        if kind != "p" and (d.get("major") is None or d.get("minor") is None):
            raise OciError(where, "major and minor are required for a device node")
        plan.devices.append(d)


def _hooks(value: Any, plan: Plan) -> None:
    hooks = _obj(value, "hooks", set(HOOK_KINDS))
    for kind in HOOK_KINDS:
        out = []
        for i, h in enumerate(_list(hooks.get(kind), f"hooks.{kind}")):
            where = f"hooks.{kind}[{i}]"
            h = _obj(h, where, {"path", "args", "env", "timeout"})
            path = _str(h.get("path"), f"{where}.path", required=True)
            if not os.path.isabs(path):
                raise OciError(f"{where}.path", f"must be absolute, not {path!r}")
            timeout = _int(h.get("timeout"), f"{where}.timeout")
            if timeout is not None and timeout <= 0:
                raise OciError(f"{where}.timeout", "must be positive")
            out.append(Hook(path, tuple(_list(h.get("args"), f"{where}.args")) or (path,),
                            tuple(_list(h.get("env"), f"{where}.env")), timeout))
        plan.hooks[kind] = out


def _linux(value: Any, plan: Plan, has_unified: bool) -> None:
    linux = _obj(value, "linux", {"namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices",
                                  "cgroupsPath", "rootfsPropagation", "resources", "intelRdt", "sysctl",
                                  "seccomp", "maskedPaths", "readonlyPaths", "mountLabel", "personality",
                                  "memoryPolicy", "netDevices"})
    _unsupported(linux.get("timeOffsets"), "linux.timeOffsets", "time namespaces are not supported yet")
    _unsupported(linux.get("intelRdt"), "linux.intelRdt", "not supported")
    _unsupported(linux.get("mountLabel"), "linux.mountLabel", "SELinux is not supported")
    _unsupported(linux.get("personality"), "linux.personality", "not supported yet")
    _unsupported(linux.get("memoryPolicy"), "linux.memoryPolicy", "not supported yet")
    _unsupported(linux.get("netDevices"), "linux.netDevices", "not supported yet")
    if linux.get("rootfsPropagation") not in (None, "", "private", "rprivate"):
        raise OciError("linux.rootfsPropagation", "only private (what the native core does) is supported")
    _namespaces(linux.get("namespaces"), plan)
    _devices(linux.get("devices"), plan)
    _userns(linux, plan, has_unified)
    _resources(linux.get("resources"), plan)
    path = _str(linux.get("cgroupsPath"), "linux.cgroupsPath")
    if path and (":" in path or ".." in path.split("/")):
        raise OciError("linux.cgroupsPath", f"{path!r}: a cgroupfs path (slice:prefix:name is systemd's)")
    plan.cgroups_path = path.strip("/")
    sysctl = _obj(linux.get("sysctl"), "linux.sysctl", set(linux.get("sysctl") or {}))
    for k, v in sysctl.items():
        if not isinstance(v, str) or "/" in k or ".." in k:
            raise OciError(f"linux.sysctl.{k}", "a dotted name and a string value")
        if not (k.startswith(("net.", "kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue."))
                or k in ("kernel.domainname", "kernel.hostname")):
            raise OciError(f"linux.sysctl.{k}", "not a namespaced sysctl: it would change the host")
    plan.sysctl = dict(sysctl)
    if linux.get("seccomp"):
        sec = _obj(linux["seccomp"], "linux.seccomp",
                   {"defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
                    "listenerMetadata", "syscalls"})
        _unsupported(sec.get("listenerPath"), "linux.seccomp.listenerPath", "seccomp notify is not supported")
        _unsupported(sec.get("flags"), "linux.seccomp.flags", "seccomp filter flags are not supported yet")
        plan.seccomp = sec
    for key, name in (("maskedPaths", "masked_paths"), ("readonlyPaths", "readonly_paths")):
        paths = _list(linux.get(key), f"linux.{key}")
        for i, p in enumerate(paths):
            if not isinstance(p, str) or not p.startswith("/"):
                raise OciError(f"linux.{key}[{i}]", f"must be an absolute path, not {p!r}")
        plan.spec[name] = list(paths)


def translate(bundle: str, config: Mapping[str, Any], has_unified: bool = True) -> Plan:
    """config.json -> Plan. Raises OciError naming the first field it cannot honour."""
    bundle = os.path.abspath(bundle)
    config = _obj(dict(config), "", {"ociVersion", "process", "root", "hostname", "domainname", "mounts",
                                     "hooks", "annotations", "linux"})
    version = _str(config.get("ociVersion"), "ociVersion", required=True)
    if not version.startswith("1."):
        raise OciError("ociVersion", f"{version!r}: only runtime-spec 1.x is supported")
    plan = Plan(bundle=bundle, spec={"default_mounts": True, "stdio": [-1, -1, -1], "wait_for_start": True,
                                     "cgroup_fd": None, "seccomp": None, "cpus": None}, oci_version=version)
    if "linux" not in config:
        raise OciError("linux", "required: fastcontain runs Linux containers")
    plan.spec["hostname"] = _str(config.get("hostname"), "hostname") or None
    _unsupported(config.get("domainname"), "domainname", "not supported yet")
    _root(config.get("root"), plan)
    _process(config.get("process"), plan)
    _mounts(config.get("mounts"), plan, has_unified)
    _linux(config.get("linux"), plan, has_unified)
    _hooks(config.get("hooks"), plan)
    annotations = _obj(config.get("annotations"), "annotations", set(config.get("annotations") or {}))
    plan.annotations = {str(k): str(v) for k, v in annotations.items()}
    return plan


def process_json(path: str | None, args: list[str], *, cwd: str | None, env: list[str], tty: bool,
                 user: str | None) -> dict[str, Any]:
    """`exec`'s process: --process P.json, or the command line's pieces."""
    if path:
        try:
            with open(path) as f:
                proc = json.load(f)
        except (OSError, ValueError) as e:
            raise OciError("--process", f"cannot read {path}: {e}") from None
        return proc if isinstance(proc, dict) else {}
    uid, _, gid = (user or "0:0").partition(":")
    return {"args": args, "cwd": cwd or "/", "env": env, "terminal": tty,
            "user": {"uid": int(uid or 0), "gid": int(gid or 0)}}
