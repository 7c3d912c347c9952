"""The floor runner: benches/floor.c, built with `cc` at bench time, doing the kernel work of
one fastcontain container and nothing else (see the C file's header for the list).

It runs as a server (one process per thread that uses it), so a round costs one pipe
round trip on top of the container itself, and it answers with its own per-step times.
Its cgroup placement copies fastcontain's: `fastcontain_cgroups()` starts one fastcontain
container and reads, from the host side, which hierarchies it was placed in; the floor
then creates one cgroup per container in the same ones (born into the cgroup2 one with
CLONE_INTO_CGROUP, joining v1 controllers by a write, with a memory and a pids limit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent / "floor.c"
CGROUP_ROOT = "/sys/fs/cgroup"
SERVERS = 2  # as many as threads use it at once (the throughput bench's two)
# fastcontain.run's defaults that change the kernel work: a network namespace reused (one
# per floor server, lo up) instead of a new one each, the mount namespace closed after the
# answer instead of by the init's exit. FASTCONTAIN_FLOOR_FRESH=1: neither (the kernel work
# of a runtime that makes a new network namespace for every container, as crun's).
AS_FASTCONTAIN = () if os.environ.get("FASTCONTAIN_FLOOR_FRESH") == "1" else ("--reuse-netns", "--hold-mnt")


def build(workdir: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) to build the floor program (apt-get install gcc)")
    out = workdir / "floor"
    r = subprocess.run([cc, "-O2", "-Wall", "-Wno-format-truncation", "-o", str(out), str(SOURCE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"building {SOURCE} failed:\n{r.stderr}"
    return out


def _cgroup_lines(pid: int | str) -> dict[str, str]:
    """hierarchy (controllers, or '' for cgroup2) -> path, from /proc/PID/cgroup."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            out[controllers] = path
    return out


def _mount_of(controllers: str) -> str | None:
    """Where a hierarchy is mounted on the host."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _, opts = (post.split() + ["", "", ""])[:3]
            point = pre.split()[4]
            if controllers == "" and fstype == "cgroup2":
                return point
            if fstype == "cgroup" and set(controllers.split(",")) <= set(opts.split(",")):
                return point
    return None


def fastcontain_cgroups() -> list[str]:
    """The host mount points of the cgroup hierarchies a default fastcontain container is
    placed in (a cgroup2 one first), seen from outside while it sleeps."""
    import fastcontain

    ours = _cgroup_lines("self")
    with fastcontain.Container.create("busybox", ["sleep", "10"]) as c:
        c.start()
        assert c.pid is not None
        theirs = _cgroup_lines(c.pid)
    placed = [h for h, path in theirs.items() if path != ours.get(h) and not h.startswith("name=")]
    points = [_mount_of(h) for h in sorted(placed, key=lambda h: h != "")]
    return [p for p in points if p]


def security_args(workdir: Path) -> list[str]:
    """fastcontain's default security work, for the floor to do the same: its masked and
    read-only paths, its kept capabilities, its seccomp filters and its device program (written
    into workdir)."""
    try:
        from fastcontain import security
    except ImportError:
        return []
    args: list[str] = []
    if hasattr(security, "default_seccomp"):
        program = security.default_seccomp(frozenset(security.capabilities()))
        for i, bpf in enumerate(program.bpf()):
            path = workdir / f"seccomp-{i}.bpf"
            path.write_bytes(bpf)
            args += ["--seccomp", str(path)]
    for p in getattr(security, "MASKED_PATHS", ()):
        args += ["--mask", p]
    for p in getattr(security, "READONLY_PATHS", ()):
        args += ["--ro", p]
    try:  # the device policy's program, as fastcontain attaches to each container's v2 cgroup
        from fastcontain import cgroups, devices
    except ImportError:
        pass
    else:
        if cgroups.manager().device_backend == "bpf":
            path = workdir / "devices.bpf"
            path.write_bytes(devices.DEFAULT_POLICY.program())
            args += ["--device-bpf", str(path)]
    if hasattr(security, "capabilities"):
        keep = set(security.capabilities())
        mask = sum(1 << i for i, c in enumerate(security.ALL_CAPS) if c in keep)
        args += ["--caps", f"{mask:x}"]
    return args


class Floor:
    """Floor servers (one per concurrent caller) sharing one image, state root and cgroup parents."""

    def __init__(self, binary: Path, lower: Path, state: Path, hierarchies: list[str]) -> None:
        self.binary, self.lower, self.state = binary, lower, state
        state.mkdir(exist_ok=True)
        self.security = security_args(binary.parent)
        self.parents: list[tuple[str, str]] = []  # (flag, dir)
        for mount in hierarchies:
            parent = os.path.join(mount, f"fastcontain-floor-{os.getpid()}")
            os.mkdir(parent)
            v2 = os.path.exists(os.path.join(mount, "cgroup.controllers"))
            self.parents.append(("--cgroup-v2" if v2 else "--cgroup-v1", parent))
        self._idle: list[subprocess.Popen[str]] = []
        self._servers: list[subprocess.Popen[str]] = []
        self._lock = threading.Lock()
        for _ in range(SERVERS):  # made now, so they exist before a bench's leak check starts
            self._idle.append(self._start())

    def argv(self) -> list[str]:
        flags = [x for pair in self.parents for x in pair]
        # what fastcontain.run does by default: a reused network namespace (netns.py's
        # reserve) and the mount namespace held past the exit (spec hold_mount_ns)
        return [str(self.binary), "--lower", str(self.lower), "--root", str(self.state), *flags, *self.security,
                *AS_FASTCONTAIN]

    def _start(self) -> subprocess.Popen[str]:
        s = subprocess.Popen([*self.argv(), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._servers.append(s)
        return s

    def run(self, argv0: str = "/bin/true") -> dict[str, int]:
        """One container on an idle server; its per-step nanoseconds. Raises unless it exited 0."""
        with self._lock:
            s = self._idle.pop() if self._idle else self._start()
        try:
            assert s.stdin is not None and s.stdout is not None
            s.stdin.write(f"run {argv0}\n")
            s.stdin.flush()
            reply = s.stdout.readline().split()
        finally:
            with self._lock:
                self._idle.append(s)
        assert reply and reply[0] == "0", f"floor: {' '.join(reply) or 'no answer'}"
        return {k: int(v) for k, v in (kv.split("=") for kv in reply[1:])}

    def sync(self) -> None:
        """Wait until every server has torn down its last container (their teardown follows
        their answer): what a leak check needs. Raises with a teardown's failure."""
        with self._lock:
            for s in self._servers:
                assert s.stdin is not None and s.stdout is not None
                s.stdin.write("sync\n")
                s.stdin.flush()
                reply = s.stdout.readline().strip()
                assert reply == "ok", f"floor: {reply or 'no answer'}"

    def once(self, args: list[str]) -> str:
        r = subprocess.run([*self.argv(), "--once", *args], capture_output=True, text=True)
        assert r.returncode == 0, f"floor exited {r.returncode}: {r.stderr.strip()}"
        return r.stdout

    def close(self) -> None:
        self._idle.clear()
        for s in self._servers:
            assert s.stdin is not None and s.stdout is not None
            s.stdin.close()
            s.wait()
            s.stdout.close()
        self._servers.clear()
        for _, parent in reversed(self.parents):
            os.rmdir(parent)
        self.parents.clear()
        left = os.listdir(self.state)
        assert left == [], f"the floor left state dirs: {left}"
