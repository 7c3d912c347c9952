"""Compile a validated Config and a resolved Image into the native spec.

The spec is the one value that crosses into `fastcontain._native.spawn`; its
keys are documented in `_native.pyi`. Compiling is pure: it reads the image's
/etc/passwd and /etc/group to resolve a user name, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence, cast

from . import security
from .errors import ConfigError
from .image import DEFAULT_PATH, Image
from .state import Paths

if TYPE_CHECKING:  # (annotations only: an exec from the CLI compiles nothing and skips config's imports)
    from .config import Config, Mount

MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _table(text: str | None, width: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        fields = line.split(":")
        if line.strip() and not line.startswith("#") and len(fields) >= width:
            rows.append(fields)
    return rows


def _number(user: str, part: str) -> int | None:
    if not part.isdigit():
        return None
    n = int(part)
    if n > MAX_ID:
        raise ConfigError("user", user, f"{n} is out of range (0..{MAX_ID})")
    return n


def resolve_user(user: str | None, image: Image) -> User:
    """uid, gid, supplementary groups and home of "user[:group]" in the image, as runc does:
    a numeric uid need not exist; its gid is then 0 unless given."""
    spec = user or image.user or "0"
    name, _, group = spec.partition(":")
    passwd = _table(image.read_etc("passwd"), 7)  # name:pw:uid:gid:gecos:home:shell
    groups = _table(image.read_etc("group"), 4)  # name:pw:gid:members
    uid = _number(spec, name)
    entry = next((p for p in passwd if (p[2] == name if uid is not None else p[0] == name)), None)
    if uid is None:
        if entry is None:
            raise ConfigError("user", spec, f"no user {name!r} in the /etc/passwd of image {image.name!r}")
        uid = _number(spec, entry[2])
        if uid is None:
            raise ConfigError("user", spec, f"the /etc/passwd entry of {name!r} has a bad uid {entry[2]!r}")
    if group:
        gid = _number(spec, group)
        if gid is None:
            found = next((g for g in groups if g[0] == group and g[2].isdigit()), None)
            if found is None:
                raise ConfigError("user", spec, f"no group {group!r} in the /etc/group of image {image.name!r}")
            gid = int(found[2])
    else:
        gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    extra: tuple[int, ...] = ()
    if entry is not None:
        extra = tuple(
            dict.fromkeys(
                int(g[2]) for g in groups if entry[0] in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid
            )
        )
    home = entry[5] if entry is not None and entry[5].startswith("/") else "/"
    return User(uid, gid, extra, home)


def merge_env(*layers: Iterable[str]) -> list[str]:
    """KEY=VALUE lists merged in order, a later KEY replacing an earlier one."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            merged[item.partition("=")[0]] = item
    return list(merged.values())


def mount_spec(m: Mount) -> dict[str, Any]:
    options = ["rbind" if m.recursive else "bind"] if m.type == "bind" else []
    options += (["ro"] if m.readonly else []) + list(m.options)
    return {"source": m.source, "target": m.target, "type": m.type, "options": options}


def template(config: Config, image: Image, user: User | None = None) -> dict[str, Any]:
    """The part of the spec that depends on `config`, `image` and `user` alone (see _template)."""
    return _template(config, image, user)[0]


def _template(config: Config, image: Image, user: User | None) -> tuple[dict[str, Any], User]:
    """The part of the spec that depends on `config`, `image` and the resolved `user`
    alone: everything but the container's paths (rootfs, overlay, a user namespace's
    folders), its hostname and env (a default hostname is the id's), stdio and start mode.
    compile() completes a copy of it per container; prepared.compile keeps one per Config."""
    command = cast("tuple[str, ...] | None", config.command)
    entrypoint = cast("tuple[str, ...] | None", config.entrypoint)
    # docker's rules: the user's entrypoint drops the image's Cmd; a command replaces Cmd only.
    if entrypoint is not None:
        argv = list(entrypoint) + list(command or ())
    else:
        argv = list(image.entrypoint) + list(command or image.cmd)
    if not argv:
        raise ConfigError("command", None, f"image {image.name!r} has no default command: give one")
    user = user or resolve_user(config.user, image)
    volumes = cast("tuple[Mount, ...]", config.volumes)
    secure = security.spec_part(config, image)
    return {
        "argv": argv,
        "cwd": config.workdir or image.workdir or "/",
        "readonly_rootfs": config.readonly_rootfs,
        "namespaces": list(config.namespaces),
        "default_mounts": True,
        "mounts": [mount_spec(m) for m in image.mounts + volumes] + secure.pop("mounts"),
        "uid": user.uid,
        "gid": user.gid,
        "groups": list(dict.fromkeys(list(user.groups) + secure.pop("groups"))),
        "umask": 0o022,
        "cpus": list(config.resources.cpu_set or ()) or None,  # cpuset_cpus: also the affinity
        "cgroup_fd": None,  # set by api._launch from the container's cgroup
        **secure,
        "init": config.init,
        "tty": config.tty,
    }, user


def _copy(tpl: dict[str, Any]) -> dict[str, Any]:
    """A template's copy for one container: its lists (and the mounts' dicts and options)
    are the container's own, as callers extend them (a network's binds, say)."""
    spec = {k: (list(v) if type(v) is list else v) for k, v in tpl.items()}
    spec["mounts"] = [{**m, "options": list(m["options"])} for m in spec["mounts"]]
    return spec


def compile(
    config: Config, image: Image, paths: Paths, stdio: Sequence[int], *, wait_for_start: bool = False,
    user: User | None = None, template_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The native spec for running `config` on `image` with state under `paths`.

    `stdio`: the host fds that become the container's 0, 1, 2 (-1 inherits); `user`:
    config.user already resolved in the image (prepared.user), else it is resolved here;
    `template_`: template(config, image, user), made before (prepared.compile), copied here."""
    if template_ is None:
        spec, user = _template(config, image, user)
    else:
        spec = _copy(template_)
        user = user or resolve_user(config.user, image)
    hostname = config.hostname or (paths.id[:12] if "uts" in spec["namespaces"] else None)
    base = [f"PATH={DEFAULT_PATH}", f"HOME={user.home}"] + ([f"HOSTNAME={hostname}"] if hostname else [])
    ns = security.userns_part(config, image, paths)
    lower = ns.pop("lower", None) or list(image.layers)
    spec.update(
        env=merge_env(base, image.env, cast("tuple[str, ...]", config.env)),
        rootfs=paths.rootfs,
        overlay={"lower": lower, "upper": paths.upper, "work": paths.work},
        hostname=hostname,
        stdio=list(stdio),
        wait_for_start=wait_for_start,
        **ns,
    )
    return spec
