"""Containers' state on the host, under one runtime root.

Layout (default /run/fastcontain, or $FASTCONTAIN_ROOT):

    <root>/lock              flock: shared while a container dir is being made, exclusive for a sweep
    <root>/names/<name>      holds the id of the container that owns the name (made with O_EXCL)
    <root>/<id>/lock         flock'ed by the owning process for the container's life
    <root>/<id>/upper, work  the container's writable overlay layer and overlayfs' work dir
    <root>/<id>/rootfs       an empty mount point: the overlay is mounted on it inside the
                             container's own mount namespace, so no host mount can leak
    <root>/<id>/stdout.log, stderr.log   output of a Container (not of run())
    <root>/<id>/state.json   the record of a detached container (status, pid, exit code...),
                             replaced atomically (temp + rename) under <root>/<id>/state.lock
    <root>/<id>/ctl.sock     its supervisor's control socket (fastcontain.supervisor)

A container dir whose lock nobody holds was left by a crash: `sweep` removes it,
unless it has a record: a detached container's state and logs stay until removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
from contextlib import contextmanager

TYPE_CHECKING = False  # typing and shutil are not imported at run time (fastcontain-oci starts per call)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

from . import nativefn as _nativefn
from .errors import ConfigError, ContainerError

DEFAULT_ROOT = "/run/fastcontain"
_ID = re.compile(r"[0-9a-f]{16}\Z")
# ids an OCI engine chooses (containerd: names; podman: 64 hex digits)
_OCI_ID = re.compile(r"(?!names\Z|lock\Z)[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}\Z")
_swept: set[str] = set()
_ready: set[str] = set()  # roots made and swept by this process


def default_root() -> str:
    root = os.environ.get("FASTCONTAIN_ROOT")
    if root:
        return root
    if os.geteuid() != 0:  # rootless: the user's own (rootless.py)
        from . import rootless

        return rootless.runtime_root()
    return DEFAULT_ROOT


def new_id() -> str:
    import secrets  # (hashlib: ~6 ms of every fastcontain-oci call that never makes an id)

    return secrets.token_hex(8)


class Paths:
    """Where one container's state lives. Frozen; written out rather than a dataclass,
    whose import (inspect, ast, dis: ~8 ms) every fastcontain-oci call would pay. The
    container's dir is joined once (its paths are read a dozen times per container)."""

    __slots__ = ("root", "id", "dir")
    root: str
    id: str
    dir: str

    def __init__(self, root: str, id: str) -> None:
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "id", id)
        # os.path.join(root, id) spelled out, as its files below (on every run's path)
        object.__setattr__(self, "dir", id if id.startswith("/") else (root + id if root.endswith("/") else f"{root}/{id}"))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Paths is frozen: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and (self.root, self.id) == (other.root, other.id)

    def __hash__(self) -> int:
        return hash((self.root, self.id))

    def __repr__(self) -> str:
        return f"Paths(root={self.root!r}, id={self.id!r})"

    @property
    def upper(self) -> str:
        return f"{self.dir}/upper"

    @property
    def work(self) -> str:
        return f"{self.dir}/work"

    @property
    def rootfs(self) -> str:
        return f"{self.dir}/rootfs"

    @property
    def stdout_log(self) -> str:
        return f"{self.dir}/stdout.log"

    @property
    def stderr_log(self) -> str:
        return f"{self.dir}/stderr.log"

    @property
    def lock(self) -> str:
        return f"{self.dir}/lock"

    @property
    def record(self) -> str:
        return f"{self.dir}/state.json"

    @property
    def record_lock(self) -> str:
        return os.path.join(self.dir, "state.lock")

    @property
    def ctl(self) -> str:
        return os.path.join(self.dir, "ctl.sock")


def rmtree(path: str) -> None:
    """Remove a tree, including overlayfs' `work/work` (mode 000) when not root."""

    def retry(func: Callable[..., Any], failed: str, _exc: Any) -> None:
        if not os.path.lexists(failed):
            return
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
            rmtree(failed)
        else:
            os.chmod(os.path.dirname(failed), 0o700)
            func(failed)

    import shutil

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


# What a container that wrote nothing leaves, deepest first: (path, is_dir). A volatile
# overlay leaves work/work/incompat/volatile/dirty behind.
_SHAPE = (
    ("work/work/incompat/volatile/dirty", False), ("work/work/incompat/volatile", True),
    ("work/work/incompat", True), ("work/work", True), ("work", True), ("upper", True),
    ("rootfs", True), ("lock", False), ("stdout.log", False), ("stderr.log", False),
)


def _remove_known_shape(path: str) -> bool:
    """Remove a state dir of the usual shape with one unlink or rmdir per entry (a
    fifth of rmtree's syscalls), natively with the GIL released (the teardown worker
    would otherwise take it from the threads starting containers at each syscall);
    False, leaving the rest to rmtree, when it has more."""
    remove = _nativefn.get("remove_entries")
    if remove is None:  # (some unit tests): rmtree does it all
        return False
    try:
        return remove(path, _SHAPE)
    except OSError:  # a mode rmtree knows how to handle
        return False


@contextmanager
def _root_lock(root: str, how: int) -> Iterator[None]:
    fd = os.open(os.path.join(root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def _held(container_dir: str) -> bool:
    """Whether a live process holds the container's lock."""
    try:
        fd = os.open(os.path.join(container_dir, "lock"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def owner_alive(container_dir: str) -> bool:
    """Whether a live process owns the container whose state dir this is (for sweeps
    of what a container made elsewhere, such as its cgroup; for a detached container,
    whether its supervisor is still there)."""
    return _held(container_dir)


def _live(container_dir: str) -> bool:
    """Held by its owner, or recorded (a detached container: kept until removed)."""
    return _held(container_dir) or os.path.exists(os.path.join(container_dir, "state.json"))


def _ensure_root(root: str) -> None:
    os.makedirs(os.path.join(root, "names"), mode=0o711, exist_ok=True)


def sweep(root: str | None = None) -> list[str]:
    """Remove the state of containers whose owner is gone; returns their ids."""
    root = root or default_root()
    _ensure_root(root)
    removed = []
    with _root_lock(root, fcntl.LOCK_EX):
        for entry in os.scandir(root):
            # names/ and networks/ (fastcontain.net) are not containers
            if entry.is_dir(follow_symlinks=False) and entry.name not in ("names", "networks") and not _live(entry.path):
                rmtree(entry.path)
                removed.append(entry.name)
        names = os.path.join(root, "names")
        for entry in os.scandir(names):
            owner = _read_name(entry.path)
            if owner is not None and not os.path.isdir(os.path.join(root, owner)):
                os.unlink(entry.path)
    _swept.add(os.path.realpath(root))
    return removed


def _read_name(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def lookup(name: str, root: str | None = None) -> str | None:
    """The id of the container called `name`, if one exists."""
    return _read_name(os.path.join(root or default_root(), "names", name))


class ContainerState:
    """The owner of a container's state dir and name: holds its lock until `remove()`."""

    def __init__(self, paths: Paths, name: str | None, lock_fd: int) -> None:
        self.paths = paths
        self.name = name
        self._lock_fd = lock_fd

    @property
    def id(self) -> str:
        return self.paths.id

    @property
    def removed(self) -> bool:
        return self._lock_fd < 0

    def remove(self) -> None:
        """Remove the state dir and the name entry, then release the lock. Idempotent."""
        if self._lock_fd < 0:
            return
        try:
            if not _remove_known_shape(self.paths.dir) and os.path.lexists(self.paths.dir):
                rmtree(self.paths.dir)
            self.release_name()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def release_name(self) -> None:
        """Give the name up now (the dir may be removed later, in the background). Idempotent."""
        if self.name is not None:
            entry = os.path.join(self.paths.root, "names", self.name)
            if _read_name(entry) == self.id:
                os.unlink(entry)
            self.name = None

    def release(self) -> None:
        """Give up the lock but keep the state dir (a detached container's record and logs
        outlive its supervisor); `remove_kept` removes it later."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> ContainerState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<ContainerState {self.paths.dir}{' removed' if self.removed else ''}>"


def _claim_name(root: str, name: str, id: str) -> None:
    entry = os.path.join(root, "names", name)
    for _ in range(2):
        try:
            fd = os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            owner = _read_name(entry)
            # A name whose container dir is gone, or unlocked, was left by a crash: take it over.
            if owner and not _live(os.path.join(root, owner)):
                with _root_lock(root, fcntl.LOCK_EX):
                    if _read_name(entry) == owner and not _live(os.path.join(root, owner)):
                        if os.path.isdir(os.path.join(root, owner)):
                            rmtree(os.path.join(root, owner))
                        os.unlink(entry)
                continue
            raise ContainerError(f"the name {name!r} is in use by container {owner or '(being created)'}") from None
        with os.fdopen(fd, "w") as f:
            f.write(id)
        return
    raise ContainerError(f"the name {name!r} could not be claimed")


def _prepare_root(root: str) -> None:
    """Once per root and process: make it, and sweep what a crashed run left there."""
    _ensure_root(root)
    if os.path.realpath(root) not in _swept:
        sweep(root)
    _ready.add(root)


_SUBDIRS = (("upper", 0o755), ("work", 0o700), ("rootfs", 0o755))  # a container's overlay folders


def _locked_dir(paths: Paths, subdirs: tuple[tuple[str, int], ...]) -> tuple[int, OSError | None]:
    """Make the container's dir and take its lock, then make `subdirs` in it: the lock's
    fd, and the error of a subdir that could not be made (the dir is the caller's to
    remove then). Natively, in one call with the GIL released, where it can (a dozen
    syscalls that from Python each hand the GIL to a thread starting another container)."""
    make = _nativefn.get("make_state_dir")
    if make is not None:
        try:
            d = paths.dir
            lock_fd, failed = make(os.path.join(paths.root, "lock"), d, paths.lock, [(f"{d}/{sub}", mode) for sub, mode in subdirs])
        except FileExistsError:
            raise ContainerError(f"a container with id {paths.id} already exists") from None
        return lock_fd, (OSError(failed[0], os.strerror(failed[0]), failed[1]) if failed else None)
    # Under the shared root lock, a sweep cannot see the dir before its lock is held.
    with _root_lock(paths.root, fcntl.LOCK_SH):
        try:
            os.mkdir(paths.dir, 0o700)
        except FileExistsError:
            raise ContainerError(f"a container with id {paths.id} already exists") from None
        lock_fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        for sub, mode in subdirs:
            os.mkdir(os.path.join(paths.dir, sub))
            os.chmod(os.path.join(paths.dir, sub), mode)
    except OSError as e:
        return lock_fd, e
    return lock_fd, None


def create(
    root: str | None = None, *, id: str | None = None, name: str | None = None, oci: bool = False
) -> ContainerState:
    """Make a container's state dir, locked by this process, and claim its name.

    `oci`: the id is the engine's (letters, digits, _ . + -) and the dir has no
    overlay layers (an OCI bundle brings its own root). The first call for a root in
    a process sweeps it first."""
    root = os.path.abspath(root or default_root())
    id = id or new_id()
    if oci and not _OCI_ID.match(id):
        raise ConfigError("id", id, "must be letters, digits, '_', '.', '+' or '-' (not starting with one of the last four)")
    if not oci and not _ID.match(id):
        raise ConfigError("id", id, "must be 16 lowercase hex digits")
    if root not in _ready:
        _prepare_root(root)
    paths = Paths(root, id)
    subdirs = () if oci else _SUBDIRS
    try:
        lock_fd, failed = _locked_dir(paths, subdirs)
    except FileNotFoundError:  # the root was removed since we made it: make it again
        _ready.discard(root)
        _prepare_root(root)
        lock_fd, failed = _locked_dir(paths, subdirs)
    state = ContainerState(paths, None, lock_fd)
    try:
        if failed is not None:
            raise failed
        if name is not None:
            _claim_name(root, name, id)
            state.name = name
    except BaseException:
        state.remove()
        raise
    return state


# -- records: the lifecycle state other processes read -------------------------------

STATUSES = ("created", "running", "paused", "stopped")
"""The OCI runtime spec's states; a record is written once the container is created."""


@contextmanager
def record_locked(paths: Paths) -> Iterator[None]:
    """Exclusive flock on the container's state.lock: one writer (or read-modify-write)
    of its record at a time, across processes."""
    fd = os.open(paths.record_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_record(paths: Paths) -> dict[str, Any] | None:
    """The container's record, or None when it has none (yet, or any more)."""
    try:
        with open(paths.record) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ContainerError(f"the state file {paths.record} is corrupt: {e}") from None
    if not isinstance(data, dict):
        raise ContainerError(f"the state file {paths.record} is corrupt: not a JSON object")
    return data


def write_record(paths: Paths, record: dict[str, Any]) -> None:
    """Replace the record atomically: a reader sees the old one or the new one, whole.
    Callers that read-modify-write hold record_locked()."""
    status = record.get("status")
    if status not in STATUSES:
        raise ValueError(f"bad status {status!r} for a record (one of {', '.join(STATUSES)})")
    tmp = f"{paths.record}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, sort_keys=True)
    os.replace(tmp, paths.record)


def update_record(paths: Paths, **changes: Any) -> dict[str, Any]:
    """Read, change and write back the record under its lock; the new record."""
    with record_locked(paths):
        record = read_record(paths)
        if record is None:
            raise ContainerError(f"container {paths.id} has no state file ({paths.record})")
        record.update(changes)
        write_record(paths, record)
        return record


def recorded(root: str | None = None) -> list[Paths]:
    """Every container of the root that has a record, oldest first."""
    root = os.path.abspath(root or default_root())
    try:
        entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False) and e.name != "names"]
    except FileNotFoundError:
        return []
    found = [(os.stat(e.path).st_mtime_ns, Paths(root, e.name)) for e in entries]
    return [p for _, p in sorted(found, key=lambda t: t[0]) if os.path.exists(p.record)]


def remove_kept(paths: Paths, name: str | None) -> None:
    """Remove a recorded container whose owner is gone: its state dir and its name.
    ContainerError if its owner still holds it."""
    try:
        fd = os.open(paths.lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    if fd >= 0:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ContainerError(f"container {paths.id} is still owned by its supervisor") from None
    ContainerState(paths, name, fd if fd >= 0 else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)).remove()
