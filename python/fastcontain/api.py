"""The public face: `run` (like subprocess.run) and `Container` (create, start, wait, logs, remove).

One container's flow: Config (validated) -> image.resolve -> spec.compile (a
ConfigError here leaves nothing behind) -> state.create (the state dir, locked)
-> _native.spawn -> wait -> teardown. Everything a container owns is pushed on
one ExitStack as it is made, so teardown runs in reverse on success, on any
error and on KeyboardInterrupt: the native child is killed and reaped, then
the cgroup (killing what is left in it) and the state dir and name entry are
removed. For `run`, removing the cgroup and the state dir happens on the bounded
teardown worker (teardown.py), off the caller's path. A Pool's slots bring a state
dir, a cgroup and a network namespace made ahead; `_adopt` makes the container's
stack their owner before anything can fail.
"""

from __future__ import annotations

import locale
import os
import selectors
import signal
import subprocess
import time
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence, overload

from . import cgroups as _cgroups
from . import image as _image
from . import prepared as _prepared
from . import profile as _profile
from . import net as _net
from . import spec as _spec
from . import state as _state
from . import teardown as _teardown
from .config import Config
from .errors import CalledProcessError, ContainerError, SpawnError, TimeoutExpired

if TYPE_CHECKING:
    from . import _native

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

_CHUNK = 65536


class CompletedProcess(subprocess.CompletedProcess[Any]):
    """subprocess.CompletedProcess, plus `oom_killed`: the kernel's OOM killer ended a
    process of the container (read from its memory cgroup, not guessed from -9)."""

    def __init__(self, args: Any, returncode: int, stdout: Any = None, stderr: Any = None, *, oom_killed: bool = False) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.oom_killed = oom_killed

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + (", oom_killed=True)" if self.oom_killed else ")")


def _config(image: str | Config, command: Sequence[str] | str | None, fields: dict[str, Any]) -> Config:
    if isinstance(image, Config):
        if command is not None or fields:
            raise TypeError("pass options either in a Config or as keyword arguments, not both")
        return image
    return Config(image=image, command=command, **fields)


class _Fds:
    """Descriptors opened for one container, closed exactly once."""

    def __init__(self) -> None:
        self._open: set[int] = set()

    def add(self, fd: int) -> int:
        self._open.add(fd)
        return fd

    def close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self.close(fd)


def _launch(
    config: Config,
    id: str,
    stack: ExitStack,
    stdio: Callable[[_state.Paths], Sequence[int]],
    *,
    wait_for_start: bool,
    phases: _profile.Phases | None = None,
    defer_teardown: bool = False,
    state: _state.ContainerState | None = None,
    cgroup: _cgroups.Cgroup | None = None,
    netns_fd: int | None = None,
) -> tuple[_state.ContainerState, _native.Child, dict[str, Any], _cgroups.Cgroup]:
    """Resolve, compile, make the state dir and the cgroup, and spawn; each object made
    here goes on `stack`. On v2 the child is born in its cgroup (CLONE_INTO_CGROUP); v1
    controllers (hybrid and v1 hosts) get its pid while it waits for start, and a
    bridged container's network is wired then (the veth's peer is made in its namespace).
    A `state`, `cgroup` or `netns_fd` made ahead (Pool) is used, and stays the caller's (_adopt)."""
    from . import _native  # imported on first use: the rest of the package works without it
    mark = phases.mark if phases is not None else (lambda _: None)
    hold = stack.enter_context(_image.gc_hold())  # no garbage collection until its layers are noted
    image = _prepared.resolve(config.image, pull=config.pull)
    mark("resolve")
    paths = state.paths if state is not None else _state.Paths(os.path.abspath(_state.default_root()), id)
    spec = _spec.compile(
        config, image, paths, (-1, -1, -1), wait_for_start=wait_for_start, user=_prepared.user(config.user, image)
    )
    mark("compile")
    if state is None:
        state = _state.create(paths.root, id=id, name=config.name)
        _own_state(stack, state, defer_teardown)
    mark("state")
    if cgroup is None:
        cgroup = _cgroups.manager().create(paths.id, config.resources, owner=paths.dir)
        _own_cgroup(stack, cgroup, defer_teardown)
    spec["cgroup_fd"] = cgroup.fd
    # v1 controllers (hybrid, v1 hosts): a child that runs straight to execve joins them
    # itself through their cgroup.procs opened here, so it needs no stop (and can share
    # our memory: the vfork-style spawn); a created Container's pid is written while it waits.
    # (not from a user namespace: its root may not move itself between host cgroups)
    procs = _open_procs(stack, cgroup) if cgroup.needs_attach and not wait_for_start and config.userns is None else []
    self_attach = bool(procs)
    if self_attach:
        spec["cgroup_procs_fds"] = procs
    spec["wait_for_start"] = wait_for_start or (cgroup.needs_attach and not self_attach)
    _image.record_use(image, paths.dir)  # garbage collection keeps its layers while it lives
    network = _net.Attachment.prepare(config, paths, spec["hostname"])
    if network is not None:
        stack.callback(network.release)  # after the child is killed and reaped (below)
        network.amend(spec)
    hold.release()
    spec["stdio"] = list(stdio(paths))
    if netns_fd is not None and "net" in config.namespaces and config.network == "none" and config.userns is None:
        spec["netns_fd"] = netns_fd  # made ahead with lo up: the child joins it
    mark("cgroup")
    child = _native.spawn(spec)
    stack.callback(child.close)
    if phases is not None:
        mark("spawn")
        phases.native(child.timings, "spawn")
    if cgroup.needs_attach and not self_attach:  # v1 controllers: placed before exec, while it waits
        cgroup.attach(child.pid)
        mark("cgroup_attach")
    if network is not None:
        network.wire(child.pid)
        mark("network")
    if spec["wait_for_start"] and not wait_for_start:
        child.start()
    return state, child, spec, cgroup


def _open_procs(stack: ExitStack, cgroup: _cgroups.Cgroup) -> list[int]:
    """The v1 controllers' cgroup.procs of `cgroup`, open for writing (closed with `stack`)."""
    fds = []
    for key, d in cgroup.dirs.items():
        if key != "unified":
            try:
                fd = os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
            except OSError as e:
                raise _cgroups.CgroupError(
                    "opening the container's cgroup.procs failed", path=os.path.join(d, "cgroup.procs"), errno=e.errno or 0
                ) from None
            stack.callback(os.close, fd)
            fds.append(fd)
    return fds


def _own_state(stack: ExitStack, state: _state.ContainerState, defer: bool) -> None:
    if defer:  # the name goes at once, the dir on the teardown worker
        stack.callback(_teardown.defer, state.remove, f"removing {state.paths.dir}")
        stack.callback(state.release_name)
    else:
        stack.callback(state.remove)


def _own_cgroup(stack: ExitStack, cgroup: _cgroups.Cgroup, defer: bool) -> None:
    if defer:  # rmdir (after a kill of what is left) on the teardown worker
        stack.callback(_teardown.defer, cgroup.remove, f"removing the cgroup of {cgroup.id}")
    else:
        stack.callback(cgroup.remove)


def _adopt(
    stack: ExitStack,
    state: _state.ContainerState | None,
    cgroup: _cgroups.Cgroup | None,
    netns_fd: int | None,
    defer: bool,
) -> None:
    """Make `stack` the owner of what a Pool made ahead, before anything can fail: the
    netns descriptor is closed (the child holds its own reference), the cgroup and the
    state removed."""
    if netns_fd is not None:
        stack.callback(os.close, netns_fd)
    if state is not None:
        _own_state(stack, state, defer)
    if cgroup is not None:
        _own_cgroup(stack, cgroup, defer)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _wait_exit(child: _native.Child, deadline: float | None) -> bool:
    """Wait for the child on its pidfd (interruptible by Ctrl-C), then reap it. False on timeout."""
    if child.returncode is not None:
        return True
    # the native wait polls the pidfd with the GIL released and returns to run
    # Python's signal handlers (Ctrl-C) when a signal arrives
    return child.wait(_remaining(deadline)) is not None


def _open_stdio(fds: _Fds, stdin: Any, stdout: Any, stderr: Any) -> tuple[list[int], dict[int, int]]:
    """The container's three fds, and our ends of the pipes by stream number."""
    theirs, ours = [-1, -1, -1], {}
    for i, arg in enumerate((stdin, stdout, stderr)):
        if arg is None:
            continue
        if arg == PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            theirs[i], ours[i] = (fds.add(r), fds.add(w)) if i == 0 else (fds.add(w), fds.add(r))
        elif arg == DEVNULL:
            theirs[i] = fds.add(os.open(os.devnull, (os.O_RDONLY if i == 0 else os.O_WRONLY) | os.O_CLOEXEC))
        elif arg == STDOUT and i == 2:
            theirs[2] = theirs[1] if theirs[1] != -1 else 1
        elif isinstance(arg, int) and arg >= 0:
            theirs[i] = arg
        elif hasattr(arg, "fileno"):
            theirs[i] = arg.fileno()
        else:
            raise ValueError(f"{('stdin', 'stdout', 'stderr')[i]}: expected PIPE, DEVNULL, a fd or a file, not {arg!r}")
    return theirs, ours


def _communicate(
    child: _native.Child, fds: _Fds, ours: dict[int, int], input: bytes | None, deadline: float | None
) -> tuple[dict[int, list[bytes]], bool]:
    """Feed stdin, read stdout/stderr and watch the pidfd until the child exited and the
    pipes are at EOF. Returns the output and whether the deadline passed first."""
    out: dict[int, list[bytes]] = {1: [], 2: []}
    view, offset = memoryview(input or b""), 0
    with selectors.DefaultSelector() as sel:
        for i, fd in ours.items():
            os.set_blocking(fd, False)
            if i == 0 and not view:
                fds.close(fd)
            else:
                sel.register(fd, selectors.EVENT_WRITE if i == 0 else selectors.EVENT_READ, i)
        if child.returncode is None:
            sel.register(child.pidfd, selectors.EVENT_READ, "exit")
        while sel.get_map():
            ready = sel.select(_remaining(deadline))
            if not ready and deadline is not None and time.monotonic() >= deadline:
                return out, True
            for key, _ in ready:
                if key.data == "exit":
                    sel.unregister(key.fd)
                    child.wait()
                elif key.data == 0:
                    try:
                        offset += os.write(key.fd, view[offset : offset + _CHUNK])
                    except BrokenPipeError:
                        offset = len(view)
                    if offset >= len(view):
                        sel.unregister(key.fd)
                        fds.close(key.fd)
                elif not _read_into(out[key.data], key.fd):
                    sel.unregister(key.fd)
                    fds.close(key.fd)
    return out, False


def _read_into(chunks: list[bytes], fd: int) -> bool:
    """Read what is there; False at EOF."""
    while True:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False
        chunks.append(data)


def _decode(data: bytes | None, encoding: str | None, errors: str | None) -> Any:
    if data is None or encoding is None:
        return data
    return data.decode(encoding, errors or "strict").replace("\r\n", "\n").replace("\r", "\n")


def run(
    image: str | Config,
    command: Sequence[str] | str | None = None,
    *,
    stdin: int | IO[Any] | None = None,
    input: bytes | str | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    capture_output: bool = False,
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    timeout: float | None = None,
    check: bool = False,
    **config_fields: Any,
) -> CompletedProcess:
    """Run `command` in a new container of `image` and wait for it, like subprocess.run.

    Options are Config's fields (env, workdir, user, volumes, ...). stdin/stdout/
    stderr take PIPE, DEVNULL, STDOUT (stderr), a fd or a file; None inherits.
    On timeout every process of the container is killed and TimeoutExpired carries
    the output so far; check=True raises CalledProcessError keeping the output.
    A death by signal N gives returncode -N."""
    return _run(
        _config(image, command, config_fields), stdin=stdin, input=input, stdout=stdout, stderr=stderr,
        capture_output=capture_output, text=text, encoding=encoding, errors=errors, timeout=timeout, check=check,
    )


def _run(
    config: Config,
    *,
    stdin: int | IO[Any] | None = None,
    input: bytes | str | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    capture_output: bool = False,
    text: bool = False,
    encoding: str | None = None,
    errors: str | None = None,
    timeout: float | None = None,
    check: bool = False,
    state: _state.ContainerState | None = None,
    cgroup: _cgroups.Cgroup | None = None,
    netns_fd: int | None = None,
) -> CompletedProcess:
    """run() of a validated config; `state`, `cgroup`, `netns_fd`: made ahead (Pool), owned from here."""
    with ExitStack() as owned:
        _adopt(owned, state, cgroup, netns_fd, defer=True)
        return _run_owned(
            config, stdin=stdin, input=input, stdout=stdout, stderr=stderr, capture_output=capture_output,
            text=text, encoding=encoding, errors=errors, timeout=timeout, check=check, state=state,
            cgroup=cgroup, netns_fd=netns_fd,
        )


def _run_owned(
    config: Config,
    *,
    stdin: int | IO[Any] | None,
    input: bytes | str | None,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    capture_output: bool,
    text: bool,
    encoding: str | None,
    errors: str | None,
    timeout: float | None,
    check: bool,
    state: _state.ContainerState | None,
    cgroup: _cgroups.Cgroup | None,
    netns_fd: int | None,
) -> CompletedProcess:
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        stdout = stderr = PIPE
    if text or encoding is not None or errors is not None:
        encoding = encoding or locale.getpreferredencoding(False)
    if isinstance(input, str):
        if encoding is None:
            raise TypeError("input is a str: pass text=True (or encoding=) or give bytes")
        input = input.encode(encoding, errors or "strict")
    deadline = None if timeout is None else time.monotonic() + timeout
    phases = _profile.Phases() if _profile.active() else None

    with ExitStack() as stack:
        fds = _Fds()
        stack.callback(fds.close_all)
        theirs, ours = _open_stdio(fds, stdin, stdout, stderr)
        _, child, spec, cgroup = _launch(
            config, state.id if state is not None else _state.new_id(), stack, lambda _: theirs,
            wait_for_start=False, phases=phases, defer_teardown=True, state=state, cgroup=cgroup, netns_fd=netns_fd,
        )
        for fd in theirs:
            if fd not in ours.values():
                fds.close(fd)  # the child has its copies; EOF needs ours closed
        if ours:
            chunks, timed_out = _communicate(child, fds, ours, input, deadline)
        else:
            chunks, timed_out = {1: [], 2: []}, not _wait_exit(child, deadline)
        if timed_out:
            _kill_all(child, cgroup)
            _wait_exit(child, None)
            for i in (1, 2):
                if i in ours:
                    _read_into(chunks[i], ours[i])
        output = {i: (b"".join(chunks[i]) if i in ours else None) for i in (1, 2)}
        if timed_out:
            raise TimeoutExpired(
                spec["argv"], timeout or 0,
                output=_decode(output[1], encoding, errors), stderr=_decode(output[2], encoding, errors),
            )
        returncode = child.returncode
        oom_killed = bool(cgroup.oom_kills())
        if phases is not None:
            phases.mark("wait")
    if phases is not None:
        phases.mark("teardown")
        _profile.emit(phases.phases)
    assert returncode is not None
    result = CompletedProcess(
        spec["argv"], returncode, _decode(output[1], encoding, errors), _decode(output[2], encoding, errors),
        oom_killed=oom_killed,
    )
    if check and returncode:
        error = CalledProcessError(returncode, spec["argv"], result.stdout, result.stderr)
        error.oom_killed = oom_killed
        raise error
    return result


def _kill_all(child: _native.Child, cgroup: _cgroups.Cgroup) -> None:
    """SIGKILL every process of the container, those it forked included."""
    try:
        cgroup.kill()
    finally:
        child.send_signal(signal.SIGKILL)


class _Create:
    """`Container.create(image, command, **options)` makes and creates a container;
    `container.create()` creates one constructed before."""

    @overload
    def __get__(self, obj: None, owner: type[Container]) -> Callable[..., Container]: ...
    @overload
    def __get__(self, obj: Container, owner: type[Container] | None = None) -> Callable[[], Container]: ...
    def __get__(self, obj: Container | None, owner: type[Container] | None = None) -> Callable[..., Container]:
        if obj is not None:
            return obj._create
        cls = owner or Container
        return lambda image, command=None, **fields: cls(image, command, **fields)._create()


class Container:
    """A container's lifecycle: new -> created -> running -> exited -> removed.

    Constructing one checks its options and creates nothing. `create()` makes its
    state and spawns its process, stopped before exec; `start()` (creating first if
    needed) lets it run. Output goes to log files read by `logs()`. As a context
    manager, exit kills what still runs and removes everything."""

    create = _Create()

    def __init__(self, image: str | Config, command: Sequence[str] | str | None = None, **config_fields: Any) -> None:
        self.config = _config(image, command, config_fields)
        self.id = _state.new_id()
        self._status = "new"
        self._stack = ExitStack()
        self._state: _state.ContainerState | None = None
        self._child: _native.Child | None = None
        self._cgroup: _cgroups.Cgroup | None = None
        self._returncode: int | None = None
        self._oom_killed = False
        self.argv: list[str] = []
        # made ahead by a Pool, adopted by create()
        self._prestate: _state.ContainerState | None = None
        self._precgroup: _cgroups.Cgroup | None = None
        self._prenetns: int | None = None

    def _create(self) -> Container:
        if self._status != "new":
            raise ContainerError(f"container {self.id} is {self.status}: it was created already")
        with ExitStack() as stack:
            netns_fd, self._prenetns = self._prenetns, None
            _adopt(stack, self._prestate, self._precgroup, netns_fd, defer=False)
            fds = _Fds()
            stack.callback(fds.close_all)

            def stdio(paths: _state.Paths) -> list[int]:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                return [
                    fds.add(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)),
                    fds.add(os.open(paths.stdout_log, flags, 0o600)),
                    fds.add(os.open(paths.stderr_log, flags, 0o600)),
                ]

            self._state, self._child, spec, self._cgroup = _launch(
                self.config, self.id, stack, stdio, wait_for_start=True, state=self._prestate,
                cgroup=self._precgroup, netns_fd=netns_fd,
            )
            fds.close_all()
            self.argv = spec["argv"]
            self._stack = stack.pop_all()
        self._status = "created"
        return self

    @property
    def name(self) -> str | None:
        return self.config.name

    @property
    def pid(self) -> int | None:
        """The host pid of the container's first process, once created."""
        return self._child.pid if self._child is not None and self._status != "removed" else None

    @property
    def status(self) -> str:
        """'new', 'created', 'running', 'exited' or 'removed'."""
        if self._status in ("created", "running") and self._child is not None and self._child.poll() is not None:
            self._status = "exited"
        return self._status

    @property
    def returncode(self) -> int | None:
        """The exit status, -N for death by signal N; None while it runs."""
        if self._child is not None and self._status != "removed":
            return self._child.returncode
        return self._returncode

    def start(self) -> Container:
        if self._status == "new":
            self._create()
        if self._status != "created" or self._child is None:
            raise ContainerError(f"container {self.id} is {self.status}: only a created container can start")
        try:
            self._child.start()
        except SpawnError:
            self._status = "exited"
            raise
        self._status = "running"
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container to exit; its returncode. TimeoutExpired if `timeout` passes first."""
        status = self.status
        if status == "removed" and self._returncode is not None:
            return self._returncode
        if status not in ("running", "exited") or self._child is None:
            raise ContainerError(f"container {self.id} is {status}: wait needs a started container")
        if not _wait_exit(self._child, None if timeout is None else time.monotonic() + timeout):
            raise TimeoutExpired(self.argv, timeout or 0, killed=False)
        self._status = "exited"
        returncode = self._child.returncode
        assert returncode is not None
        return returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the container's first process; SIGKILL kills every process in
        the container's cgroup, so none it forked escapes."""
        status = self.status
        if status not in ("created", "running") or self._child is None:
            raise ContainerError(f"container {self.id} is {status}: nothing to kill")
        if sig == signal.SIGKILL and self._cgroup is not None:
            _kill_all(self._child, self._cgroup)
        else:
            self._child.send_signal(sig)

    @property
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of the container (from its
        memory cgroup; always False on hybrid/v1 hosts without a memory limit)."""
        if self._cgroup is not None and self._status != "removed":
            return bool(self._cgroup.oom_kills())
        return self._oom_killed

    def stats(self) -> dict[str, int | None]:
        """Resource use now, read at once from the cgroup: cpu_usage_us, memory_current,
        memory_peak, pids_current, oom_kills, io_read_bytes, io_write_bytes (None where
        the host's cgroup layout cannot tell)."""
        if self._cgroup is None or self._status == "removed":
            raise ContainerError(f"container {self.id} is {self.status}: it has no cgroup to read")
        return self._cgroup.stats()

    def remove(self, force: bool = False) -> None:
        """Remove the container's state. A running container needs force=True (it is killed)."""
        status = self.status
        if status == "running" and not force:
            raise ContainerError(f"container {self.id} is running: kill it first or remove(force=True)")
        if status == "removed":
            return
        if self._cgroup is not None:
            self._oom_killed = bool(self._cgroup.oom_kills())
        try:
            self._stack.close()  # kill and reap the child, remove its cgroup, then the state dir and name
        finally:
            if self._child is not None:
                self._returncode = self._child.returncode
            self._status = "removed"

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        """The container's output so far: stdout, then stderr."""
        if self._state is None or self._status == "removed":
            raise ContainerError(f"container {self.id} is {self.status}: it has no logs")
        out = b""
        for wanted, path in ((stdout, self._state.paths.stdout_log), (stderr, self._state.paths.stderr_log)):
            if wanted:
                with open(path, "rb") as f:
                    out += f.read()
        return out

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove(force=True)

    def __repr__(self) -> str:
        name = f" name={self.name!r}" if self.name else ""
        return f"<Container {self.id}{name} image={self.config.image!r} {self.status}>"


def create(image: str | Config, command: Sequence[str] | str | None = None, **config_fields: Any) -> Container:
    """A created container (its process waits for `start()`), like docker create."""
    return Container(image, command, **config_fields)._create()
