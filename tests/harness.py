"""What tests/conftest.py and benches/conftest.py share: per-session runtime and store
folders, the leak check wrapped around each privileged test or bench, the name of a
test's own cgroup parent, and many containers from several threads."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import leakcheck

ENV_ROOT = "FASTCONTAIN_ROOT"
ENV_STORE = "FASTCONTAIN_STORE"
ENV_CGROUP_PARENT = "FASTCONTAIN_CGROUP_PARENT"


@dataclass(frozen=True)
class SessionDirs:
    root: str  # FASTCONTAIN_ROOT: one state folder per container
    store: str  # FASTCONTAIN_STORE: assembled images
    cgroup_parent: str  # FASTCONTAIN_CGROUP_PARENT: the session's own parent cgroup
    saved_env: tuple[tuple[str, str | None], ...]


_session: SessionDirs | None = None


def pytest_configure(config: pytest.Config) -> None:
    """A pytest hook: conftests import it (with pytest_unconfigure) to get the folders."""
    start_session()


def start_session(base: str | None = None) -> None:
    global _session
    _session = open_session(base)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session is not None:
        close_session(_session)


def session() -> SessionDirs:
    assert _session is not None, "harness.pytest_configure did not run"
    return _session


def tmpfs_dir() -> str | None:
    """/dev/shm when it is a tmpfs (None otherwise): where the benches keep their state, as
    fastcontain's default root /run/fastcontain (and crun's /run/crun) is on a tmpfs on a
    usual host. On a disk, each writable layer's removal waits for the disk (a mount with
    `discard` waits for each freed block's discard), which no container needs."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if pre.split()[4] == "/dev/shm" and post.split()[0] == "tmpfs":
                return "/dev/shm"
    return None


def open_session(base: str | None = None) -> SessionDirs:
    """Fresh folders in the environment, set before any test module imports fastcontain
    (from pytest_configure), so nothing touches /run/fastcontain or /var/lib/fastcontain
    even if a module reads them at import. The paths hold "fastcontain" so the leak
    check and the before-stop hook recognise whatever is mounted there. The runtime root
    goes under `base` (default: the temporary folder)."""
    dirs = SessionDirs(
        root=tempfile.mkdtemp(prefix="fastcontain-root-", dir=base),
        store=tempfile.mkdtemp(prefix="fastcontain-store-"),
        cgroup_parent=cgroup_parent_name(),
        saved_env=tuple((k, os.environ.get(k)) for k in (ENV_ROOT, ENV_STORE, ENV_CGROUP_PARENT)),
    )
    os.environ[ENV_ROOT] = dirs.root
    os.environ[ENV_STORE] = dirs.store
    os.environ[ENV_CGROUP_PARENT] = dirs.cgroup_parent
    return dirs


def cgroup_parent_name(pid: int | None = None) -> str:
    """A cgroup parent of a test's own, `fastcontain-test-PID-HEX` with this process's pid:
    the name the package sweeps when empty and its process is gone
    (cgroups.Manager.sweep_session_parents), so a killed run's parents do not stay."""
    return f"fastcontain-test-{os.getpid() if pid is None else pid}-{secrets.token_hex(3)}"


def close_session(dirs: SessionDirs) -> None:
    for key, value in dirs.saved_env:
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    remove_tree(dirs.root)
    remove_tree(dirs.store)
    remove_cgroup_parent(dirs.cgroup_parent)


def remove_cgroup_parent(parent: str) -> None:
    """rmdir the session's parent cgroup in every hierarchy (empty unless a test leaked,
    which the leak check reported)."""
    for base in [leakcheck.CGROUP_ROOT] + [os.path.join(leakcheck.CGROUP_ROOT, c) for c in leakcheck._listdir(leakcheck.CGROUP_ROOT)]:
        path = os.path.join(base, parent)
        if os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError as e:
                print(f"\nfastcontain: could not remove the session's cgroup {path}: {e.strerror}")


def remove_tree(path: str) -> None:
    """rmtree, unless something is mounted below path: deleting through a leaked bind
    mount would delete the host files it shows. Such a folder is kept, and said so."""
    left = leakcheck.mounts_under(path)
    if left:
        print(f"\nfastcontain: not removing {path}: still mounted there: {', '.join(left)}")
        return
    shutil.rmtree(path, ignore_errors=True)


def skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "privileged: creates namespaces and mounts, so it needs root "
            "(run as root, as bash .ci/run does)"
        )


def warm_up() -> None:
    """One container before the first snapshot, so what fastcontain sets up once per
    process (the busybox image in the store, a cached descriptor) is not taken for a
    leak. A failure here is left for the tests themselves to report."""
    try:
        import fastcontain

        fastcontain.run("busybox", ["true"])
    except Exception:
        pass
    try:  # the netlink socket and nftables context fastcontain.net keeps per process
        from fastcontain.net import bridge, nft

        bridge.ipr().link_lookup(ifname="lo")
        nft.host()
    except Exception:
        pass


def threaded(threads: int, per_thread: int, one: Callable[[int], None]) -> list[float]:
    """`one(j)` for j in range(per_thread) on each of `threads` threads at once; the
    latencies in the order they ended (so a first and last thousand mean what they say).
    The first failure of any thread is raised once all have stopped."""
    errors: list[BaseException] = []
    times: list[tuple[float, float]] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            for j in range(per_thread):
                t = time.perf_counter()
                one(j)
                end = time.perf_counter()
                with lock:
                    times.append((end, end - t))
        except BaseException as e:  # raised below, from the calling thread
            errors.append(e)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return [dt for _, dt in sorted(times)]


def flush_teardowns() -> None:
    """Wait for what fastcontain tears down in the background (run()'s state dirs)."""
    import sys

    teardown = sys.modules.get("fastcontain.teardown")
    if teardown is not None:
        teardown.flush()


def kept_descriptors() -> frozenset[int]:
    """The descriptors fastcontain keeps for the process on purpose: the device programs
    it keeps loaded, one per rule set (fastcontain.devices), and the reserve of network
    namespaces given back by containers for reuse (fastcontain.netns, bounded: at most
    its limit, each a network namespace, or that is a leak too)."""
    import sys

    kept: frozenset[int] = frozenset()
    devices = sys.modules.get("fastcontain.devices")
    if devices is not None:
        kept |= devices.cached_descriptors()
    netns = sys.modules.get("fastcontain.netns")
    if netns is not None:
        reserve = netns.reserved()
        assert len(reserve) <= netns.reserve_stats()["limit"], f"the netns reserve holds {len(reserve)}"
        kept |= frozenset(fd for fd in reserve if os.readlink(f"/proc/self/fd/{fd}").startswith("net:["))
    return kept


def _without_caches(found: leakcheck.Snapshot) -> leakcheck.Snapshot:
    """What fastcontain keeps for the process on purpose is no leak (kept_descriptors)."""
    import dataclasses

    if not found.fds:
        return found
    kept = kept_descriptors()
    return dataclasses.replace(found, fds=frozenset(f for f in found.fds if f[0] not in kept))


def leaks(before: leakcheck.Snapshot, after: leakcheck.Snapshot, root: str) -> list[str]:
    """leakcheck.leaks without what fastcontain keeps on purpose (kept_descriptors)."""
    return leakcheck.describe(root, _without_caches(leakcheck.new(before, after)))


@contextlib.contextmanager
def leak_checked(root: str) -> Iterator[None]:
    """Fail (naming each object) if the body left a mount, a state folder, a child
    process, a descriptor, a link, a netns or a cgroup behind; then clean it up."""
    before = leakcheck.take(root)
    yield
    flush_teardowns()
    found = _without_caches(leakcheck.new(before, leakcheck.take(root)))
    # a container's veth goes with its netns, whose teardown the kernel finishes
    # asynchronously (FACTS.md): a link is a leak only if it stays
    deadline = time.monotonic() + 10
    while found.links and time.monotonic() < deadline:
        time.sleep(0.05)
        found = _without_caches(leakcheck.new(before, leakcheck.take(root)))
    lines = leakcheck.describe(root, found)
    if lines:
        leakcheck.clean(found)
        pytest.fail("leaked:\n  " + "\n  ".join(lines), pytrace=False)
