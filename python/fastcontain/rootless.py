"""Rootless use: fastcontain run by a user who is not root.

A container then always gets a user namespace that maps the caller's uid and gid to
0 inside (one id each: a private subuid file cannot configure newuidmap, and without
it an unprivileged process may map only its own ids). In that namespace the child
mounts the overlay itself with `userxattr` (Linux 5.11+), a fresh /proc (its pid
namespace is its own), a tmpfs /dev with the host's device nodes bound in (mknod is
impossible there), and pivots as usual. There are no cgroups: limits need a cgroup
fastcontain may create, which an unprivileged user has not (CgroupError naming the
path); the pid namespace still ends every process with the first one. The network
is "none" (a namespace with only lo) or "host"; a bridge needs root.

The image store and the runtime root are the user's own, as podman's:
$XDG_DATA_HOME/fastcontain (default ~/.local/share/fastcontain) and
$XDG_RUNTIME_DIR/fastcontain (default /tmp/fastcontain-run-UID, made 0700).

A host that forbids unprivileged user namespaces is named before anything is made:
the sysctls kernel.unprivileged_userns_clone (Debian's older kernels),
user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns (Ubuntu).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .cgroups import Cgroup, Resources
    from .security import Userns


def active() -> bool:
    """Whether this process runs fastcontain rootless (its effective uid is not 0)."""
    return os.geteuid() != 0


def data_home() -> str:
    """The image store of a rootless user."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fastcontain")


def runtime_root() -> str:
    """The runtime root (container state) of a rootless user, made 0700 if missing."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        return os.path.join(run, "fastcontain")
    path = f"/tmp/fastcontain-run-{os.geteuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if st.st_uid != os.geteuid() or not os.path.isdir(path) or os.path.islink(path):
            raise ConfigError("runtime root", path, "exists and is not a directory of this user's: set XDG_RUNTIME_DIR") from None
    return path


# (sysctl file, the value that refuses, what it means)
POLICIES = (
    ("/proc/sys/user/max_user_namespaces", "0", "user namespaces are off"),
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "unprivileged user namespaces are refused"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
     "AppArmor refuses unprivileged user namespaces to programs without a profile allowing them"),
)


def check_host() -> None:
    """The host's policy on unprivileged user namespaces, named when it says no."""
    if not os.path.exists("/proc/self/ns/user"):
        raise ConfigError("userns", None, "this kernel has no user namespaces (CONFIG_USER_NS): rootless use needs them")
    release = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2] if p.isdigit())
    if release < (5, 11):
        raise ConfigError("userns", None, f"Linux {os.uname().release} cannot mount an overlay in a user namespace "
                          "(userxattr needs 5.11+): rootless use needs a newer kernel")
    for path, bad, meaning in POLICIES:
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value == bad:
            sysctl = path.removeprefix("/proc/sys/").replace("/", ".")
            raise ConfigError("userns", None, f"the sysctl {sysctl} is {bad}: {meaning}, so fastcontain cannot run "
                              f"rootless here (as root: sysctl -w {sysctl}={int(not int(bad)) if bad == '1' else 1})")


def userns(value: object) -> Userns:
    """The user namespace of a rootless container: the caller's uid and gid as 0 inside."""
    from .security import Userns

    check_host()
    uid, gid = os.geteuid(), os.getegid()
    own = Userns(((0, uid, 1),), ((0, gid, 1),))
    if value is None or value == own:
        return own
    if value == "auto":
        return subid_userns(uid, gid)
    if value == "host":
        raise ConfigError("userns", value, "rootless, a container needs a user namespace (its root is the caller)")
    raise ConfigError("userns", value, f"rootless, the mapping is the caller's own ids (0:{uid}:1 and 0:{gid}:1: "
                      "leave userns unset) or with its /etc/subuid and /etc/subgid ranges above them (userns='auto')")


HELPERS = ("newuidmap", "newgidmap")
AUTO_COUNT = 65536


def _helper(name: str) -> str | None:
    import shutil

    return shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.path.exists(p)), None)


def subid_userns(uid: int, gid: int) -> Userns:
    """userns='auto' rootless, as podman's: 0 is the caller, 1.. its first range in
    /etc/subuid and /etc/subgid (at most 65535 ids), written by newuidmap and newgidmap
    (setuid helpers that read those files; package uidmap)."""
    import pwd

    from .security import Userns

    missing = [h for h in HELPERS if _helper(h) is None]
    if missing:
        raise ConfigError("userns", "auto", f"rootless userns='auto' needs {' and '.join(missing)} (apt-get install "
                          "uidmap) to map the /etc/subuid range; leave userns unset for the caller's own ids only")
    try:
        names = {pwd.getpwuid(uid).pw_name, str(uid)}
    except KeyError:
        names = {str(uid)}
    maps = []
    for kind, own in (("uid", uid), ("gid", gid)):
        path = f"/etc/sub{kind}"
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ConfigError("userns", "auto", f"cannot read {path}: {e.strerror}") from None
        found = None
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit() and int(parts[2]) > 0:
                found = (int(parts[1]), int(parts[2]))
                break
        if found is None:
            raise ConfigError("userns", "auto", f"{path} gives {' or '.join(sorted(names))} no range (as root: "
                              f"usermod --add-sub{kind}s 100000-165535 USER); leave userns unset for the caller's own ids only")
        start, count = found
        maps.append(((0, own, 1), (1, start, min(count, AUTO_COUNT - 1))))
    return Userns(maps[0], maps[1])


def check_network(mode: str, value: str) -> None:
    if mode not in ("none", "host"):
        raise ConfigError("network", value, "rootless, the network is 'none' or 'host': a bridge (veth pairs, "
                          "nftables) needs root")


def check_limits(res: Resources) -> None:
    """Limits need a cgroup, which an unprivileged user may not create: refused (at Config
    time, before anything exists) naming the cgroup directory that is not ours to write."""
    from .cgroups import CgroupError

    if not res.empty:
        raise CgroupError(
            f"resource limits need a cgroup, and this user may not create one (rootless): {_own_cgroup()} is not "
            "writable (a delegated cgroup v2 subtree is not supported yet); run as root or drop the limits",
            path=_own_cgroup(), errno=errno.EACCES,
        )


def cgroup(cid: str, res: Resources) -> Cgroup:
    """No cgroup (see check_limits): an empty one, for the code that reads one."""
    from . import cgroups

    check_limits(res)
    return cgroups.Cgroup(cgroups.Manager(), cid)  # not prepared, no sweep: nothing of the host's is touched


def _own_cgroup() -> str:
    """This process's cgroup v2 directory (or the v2 mount when it has none)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    rel = line[3:].strip()
                    for mount in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                        if os.path.exists(os.path.join(mount, "cgroup.controllers")) or os.path.ismount(mount):
                            return os.path.join(mount, rel.lstrip("/"))
    except OSError:
        pass
    return "/sys/fs/cgroup"


def spec_part(u: Userns) -> dict[str, Any]:
    """The user namespace spec keys of a rootless container (merged into userns_part's):
    the caller's own ids are mapped by the parent itself (setgroups denied, as the kernel
    requires of it), subuid ranges by newuidmap and newgidmap."""
    part: dict[str, Any] = {"overlay_by": "child", "own": [], "traverse": []}
    if len(u.uid_map) > 1 or len(u.gid_map) > 1:
        part["map_helpers"] = [_helper(h) for h in HELPERS]
    else:
        part["setgroups_deny"] = True
    return part
