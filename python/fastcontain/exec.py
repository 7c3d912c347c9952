"""exec: run another process in a running container (docker-py's exec_run).

The process joins the container's namespaces through its init's pidfd
(setns with every flag at once), is then forked into its pid namespace (setns
on a pid namespace only applies to children, as runc does) and execs with the
container's own security settings: the exec spec is the container's compiled
spec (capabilities, no_new_privileges, seccomp, rlimits, CPUs) with its
process half replaced (command, env, working directory, user, stdio, tty). The
filesystem half is not used: joining the mount namespace gives the process
the container's root and working directory. The exec'd process is our child
(the forking process uses CLONE_PARENT), so its exit code is ours to read,
streamed or not.

The process is born in the container's cgroup (CLONE_INTO_CGROUP through the
cgroup's v2 directory fd); where the container also has v1 controllers
(limits on a hybrid host), the first process writes itself into their
cgroup.procs (opened here) before it forks the one that execs, which inherits
them: no instant outside the container's limits.
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Mapping, NamedTuple, Sequence

from . import stdio as _stdio
from .errors import ConfigError, ContainerError, TimeoutExpired
from .limits import Limits

if TYPE_CHECKING:
    from . import _native
    from . import spec as _spec
    from .api import Container


class ExecResult(NamedTuple):
    """docker-py's ExecResult: the exit code (-N for death by signal N) and the output
    (stdout and stderr together in the order written; a (stdout, stderr) pair with demux)."""

    exit_code: int
    output: Any


class ExecStream:
    """The streamed form of exec_run: iterate for output chunks as they arrive (bytes, or
    ("stdout"|"stderr", bytes) pairs with demux); once exhausted, `exit_code` holds the
    exit code (docker-py loses it here; `wait()` returns it too). `close()` kills the
    process if it still runs."""

    def __init__(self, child: _native.Child, ours: dict[str, int], stack: ExitStack, limits: Limits,
                 argv: list[str], demux: bool) -> None:
        self.pid = child.pid
        self._child = child
        self._ours = ours
        self._stack = stack
        self._limits = limits
        self._argv = argv
        self._demux = demux
        self.exit_code: int | None = None
        self._iter = self._run()

    def __iter__(self) -> Iterator[Any]:
        return self._iter

    def __next__(self) -> Any:
        return next(self._iter)

    def _run(self) -> Generator[Any, None, None]:
        try:
            with selectors.DefaultSelector() as sel:
                for name, fd in self._ours.items():
                    os.set_blocking(fd, False)
                    sel.register(fd, selectors.EVENT_READ, name)
                while sel.get_map():
                    hit = self._limits.check()
                    if hit:
                        self._child.send_signal(signal.SIGKILL)
                        self._child.wait()
                        raise TimeoutExpired(self._argv, self._limits.timeout or 0, limit=hit)
                    for key, _ in sel.select(self._limits.interval()):
                        data = _stdio.read_chunk(key.fd)
                        if data is None:
                            continue
                        if not data:
                            sel.unregister(key.fd)
                            continue
                        yield (key.data, data) if self._demux else data
            self._finish()
        finally:
            self._stack.close()

    def _finish(self) -> None:
        hit = None
        with selectors.DefaultSelector() as sel:
            sel.register(self._child.pidfd, selectors.EVENT_READ)
            while self._child.returncode is None and not hit:
                hit = self._limits.check()
                if sel.select(self._limits.interval()):
                    self._child.wait()
        if hit:
            self._child.send_signal(signal.SIGKILL)
            self._child.wait()
            raise TimeoutExpired(self._argv, self._limits.timeout or 0, limit=hit)
        self.exit_code = self._child.returncode

    def wait(self) -> int:
        """Read (and drop) what output is left; the exit code."""
        for _ in self._iter:
            pass
        if self.exit_code is None:
            self._finish()
        assert self.exit_code is not None
        return self.exit_code

    def close(self) -> None:
        self._iter.close()
        self._stack.close()


@dataclass
class Target:
    """What an exec joins: a running container's init (its pidfd), its cgroup, the process
    half of its spec (env, cwd, credentials, capabilities, seccomp, rlimits, namespaces)
    and its image (for user names). Made from a Container in this process (exec_run), or
    from a detached container's record in any process (exec_detached.target)."""

    id: str
    pidfd: int
    base: Mapping[str, Any]
    image: str | None
    cgroup: Any = None  # a cgroups.Cgroup (or an OciCgroup): fd for CLONE_INTO_CGROUP, v1 attach
    track: Callable[[_native.Child], None] | None = None  # the owner reaps it at removal


# what only the init's own set-up used: descriptors it was given, an interface it configured
_NOT_FOR_EXEC = ("netns_fd", "cgroup_procs_fds", "interface")


def exec_spec(target: Target, argv: list[str], *, user: str | None, env: Sequence[str],
              workdir: str | None, tty: bool, stdio: Sequence[int]) -> dict[str, Any]:
    """The container's spec with its process half replaced, joining its init."""
    base = target.base
    spec = {k: v for k, v in base.items() if k not in _NOT_FOR_EXEC}
    if base.get("netns_fd") is not None and "net" not in base["namespaces"]:
        # the init joined a network namespace by fd (network="container:NAME", a Pool's): so does the exec
        spec["namespaces"] = list(base["namespaces"]) + ["net"]
    if user is not None:
        if target.image is None:
            who = _numeric_user(user)
        else:
            from . import prepared
            from . import spec as _spec  # (here: it imports the image modules, ~20 ms of a CLI call)

            who = _spec.resolve_user(user, prepared.resolve(target.image))
        spec.update(uid=who.uid, gid=who.gid, groups=list(who.groups))
    cgroup_fd = getattr(target.cgroup, "fd", None)
    spec.update(
        argv=argv,
        env=_merge_env(base["env"], env),
        cwd=workdir or base["cwd"],
        stdio=list(stdio),
        tty=tty,
        init=False,
        wait_for_start=False,
        join=target.pidfd,
        # born in the container's cgroup (CLONE_INTO_CGROUP) where it has a v2 directory
        cgroup_fd=cgroup_fd,
    )
    return spec


def _merge_env(*layers: Sequence[str]) -> list[str]:
    """spec.merge_env's rule (a later KEY replaces an earlier one), without its imports."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            merged[item.partition("=")[0]] = item
    return list(merged.values())


def _numeric_user(user: str) -> _spec.User:
    from . import spec as _spec

    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ConfigError("user", user, "expected UID[:GID] as numbers (this container has no image to look names up in)")
    return _spec.User(int(uid), int(gid or 0), (), "/")


def spawn(target: Target, argv: list[str], *, user: str | None, env: Sequence[str], workdir: str | None,
          tty: bool, stdio: Sequence[int]) -> _native.Child:
    """Spawn `argv` into the target: our child, born in its v2 cgroup (CLONE_INTO_CGROUP),
    in its v1 controllers before it forks into the pid namespace (the first process
    writes itself to their cgroup.procs, opened here). The Child is the caller's to
    wait for and close."""
    from . import _native

    spec = exec_spec(target, argv, user=user, env=env, workdir=workdir, tty=tty, stdio=stdio)
    with ExitStack() as stack:
        dirs = getattr(target.cgroup, "dirs", None) or {}
        procs = []
        for key, d in dirs.items():
            if key != "unified":
                path = os.path.join(d, "cgroup.procs")
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise ContainerError(f"container {target.id} is not running (its cgroup {d} is gone)") from None
                stack.callback(os.close, fd)
                procs.append(fd)
        spec["cgroup_procs_fds"] = procs
        child = _native.spawn(spec)
    if target.track is not None:
        target.track(child)
    return child


def check_command(cmd: str | Sequence[str], workdir: str | None) -> list[str]:
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise ConfigError("cmd", cmd, "expected a command: a non-empty list of strings or a shell-like string")
    if workdir is not None and not workdir.startswith("/"):
        raise ConfigError("workdir", workdir, "must be an absolute path inside the container")
    return argv


def of_container(container: Container) -> Target:
    """The Target of a Container of this process; ContainerError unless it runs."""
    status = container.status
    if status != "running" or container._child is None:
        hint = ": start it first" if status == "created" else ""
        raise ContainerError(f"container {container.id} is {status}: exec needs a running container{hint}")
    return Target(container.id, container._child.pidfd, container._spec, container.config.image,
                  container._cgroup, container._track_exec)


def exec_run(
    container: Container,
    cmd: str | Sequence[str],
    **options: Any,
) -> ExecResult | ExecStream:
    """See Container.exec_run."""
    return run(of_container(container), cmd, **options)


class Started(NamedTuple):
    """An exec'd process and our ends of its stdio ("stdout", and "stderr" with demux;
    a terminal's master is "stdout"); `stack` closes them (and kills it if still running)."""

    child: _native.Child
    ours: dict[str, int]
    master: int
    argv: list[str]
    stack: ExitStack


def start(target: Target, cmd: str | Sequence[str], *, user: str | None = None,
          env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None, tty: bool = False,
          stdin: bytes | str | None = None, demux: bool = False) -> Started:
    """Spawn `cmd` into the target with pipes (or a terminal) for its output; `stdin` is
    written whole, then closed (on a terminal: followed by its EOF character), before
    this returns: meant for small inputs. Shared by exec_run and AsyncContainer.exec_run."""
    from .api import _Fds
    from .config import _normalize_env

    argv = check_command(cmd, workdir)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    with ExitStack() as stack:
        fds = _Fds()
        stack.callback(fds.close_all)

        def pipe() -> tuple[int, int]:
            r, w = os.pipe2(os.O_CLOEXEC)
            return fds.add(r), fds.add(w)

        in_r, in_w = pipe() if stdin is not None else (fds.add(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)), -1)
        master = -1
        if tty:
            master, slave = _stdio.open_pty()
            fds.add(master)
            fds.add(slave)
            theirs, ours = [slave, slave, slave], {"stdout": master}
        elif demux:
            out_r, out_w = pipe()
            err_r, err_w = pipe()
            theirs, ours = [in_r, out_w, err_w], {"stdout": out_r, "stderr": err_r}
        else:
            out_r, out_w = pipe()  # one pipe for both: their order is kept exactly
            theirs, ours = [in_r, out_w, out_w], {"stdout": out_r}
        child = spawn(target, argv, user=user, env=_normalize_env(env), workdir=workdir, tty=tty, stdio=theirs)
        stack.callback(child.close)
        for fd in set(theirs):
            fds.close(fd)  # the process has its copies: EOF needs ours closed
        if stdin is not None:
            _stdio._write_all(master if tty else in_w, stdin + (_stdio.EOF_CHAR if tty else b""))
            if not tty:
                fds.close(in_w)
        return Started(child, ours, master, argv, stack.pop_all())


def run(
    target: Target,
    cmd: str | Sequence[str],
    *,
    user: str | None = None,
    env: Mapping[str, str] | Sequence[str] | None = None,
    workdir: str | None = None,
    tty: bool = False,
    stdin: bytes | str | None = None,
    stream: bool = False,
    demux: bool = False,
    timeout: float | None = None,
    stack: ExitStack | None = None,
) -> ExecResult | ExecStream:
    """exec_run on a Target; `stack` holds what the target needs open (closed with the
    stream, or before returning)."""
    with ExitStack() as outer:
        if stack is not None:
            outer.push(stack)
        limits = Limits(timeout)
        started = start(target, cmd, user=user, env=env, workdir=workdir, tty=tty, stdin=stdin, demux=demux)
        outer.push(started.stack)
        child, argv = started.child, started.argv
        limits.watch(child.pid)
        if stream:
            return ExecStream(child, started.ours, outer.pop_all(), limits, argv, demux)
        if tty:
            captured: list[bytes] = []
            hit = _stdio.relay_terminal(child.pidfd, lambda: child.wait() is not None, started.master,
                                        limits.check, limits.interval, capture=captured)
            if hit:
                child.send_signal(signal.SIGKILL)
            child.wait()
            chunks = {"stdout": captured, "stderr": []}
        else:
            s = ExecStream(child, started.ours, outer.pop_all(), limits, argv, True)
            chunks = {"stdout": [], "stderr": []}
            for name, data in s:
                chunks[name].append(data)
            hit = None
        if hit:
            raise TimeoutExpired(argv, timeout or 0, output=b"".join(chunks["stdout"]), limit=hit)
        rc = child.returncode
        assert rc is not None
    out, err = b"".join(chunks["stdout"]), b"".join(chunks["stderr"])
    return ExecResult(rc, (out, None if tty else err) if demux else out)
