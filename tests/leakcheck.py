"""What a container may leave behind on the host, seen from the test process.

`take()` snapshots every kind of kernel object fastcontain owns or could leak;
`leaks(before, after)` names what appeared in between; `clean()` removes it again
where that is safe, so one leaking test does not spoil the host or the tests after it.
tests/conftest.py runs this around every privileged test, benches/conftest.py around
every bench. The patterns are the ones shared/hooks/before-stop looks for.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
from dataclasses import dataclass, fields

# Host objects carry fastcontain's name (or an fc- / fc_ prefix).
MOUNT_PATTERN = re.compile(r"fastcontain|/fc[-_]")
NAME_PATTERN = re.compile(r"^(fc|fastcontain)")
CGROUP_PATTERN = re.compile(r"^(fastcontain|fc-)")
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_DEPTH = 4  # levels below a controller's root, as the hook looks


@dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[str]  # raw /proc/self/mountinfo lines (the mount id makes each one unique)
    state: frozenset[str]  # entries of the runtime root, and of its names/ folder
    children: frozenset[int]  # children of any thread of this process, zombies included
    fds: frozenset[tuple[int, str]]  # (fd, what it points to)
    links: frozenset[str]  # network interfaces of this process's netns
    netns: frozenset[str]  # names under /run/netns
    cgroups: frozenset[str]  # cgroup directories


def take(runtime_root: str) -> Snapshot:
    return Snapshot(
        mounts=frozenset(_mounts(runtime_root)),
        state=frozenset(_state(runtime_root)),
        children=frozenset(_children()),
        fds=frozenset(_fds()),
        links=frozenset(n for n in _listdir("/sys/class/net") if NAME_PATTERN.match(n)),
        netns=frozenset(n for n in _listdir("/run/netns") if NAME_PATTERN.match(n)),
        cgroups=frozenset(_cgroups()),
    )


def new(before: Snapshot, after: Snapshot) -> Snapshot:
    """What is in `after` but not in `before`, kind by kind."""
    return Snapshot(**{f.name: getattr(after, f.name) - getattr(before, f.name) for f in fields(Snapshot)})


def describe(runtime_root: str, found: Snapshot) -> list[str]:
    """One line a person can act on for each leaked object."""
    lines = [f"mount {_mount_summary(m)}" for m in sorted(found.mounts)]
    lines += [f"state entry {os.path.join(runtime_root, s)}" for s in sorted(found.state)]
    lines += [f"child process {_process_summary(pid)}" for pid in sorted(found.children)]
    lines += [f"open descriptor {fd} -> {target}" for fd, target in sorted(found.fds)]
    lines += [f"network link {n}" for n in sorted(found.links)]
    lines += [f"named netns /run/netns/{n}" for n in sorted(found.netns)]
    lines += [f"cgroup {c}" for c in sorted(found.cgroups)]
    return lines


def leaks(before: Snapshot, after: Snapshot, runtime_root: str) -> list[str]:
    return describe(runtime_root, new(before, after))


def clean(found: Snapshot) -> None:
    """Best effort: kill and reap leaked children, detach leaked mounts, delete leaked
    links, netns and empty cgroups. Descriptors are left alone (closing a number some
    object still owns could close an unrelated file later); state folders are left for
    the session's teardown, which removes the runtime root once no mount is under it."""
    for pid in found.children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    for line in sorted(found.mounts, key=lambda m: -len(_mount_point(m))):  # deepest first
        libc.umount2(_mount_point(line).encode(), 2)  # MNT_DETACH
    for name in found.links:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    for name in found.netns:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for path in sorted(found.cgroups, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass


def mounts_under(path: str) -> list[str]:
    """Mount points at or below path in this process's mount table."""
    path = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [_mount_point(line) for line in f]
    return [p for p in points if (p.rstrip("/") + "/").startswith(path)]


# -- the kinds --------------------------------------------------------------------


def _mounts(runtime_root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [
            line.rstrip("\n")
            for line in f
            if MOUNT_PATTERN.search(line) or (runtime_root and runtime_root in line)
        ]


def _state(runtime_root: str) -> list[str]:
    # <root>/<id>/ per container, <root>/names/<name> per named one (fastcontain/state.py)
    # networks/ (fastcontain.net) stays once made; a network record left in it is a leak
    names = os.path.join(runtime_root, "names")
    networks = os.path.join(runtime_root, "networks")
    return (
        [e for e in _listdir(runtime_root) if e != "networks"]
        + [os.path.join("names", n) for n in _listdir(names)]
        + [os.path.join("networks", n) for n in _listdir(networks) if n.endswith(".json")]
    )


def _children() -> list[int]:
    pids: list[int] = []
    for tid in _listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return pids


def _fds() -> list[tuple[int, str]]:
    out = []
    for name in _listdir("/proc/self/fd"):
        try:
            out.append((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:  # the descriptor listdir itself used, closed by now
            pass
    return out


def _cgroups() -> list[str]:
    found: list[str] = []

    def walk(path: str, depth: int) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            if CGROUP_PATTERN.match(e.name):
                found.append(e.path)
                found.extend(_below(e.path))  # a container's cgroup under fastcontain's parent
            elif depth < CGROUP_DEPTH:
                walk(e.path, depth + 1)

    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):  # pure v2: one hierarchy
        walk(CGROUP_ROOT, 1)
    else:  # v1 or hybrid: one hierarchy per controller folder
        for controller in _listdir(CGROUP_ROOT):
            walk(os.path.join(CGROUP_ROOT, controller), 1)
    return found


def _below(path: str) -> list[str]:
    """Every cgroup directory under path (a cgroup's only subdirectories are cgroups)."""
    out: list[str] = []
    for dirpath, dirnames, _files in os.walk(path):
        out.extend(os.path.join(dirpath, d) for d in dirnames)
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mount_point(line: str) -> str:
    return line.split()[4].replace("\\040", " ")


def _mount_summary(line: str) -> str:
    pre, _, post = line.partition(" - ")
    fstype, source = (post.split() + ["?", "?"])[:2]
    return f"{_mount_point(line)} ({fstype} from {source}, root {pre.split()[3]})"


def _process_summary(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} ({comm}, state {state}{', zombie: never reaped' if state == 'Z' else ''}) {cmdline}"
