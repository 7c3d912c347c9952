"""A container's options as frozen, validated data.

`Config` and `Mount` check and normalize every field in `__post_init__`, so a
bad option fails here, before any kernel object exists, with a `ConfigError`
naming the field and the value. `fastcontain.spec` compiles a valid Config
into the native spec.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence  # (isinstance against these is a C call; typing's go through Python)
from typing import Union

from .cgroups import RESOURCE_FIELDS, Resources, format_cpu_list, online_cpus, parse_cpu_list
from .errors import ConfigError
from .net import ports as _netopts

__all__ = ["Config", "Mount", "NAMESPACES", "NETWORKS", "format_cpu_list", "online_cpus", "parse_cpu_list"]

NAMESPACES = ("mount", "pid", "uts", "ipc", "net", "cgroup")
"""The namespaces a container can have, in canonical order."""

NETWORKS = ("none", "host", "container:NAME", "a bridge network's name (the default one: bridge)")

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_HOST_LABEL = re.compile(r"(?!-)[a-zA-Z0-9-]{1,63}(?<!-)\Z")
_USER_PART = re.compile(r"[a-zA-Z0-9_.][a-zA-Z0-9_.-]*\$?\Z")
_MOUNT_FLAGS = ("nosuid", "nodev", "noexec")


def _set(obj: object, name: str, value: object) -> None:
    """Normalize a field of a frozen dataclass in its __post_init__."""
    object.__setattr__(obj, name, value)


def _check_str(field_name: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(field_name, value, f"must be a string, not {type(value).__name__}")
    if "\0" in value:
        raise ConfigError(field_name, value, "contains a NUL byte")
    if not empty and not value:
        raise ConfigError(field_name, value, "must not be empty")
    return value


def _check_container_path(field_name: str, value: object) -> str:
    path = _check_str(field_name, value)
    if not path.startswith("/"):
        raise ConfigError(field_name, path, "must be an absolute path inside the container")
    if ".." in path.split("/"):
        raise ConfigError(field_name, path, "must not contain '..'")
    return path


@dataclass(frozen=True)
class Mount:
    """A mount into the container: by default a recursive read-write bind of a host path.

    `options` are extra mount(8) option names ("nosuid", "noexec", "mode=755"
    for a tmpfs, ...); `readonly` and `recursive` are the common two, spelled out."""

    source: str
    target: str
    readonly: bool = False
    recursive: bool = True
    type: str = "bind"
    options: Sequence[str] = ()

    def __post_init__(self) -> None:
        fstype = _check_str("mount.type", self.type)
        source = _check_str("mount.source", self.source)
        if fstype == "bind" and not source.startswith("/"):
            raise ConfigError("mount.source", source, "a bind mount's source must be an absolute host path")
        target = _check_container_path("mount.target", self.target)
        if target.rstrip("/") == "":
            raise ConfigError("mount.target", target, "cannot mount over the container's root")
        for name in ("readonly", "recursive"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"mount.{name}", getattr(self, name), "must be a bool")
        if isinstance(self.options, str):
            raise ConfigError("mount.options", self.options, "must be a sequence of option names, not a string")
        options = tuple(_check_str("mount.options", o) for o in self.options)
        for o in options:
            if "," in o:
                raise ConfigError("mount.options", o, "one option per item, without ','")
        _set(self, "options", options)

    @classmethod
    def parse(cls, spec: str) -> Mount:
        """docker -v syntax: "SRC:DST[:OPTS]", OPTS a comma list of ro, rw, nosuid, nodev, noexec."""
        if not isinstance(spec, str):
            raise ConfigError("volume", spec, "expected a string SRC:DST[:ro|rw]")
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError("volume", spec, "expected SRC:DST[:ro|rw] (both paths absolute)")
        source, target = parts[0], parts[1]
        if not source.startswith("/"):
            raise ConfigError(
                "volume", spec, f"source {source!r} is not an absolute host path (named volumes are not supported)"
            )
        readonly, options = False, []
        for opt in parts[2].split(",") if len(parts) == 3 else []:
            if opt in ("ro", "rw"):
                readonly = opt == "ro"
            elif opt in _MOUNT_FLAGS:
                options.append(opt)
            else:
                raise ConfigError("volume", spec, f"unknown option {opt!r} (known: ro, rw, {', '.join(_MOUNT_FLAGS)})")
        try:
            return cls(source, target, readonly=readonly, options=tuple(options))
        except ConfigError as e:
            raise ConfigError("volume", spec, e.reason) from None


EnvInput = Union[Mapping[str, str], Sequence[str], None]


def _normalize_env(env: object) -> tuple[str, ...]:
    if env is None:
        return ()
    if isinstance(env, Mapping):
        items = []
        for k, v in env.items():
            _check_str("env key", k)
            if "=" in k:
                raise ConfigError("env key", k, "contains '='")
            items.append(f"{k}={_check_str(f'env[{k!r}]', v, empty=True)}")
    elif isinstance(env, (str, bytes)) or not isinstance(env, Sequence):
        raise ConfigError("env", env, "must be a mapping or a sequence of 'KEY=VALUE' strings")
    else:
        items = list(env)
    out = []
    for item in items:
        _check_str("env", item)
        key, eq, _ = item.partition("=")
        if not eq:
            raise ConfigError("env", item, "expected KEY=VALUE")
        if not key:
            raise ConfigError("env", item, "the key is empty")
        out.append(item)
    return tuple(out)


@dataclass(frozen=True)
class Config:
    """Everything about one container but its image's content.

    `command=None` runs the image's default command. `env` overrides the
    image's (a mapping or "KEY=VALUE" strings). `user` is "uid[:gid]" or names
    from the image's /etc/passwd and /etc/group. `volumes` are Mounts or docker
    -v strings. `network="none"` gives an isolated network namespace with only
    `lo`; "host" shares the host's; "container:NAME" joins a running container's;
    any other name is a bridge network ("bridge", the default one, is made on
    first use). With a bridge network: `ports`
    ("[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]"), a static `ip`, `dns` servers,
    and `egress`, an allow-list of CIDRs and peer names (None: no restriction;
    []: nothing but replies).

    Limits have docker's names and values (fastcontain.cgroups.Resources):
    `memory="64m"`, `memory_swap`, `memory_reservation`, `cpus=0.5` (a CPU quota),
    `cpu_shares`, `cpu_period`, `cpu_quota`, `pids_limit`, `cpuset_cpus="0-1"`
    (the cpuset cgroup and the CPU affinity), `cpuset_mems`, `blkio_weight`,
    `device_read_bps` / `device_write_bps` (("/dev/vda", "1m"), ...). They are
    validated here and gathered in `resources`.
    Security as docker's options: `cap_add`/`cap_drop` (names, "ALL"), `privileged`,
    `security_opt` ("no-new-privileges=false", "seccomp=unconfined|PROFILE.json"),
    `tmpfs` ("PATH[:OPTS]"), `devices` ("HOST[:CONTAINER][:rwm]"),
    `device_cgroup_rules` ("c 1:11 r": allowed, as docker's --device-cgroup-rule), `group_add`,
    `ulimits` ("nofile=1024:2048"), `oom_score_adj`.
    `init=True` runs a minimal init as PID 1 (docker's --init) that reaps
    zombies and forwards signals to the command. `tty=True` gives the command a
    terminal (docker's -t): stdout and stderr are merged on it."""

    image: str
    command: Sequence[str] | str | None = None
    env: EnvInput = None
    workdir: str | None = None
    hostname: str | None = None
    user: str | None = None
    volumes: Sequence[Mount | str] = ()
    name: str | None = None
    readonly_rootfs: bool = False
    namespaces: Sequence[str] = field(default=NAMESPACES)
    network: str = "none"
    # limits (the cgroup), with docker's names
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
    resources: Resources = field(init=False, repr=False, compare=False)
    entrypoint: Sequence[str] | str | None = None
    """Replaces the image's Entrypoint (and then its Cmd is not used), as docker --entrypoint."""
    pull: str = "never"
    """For a stored image: "never", "missing" (pull on a miss) or "always"."""
    # security (checked and normalized by fastcontain.security.normalize_options)
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    privileged: bool = False
    security_opt: Sequence[str] = ()
    tmpfs: Sequence[str] | Mapping[str, str] = ()
    devices: Sequence[str] = ()
    device_cgroup_rules: Sequence[str] = ()
    group_add: Sequence[str | int] = ()
    ulimits: Sequence[str] = ()
    oom_score_adj: int | None = None
    userns: object = None
    ports: Sequence[str | _netopts.Port] = ()
    ip: str | None = None
    dns: Sequence[str] = ()
    egress: Sequence[str] | None = None
    init: bool = False
    tty: bool = False

    def __post_init__(self) -> None:
        _check_str("image", self.image)

        if self.command is not None:
            command: object = self.command
            if isinstance(command, str):
                try:
                    command = shlex.split(command)
                except ValueError as e:
                    raise ConfigError("command", self.command, f"cannot split it like a shell: {e}") from None
            if isinstance(command, bytes) or not isinstance(command, Sequence):
                raise ConfigError("command", self.command, "must be a sequence of strings")
            if not command:
                raise ConfigError("command", self.command, "is empty: give a program to run, or None for the image's")
            _set(self, "command", tuple(_check_str(f"command[{i}]", a, empty=i > 0) for i, a in enumerate(command)))

        _set(self, "env", _normalize_env(self.env))

        if self.entrypoint is not None:
            entry: object = self.entrypoint
            entry = [entry] if isinstance(entry, str) else entry
            if isinstance(entry, bytes) or not isinstance(entry, Sequence):
                raise ConfigError("entrypoint", self.entrypoint, "must be a string or a sequence of strings")
            _set(self, "entrypoint", tuple(_check_str(f"entrypoint[{i}]", a, empty=True) for i, a in enumerate(entry)))
        if self.pull not in ("never", "missing", "always"):
            raise ConfigError("pull", self.pull, "expected 'never', 'missing' or 'always'")

        if self.workdir is not None:
            _check_container_path("workdir", self.workdir)

        if isinstance(self.namespaces, str) or not isinstance(self.namespaces, Sequence):
            raise ConfigError("namespaces", self.namespaces, "must be a sequence of namespace names")
        for ns in self.namespaces:
            if ns == "user":
                raise ConfigError("namespaces", ns, "a user namespace needs its mapping: use userns='auto' (or a range)")
            if ns not in NAMESPACES:
                raise ConfigError("namespaces", ns, f"unknown namespace (known: {', '.join(NAMESPACES)})")
        if "mount" not in self.namespaces:
            raise ConfigError("namespaces", tuple(self.namespaces), "'mount' is required: the root filesystem lives in it")
        namespaces = tuple(ns for ns in NAMESPACES if ns in self.namespaces)

        mode, _ = _netopts.parse_network(self.network)
        for name, empty in (("ports", ()), ("ip", None), ("dns", ()), ("egress", None)):
            value = getattr(self, name)
            if mode != "bridge" and value != empty and not (empty == () and not value):
                raise ConfigError(name, value, f"needs a bridge network (network={self.network!r})")
        for name in ("ports", "dns"):
            if isinstance(getattr(self, name), (str, bytes)) or not isinstance(getattr(self, name), Sequence):
                raise ConfigError(name, getattr(self, name), "must be a sequence")
        _set(self, "ports", tuple(_netopts.Port.parse(p, f"ports[{i}]") for i, p in enumerate(self.ports)))
        _set(self, "dns", tuple(_netopts.parse_address(d, f"dns[{i}]") for i, d in enumerate(self.dns)))
        if self.ip is not None:
            _set(self, "ip", _netopts.parse_address(self.ip, "ip"))
        if self.egress is not None:
            if isinstance(self.egress, (str, bytes)) or not isinstance(self.egress, Sequence):
                raise ConfigError("egress", self.egress, "must be a sequence of CIDRs and container names")
            _set(self, "egress", tuple(_netopts.parse_egress(e, f"egress[{i}]") for i, e in enumerate(self.egress)))
        if mode in ("host", "container"):
            namespaces = tuple(ns for ns in namespaces if ns != "net")
        elif "net" not in namespaces:
            raise ConfigError("network", self.network, "a network of its own needs 'net' in namespaces (or use 'host')")
        _set(self, "namespaces", namespaces)

        if self.hostname is not None:
            hostname = _check_str("hostname", self.hostname)
            if len(hostname.encode()) > 64:
                raise ConfigError("hostname", hostname, "longer than 64 bytes")
            if not all(_HOST_LABEL.match(label) for label in hostname.split(".")):
                raise ConfigError(
                    "hostname", hostname, "dot-separated labels of letters, digits and '-' (not at either end)"
                )
            if "uts" not in namespaces:
                raise ConfigError("hostname", hostname, "setting a hostname needs the 'uts' namespace")

        if self.user is not None:
            user = _check_str("user", self.user)
            parts = user.split(":")
            if len(parts) > 2 or not all(_USER_PART.match(p) for p in parts):
                raise ConfigError("user", user, "expected USER[:GROUP], each a number or a name")

        if isinstance(self.volumes, (str, Mount)) or not isinstance(self.volumes, Sequence):
            raise ConfigError("volumes", self.volumes, "must be a sequence of Mount or 'SRC:DST[:ro]' strings")
        volumes = []
        for i, v in enumerate(self.volumes):
            if isinstance(v, str):
                try:
                    v = Mount.parse(v)
                except ConfigError as e:
                    raise ConfigError(f"volumes[{i}]", e.value, e.reason) from None
            elif not isinstance(v, Mount):
                raise ConfigError(f"volumes[{i}]", v, "must be a Mount or an 'SRC:DST[:ro]' string")
            if v.type == "bind" and not os.path.exists(v.source):
                raise ConfigError(f"volumes[{i}].source", v.source, "does not exist on the host")
            volumes.append(v)
        _set(self, "volumes", tuple(volumes))

        if self.name is not None:
            name = _check_str("name", self.name)
            if len(name) > 128 or not _NAME.match(name):
                raise ConfigError("name", name, "must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)")

        for flag in ("readonly_rootfs", "init", "tty"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(flag, getattr(self, flag), "must be a bool")

        resources = Resources(**{f: getattr(self, f) for f in RESOURCE_FIELDS})
        for f in RESOURCE_FIELDS:
            _set(self, f, getattr(resources, f))
        _set(self, "resources", resources)

        from . import security

        for name, value in security.normalize_options(self).items():
            _set(self, name, value)
        policy = security.device_policy(self)
        if policy != resources.device_policy:  # --device or privileged: the devices cgroup's rules
            _set(self, "resources", dataclasses.replace(resources, device_policy=policy))

