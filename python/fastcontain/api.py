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
import resource
import selectors
import signal
import subprocess
import time
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence, overload

from . import cgroups as _cgroups
from . import image as _image
from . import prepared as _prepared
from . import rootless as _rootless
from . import profile as _profile
from . import net as _net
from . import netns as _netns
from . import state as _state
from . import teardown as _teardown
from . import stdio as _stdio
from .config import Config
from .errors import CalledProcessError, ContainerError, SpawnError, TimeoutExpired
from .limits import Limits
from .result import Result

if TYPE_CHECKING:
    from . import _native

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

_CHUNK = 65536


CompletedProcess = Result
"""run()'s result: subprocess.CompletedProcess plus oom_killed, timed_out, times and peak memory."""


def _config(image: str | Config, command: Sequence[str] | str | None, fields: dict[str, Any]) -> Config:
    if isinstance(image, Config):
        if command is not None or fields:
            raise TypeError("pass options either in a Config or as keyword arguments, not both")
        return image
    return _prepared.config(image, command, fields)  # made once for the same pure options


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
    network: _net.Attachment | None = None,
    netns_reuse: bool = True,
) -> tuple[_state.ContainerState, _native.Child, dict[str, Any], _cgroups.Cgroup]:
    """Resolve, compile, make the state dir and the cgroup, and spawn; each object made
    here goes on `stack`. On v2 the child is born in its cgroup (CLONE_INTO_CGROUP); v1
    controllers (hybrid and v1 hosts) get its pid while it waits for start, and a
    bridged container's network is wired then (the veth's peer is made in its namespace).
    A `state`, `cgroup`, `netns_fd` or `network` made ahead (Pool) is used, and stays the
    caller's (_adopt); a network wired ahead is the netns_fd's (eth0 ready: no wait for it).
    network="none": a network namespace from the reserve is joined, and given back after
    the container when safe (netns.Keeper; not for detached ones: `netns_reuse=False`)."""
    from . import _native  # imported on first use: the rest of the package works without it
    mark = phases.mark if phases is not None else (lambda _: None)
    hold = stack.enter_context(_image.gc_hold())  # no garbage collection until its layers are noted
    image = _prepared.resolve(config.image, pull=config.pull)
    mark("resolve")
    paths = state.paths if state is not None else _state.Paths(os.path.abspath(_state.default_root()), id)
    spec = _prepared.compile(config, image, paths, (-1, -1, -1), wait_for_start=wait_for_start)
    mark("compile")
    if state is None:
        state = _state.create(paths.root, id=id, name=config.name)
        _own_state(stack, state, defer_teardown)
    mark("state")
    if cgroup is None and _rootless.active():
        cgroup = _rootless.cgroup(paths.id, config.resources)  # none: limits are refused, naming the path
    elif cgroup is None:
        cgroup = _cgroups.manager().create(paths.id, config.resources, owner=paths.dir)
        _own_cgroup(stack, cgroup, defer_teardown)
    spec["cgroup_fd"] = cgroup.fd
    # v1 controllers (hybrid, v1 hosts): a child that runs straight to execve joins them
    # itself through their `tasks` files opened here, so it needs no stop (and can share
    # our memory: the vfork-style spawn); a created Container's pid is written while it waits.
    # (not from a user namespace: its root may not move itself between host cgroups)
    procs = _open_procs(stack, cgroup) if cgroup.needs_attach and not wait_for_start and config.userns is None else []
    self_attach = bool(procs)
    if self_attach:
        spec["cgroup_procs_fds"] = procs
    spec["wait_for_start"] = wait_for_start or (cgroup.needs_attach and not self_attach)
    _image.record_use(image, paths.dir)  # garbage collection keeps its layers while it lives
    if network is None:
        network = _net.Attachment.prepare(config, paths, spec["hostname"])
        if network is not None:
            stack.callback(network.release)  # after the child is killed and reaped (below)
    if network is not None:
        network.amend(spec)
    hold.release()
    spec["stdio"] = list(stdio(paths))
    if netns_fd is not None and "net" in config.namespaces and config.userns is None and (
        config.network == "none" or (network is not None and network.ahead)
    ):
        spec["netns_fd"] = netns_fd  # made ahead with lo up (and eth0 wired, bridged): the child joins it
    keeper = _netns.Keeper(config, spec, netns_reuse)
    stack.callback(keeper.release)  # after the child is killed and reaped (below)
    mark("cgroup")
    spec["hold_mount_ns"] = defer_teardown  # its teardown off our path (spawn.rs, mount_ns)
    child = _native.spawn(spec)
    stack.callback(child.close)
    keeper.hold(child)
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
    """The v1 controllers' `tasks` files of `cgroup`, open for writing (closed with `stack`).

    `tasks`, not cgroup.procs: the child is one thread, and a "0" written to `tasks` moves
    the writing thread alone, which the kernel does without the global
    cgroup_threadgroup_rwsem (cgroup_procs_write_start). Taking that rwsem for writing
    waits for an RCU grace period whenever nobody took it in the last ~20 ms (rcu_sync
    gone idle): 6-27 ms here for the first attach after idle, ~0.03 ms through `tasks`."""
    fds = []
    for key, d in cgroup.dirs.items():
        if key != "unified":
            path = os.path.join(d, "tasks")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            except OSError as e:
                raise _cgroups.CgroupError(
                    "opening the container's cgroup tasks file failed", path=path, errno=e.errno or 0
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
    network: _net.Attachment | None = None,
) -> None:
    """Make `stack` the owner of what a Pool made ahead, before anything can fail: the
    netns descriptor is closed (the child holds its own reference), the cgroup and the
    state removed, the network's lease released (on the teardown worker, unless it
    published ports: a port is free again when run() returns)."""
    if netns_fd is not None:
        stack.callback(os.close, netns_fd)
    if network is not None:
        if defer and not network.ports:
            stack.callback(_teardown.defer, network.release, f"releasing the address {network.address}")
        else:
            stack.callback(network.release)
    if state is not None:
        _own_state(stack, state, defer)
    if cgroup is not None:
        _own_cgroup(stack, cgroup, defer)


def _wait_exit(child: _native.Child, limits: Limits | None = None) -> str | None:
    """Wait for the child (interruptible by Ctrl-C), then reap it. None once reaped; the
    name of the limit ("wall", "cpu") that passed first otherwise. The native wait polls
    the pidfd with the GIL released and returns to run Python's signal handlers when a
    signal arrives; with limits it wakes at each limit's next check."""
    if child.returncode is not None:
        return None
    if not limits:
        child.wait()
        return None
    while True:
        hit = limits.check()
        if hit:
            return hit
        if child.wait(limits.interval()) is not None:
            return None


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
    child: _native.Child, fds: _Fds, ours: dict[int, int], input: bytes | None, limits: Limits
) -> tuple[dict[int, list[bytes]], str | None]:
    """Feed stdin, read stdout/stderr and watch the pidfd until the child exited and the
    pipes are at EOF. Returns the output and the limit that passed first, if one did."""
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
            hit = limits.check()
            if hit:
                return out, hit
            for key, _ in sel.select(limits.interval()):
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
    return out, None


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
    cpu_time: float | None = None,
    check: bool = False,
    **config_fields: Any,
) -> Result:
    """Run `command` in a new container of `image` and wait for it, like subprocess.run.

    Options are Config's fields (env, workdir, user, volumes, init, tty, ...).
    stdin/stdout/stderr take PIPE, DEVNULL, STDOUT (stderr), a fd or a file; None
    inherits. With tty=True the container's stdio is a new terminal: its output
    (stdout and stderr together) is captured into stdout with PIPE, else copied to
    `stdout` (default: ours); `input` or the `stdin` fd is typed into it.
    `timeout` (wall-clock seconds) and `cpu_time` (CPU seconds of the whole
    container) each kill every process of the container when passed, and raise
    TimeoutExpired with the output so far, `limit` ("wall" or "cpu") and the
    `result` (a Result whose timed_out says which). check=True raises
    CalledProcessError keeping the output. Returns a Result: a CompletedProcess
    (returncode -N for death by signal N) with exit_code, signal, timed_out,
    oom_killed, wall_time, cpu_time and peak_memory."""
    return _run(
        _config(image, command, config_fields), stdin=stdin, input=input, stdout=stdout, stderr=stderr,
        capture_output=capture_output, text=text, encoding=encoding, errors=errors, timeout=timeout,
        cpu_time=cpu_time, check=check,
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
    cpu_time: float | None = None,
    check: bool = False,
    state: _state.ContainerState | None = None,
    cgroup: _cgroups.Cgroup | None = None,
    netns_fd: int | None = None,
    network: _net.Attachment | None = None,
) -> Result:
    """run() of a validated config; `state`, `cgroup`, `netns_fd`, `network`: made ahead (Pool), owned from here.
    What it leaves for the teardown worker goes there as one item (teardown.batch)."""
    with _teardown.batch(), ExitStack() as owned:
        _adopt(owned, state, cgroup, netns_fd, defer=True, network=network)
        return _run_owned(
            config, stdin=stdin, input=input, stdout=stdout, stderr=stderr, capture_output=capture_output,
            text=text, encoding=encoding, errors=errors, timeout=timeout, cpu_time=cpu_time, check=check, state=state,
            cgroup=cgroup, netns_fd=netns_fd, network=network,
        )


def _io_args(
    stdin: Any, input: bytes | str | None, stdout: Any, stderr: Any,
    capture_output: bool, text: bool, encoding: str | None, errors: str | None,
) -> tuple[Any, bytes | None, Any, Any, str | None]:
    """subprocess.run's rules for its I/O arguments (shared by run and arun): input
    implies stdin=PIPE, capture_output both pipes, text an encoding; a str input is encoded."""
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
    return stdin, input, stdout, stderr, encoding


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
    cpu_time: float | None,
    check: bool,
    state: _state.ContainerState | None,
    cgroup: _cgroups.Cgroup | None,
    netns_fd: int | None,
    network: _net.Attachment | None = None,
) -> Result:
    stdin, input, stdout, stderr, encoding = _io_args(stdin, input, stdout, stderr, capture_output, text, encoding, errors)
    limits = Limits(timeout, cpu_time)
    phases = _profile.Phases() if _profile.active() else None

    with ExitStack() as stack:
        fds = _Fds()
        stack.callback(fds.close_all)
        if config.tty:
            theirs, ours, master = _open_tty(fds, stdin, stdout, stderr)
        else:
            theirs, ours = _open_stdio(fds, stdin, stdout, stderr)
        _, child, spec, cgroup = _launch(
            config, state.id if state is not None else _state.new_id(), stack, lambda _: theirs,
            wait_for_start=False, phases=phases, defer_teardown=True, state=state, cgroup=cgroup, netns_fd=netns_fd,
            network=network,
        )
        started = time.monotonic()
        own_peak = _own_peak_rss()  # after the clone: at least what the child started with
        limits.watch(child.pid, _cgroup_cpu_seconds(cgroup))
        for fd in theirs:
            if fd not in ours.values():
                fds.close(fd)  # the child has its copies; EOF needs ours closed
        if config.tty:
            captured: list[bytes] = []
            hit = _stdio.relay_terminal(
                child.pidfd, lambda: child.wait() is not None, master, limits.check, limits.interval,
                input=input if stdin == PIPE else None,
                in_fd=ours.get(0),
                out_fd=ours[1] if ours[1] >= 0 else None,
                capture=captured if stdout == PIPE else None,
                size_from=_terminal_of(ours.get(1)),
            )
            chunks = {1: captured, 2: []}
            ours = {1: -1, 2: -1} if stdout == PIPE else {}
        elif ours:
            chunks, hit = _communicate(child, fds, ours, input, limits)
        else:
            chunks, hit = {1: [], 2: []}, _wait_exit(child, limits)
        if hit:
            _kill_all(child, cgroup)
            _wait_exit(child)
            for i in (1, 2):
                if i in ours and ours[i] >= 0:
                    _read_into(chunks[i], ours[i])
        if child.returncode is None:
            _wait_exit(child)
        wall = time.monotonic() - started
        output = {i: (b"".join(chunks[i]) if i in ours else None) for i in (1, 2)}
        returncode = child.returncode
        usage = _trusted_usage(child.usage, own_peak)
        oom_killed = bool(cgroup.oom_kills())
        peak = cgroup.memory_peak()
        if phases is not None:
            phases.mark("wait")
    if phases is not None:
        phases.mark("teardown")
        _profile.emit(phases.phases)
    assert returncode is not None
    result = Result(
        spec["argv"], returncode, _decode(output[1], encoding, errors), _decode(output[2], encoding, errors),
        timed_out=hit, wall_time=wall, usage=usage, cpu_seen=limits.sample(), oom_killed=oom_killed,
        peak_memory=peak,
    )
    if hit:
        raise TimeoutExpired(
            spec["argv"], (timeout if hit == "wall" else cpu_time) or 0,
            output=result.stdout, stderr=result.stderr, limit=hit, result=result,
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


def _cgroup_cpu_seconds(cgroup: _cgroups.Cgroup) -> Callable[[], float] | None:
    """A sampler of the cgroup's CPU time (cgroup v2 cpu.stat, which every v2 cgroup has:
    it counts processes nobody reaped too), or None where there is no v2 directory."""
    uni = cgroup.dirs.get("unified")
    if not uni:
        return None
    path = os.path.join(uni, "cpu.stat")

    def sample() -> float:
        with open(path) as f:
            for line in f:
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        return 0.0

    return sample


def _own_peak_rss() -> int:
    """This process's peak resident set, bytes (see _trusted_usage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _trusted_usage(usage: dict[str, float] | None, own_peak: int) -> dict[str, float] | None:
    """waitid's rusage, without a peak memory that may be ours. The kernel keeps, in a
    process's ru_maxrss, the peak of the memory it had before its execve: a child cloned
    from this process starts with our address space (shared with vfork, copied with fork),
    so its ru_maxrss is at least our own peak at the clone. A value above that peak is the
    container's own; one at or below it cannot be told apart from ours and is dropped."""
    if usage is None or usage["maxrss"] > own_peak:
        return usage
    return {k: v for k, v in usage.items() if k != "maxrss"}


def _terminal_of(fd: int | None) -> int | None:
    """fd if it is a terminal whose size a container's terminal should follow."""
    return fd if fd is not None and fd >= 0 and os.isatty(fd) else None


def _open_tty(fds: _Fds, stdin: Any, stdout: Any, stderr: Any) -> tuple[list[int], dict[int, int], int]:
    """A terminal for run(tty=True): the slave as the container's 0, 1, 2; ours: 0 the fd
    typed in (when stdin is a fd or file), 1 where output is copied (-1: captured)."""
    out_fd = 1 if stdout is None else -1 if stdout == PIPE else None
    if out_fd is None:
        out_fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if stdout == DEVNULL else _fileno(stdout, "stdout")
        if stdout == DEVNULL:
            fds.add(out_fd)
    if stderr not in (None, PIPE, STDOUT, DEVNULL):
        raise ValueError("with tty=True stderr goes to the terminal with stdout: leave stderr unset")
    in_fd = None if stdin in (None, PIPE, DEVNULL) else _fileno(stdin, "stdin")
    size = _stdio.get_winsize(out_fd) if out_fd >= 0 else None
    master, slave = _stdio.open_pty(size)
    fds.add(master)
    fds.add(slave)
    ours = {1: out_fd}
    if in_fd is not None:
        ours[0] = in_fd
    return [slave, slave, slave], ours, master


def _fileno(arg: Any, what: str) -> int:
    if isinstance(arg, int) and arg >= 0:
        return arg
    if hasattr(arg, "fileno"):
        return int(arg.fileno())
    raise ValueError(f"{what}: expected PIPE, DEVNULL, a fd or a file, not {arg!r}")


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

    def __init__(
        self, image: str | Config, command: Sequence[str] | str | None = None, *, stdin: bool = False,
        **config_fields: Any,
    ) -> None:
        self.config = _config(image, command, config_fields)
        if not isinstance(stdin, bool):
            raise TypeError(f"stdin is True (a pipe to write to: Container.stdin) or False, not {stdin!r}")
        self._stdin_open = stdin
        self.stdin: IO[bytes] | None = None
        """With stdin=True, the container's stdin (with tty=True, what is typed into its terminal)."""
        self._pump: _stdio.LogPump | None = None
        self._master: int | None = None
        self._spec: dict[str, Any] = {}
        self._started_at: float | None = None
        self._own_peak = 0
        self._execs: list[_native.Child] = []
        self._ended_at: float | None = None
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
        self._prenetwork: _net.Attachment | None = None

    def _create(self) -> Container:
        if self._status != "new":
            raise ContainerError(f"container {self.id} is {self.status}: it was created already")
        with ExitStack() as stack:
            netns_fd, self._prenetns = self._prenetns, None
            network, self._prenetwork = self._prenetwork, None
            _adopt(stack, self._prestate, self._precgroup, netns_fd, defer=False, network=network)
            fds = _Fds()
            stack.callback(fds.close_all)

            def stdio(paths: _state.Paths) -> list[int]:
                # Made once the state dir exists and before the spawn, so that teardown
                # kills the child first, then drains the log, then removes the dir.
                return self._open_stdio(paths, fds, stack)

            self._state, self._child, spec, self._cgroup = _launch(
                self.config, self.id, stack, stdio, wait_for_start=True, state=self._prestate,
                cgroup=self._precgroup, netns_fd=netns_fd, network=network,
            )
            fds.close_all()
            self.argv = spec["argv"]
            self._spec = spec
            self._own_peak = _own_peak_rss()
            self._stack = stack.pop_all()
        self._status = "created"
        return self

    def _open_stdio(self, paths: _state.Paths, fds: _Fds, stack: ExitStack) -> list[int]:
        """The container's 0, 1, 2 (closed here once spawned) and our ends: the log pump
        reading its output, Container.stdin writing its input."""
        if self.config.tty:
            master, slave = _stdio.open_pty()
            fds.add(slave)
            pump_fds = {"stdout": master}
            self._master = os.dup(master)
            stack.callback(os.close, self._master)
            theirs = [slave, slave, slave]
            stdin_w = os.dup(master) if self._stdin_open else None
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            fds.add(out_w)
            fds.add(err_w)
            pump_fds = {"stdout": out_r, "stderr": err_r}
            if self._stdin_open:
                in_r, stdin_w = os.pipe2(os.O_CLOEXEC)
                fds.add(in_r)
            else:
                in_r, stdin_w = fds.add(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)), None
            theirs = [in_r, out_w, err_w]
        pump = _stdio.LogPump(_stdio.log_path(paths.dir), pump_fds)
        stack.callback(pump.close)
        self._pump = pump
        if stdin_w is not None:
            self.stdin = open(stdin_w, "wb", buffering=0)
            stack.callback(self.stdin.close)
        return theirs

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
            if self._ended_at is None:
                self._ended_at = time.monotonic()
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
        self._started_at = time.monotonic()
        self._status = "running"
        return self

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container to exit; its returncode. TimeoutExpired if `timeout` passes first."""
        status = self.status
        if status == "removed" and self._returncode is not None:
            return self._returncode
        if status not in ("running", "exited") or self._child is None:
            raise ContainerError(f"container {self.id} is {status}: wait needs a started container")
        if self._wait_reaping_execs(Limits(timeout)):
            raise TimeoutExpired(self.argv, timeout or 0, killed=False)
        self._exited()
        returncode = self._child.returncode
        assert returncode is not None
        return returncode

    def _wait_reaping_execs(self, limits: Limits) -> str | None:
        """_wait_exit for the init, reaping exec'd processes as they end: a pid namespace's
        init only finishes exiting once every process of the namespace is reaped, and exec'd
        ones are ours to reap (a stream nobody read to its end, say)."""
        assert self._child is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._child.pidfd, selectors.EVENT_READ, self._child)
            for e in self._execs:
                if e.returncode is None and e.pidfd >= 0:
                    sel.register(e.pidfd, selectors.EVENT_READ, e)
            while self._child.returncode is None:
                hit = limits.check()
                if hit:
                    return hit
                for key, _ in sel.select(limits.interval()):
                    sel.unregister(key.fd)
                    key.data.wait()
        self._execs = [e for e in self._execs if e.returncode is None]
        return None

    def _track_exec(self, child: _native.Child) -> None:
        self._execs = [e for e in self._execs if e.returncode is None] + [child]
        self._stack.callback(child.close)  # killed and reaped before the init at removal

    def exec_run(
        self,
        cmd: str | Sequence[str],
        *,
        user: str | None = None,
        env: Any = None,
        workdir: str | None = None,
        tty: bool = False,
        stdin: bytes | str | None = None,
        stream: bool = False,
        demux: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Run `cmd` in this running container, like docker-py's exec_run: it joins the
        container's namespaces (so its hostname, processes, mounts and files), with the
        container's capabilities, seccomp and limits, as `user` (default the container's)
        with the container's env plus `env`, in `workdir` (default the container's).

        Returns ExecResult(exit_code, output): output is stdout and stderr together in
        the order written, or (stdout, stderr) with demux=True. With stream=True, an
        ExecStream yielding output chunks as they arrive whose `exit_code` is set once it
        is exhausted (docker-py loses it). `stdin` bytes are written to it and closed;
        tty=True gives it a terminal. `timeout` kills it and raises TimeoutExpired. The
        exit code is -N for death by signal N. Raises ContainerError unless running."""
        from .exec import exec_run

        return exec_run(self, cmd, user=user, env=env, workdir=workdir, tty=tty, stdin=stdin,
                        stream=stream, demux=demux, timeout=timeout)

    def _exited(self) -> None:
        """Once reaped: note the time and let the log catch up with the last output."""
        self._status = "exited"
        if self._ended_at is None:
            self._ended_at = time.monotonic()
        if self._pump is not None:
            self._pump.wait(_stdio._DRAIN)

    def result(self) -> Result:
        """The Result of an exited container (wall time from start to the moment wait()
        saw it exit; CPU time and peak memory from waitid's rusage). Output is in logs()."""
        if self.status not in ("exited", "removed") or self.returncode is None:
            raise ContainerError(f"container {self.id} is {self.status}: a result needs an exited container")
        if self._ended_at is None:
            self._exited()
        started = self._started_at if self._started_at is not None else self._ended_at
        usage = _trusted_usage(self._child.usage if self._child is not None else None, self._own_peak)
        peak = None
        if self._cgroup is not None and self._status != "removed":
            peak = self._cgroup.stats()["memory_peak"]
        return Result(self.argv, self.returncode, wall_time=(self._ended_at or 0) - (started or 0), usage=usage,
                      oom_killed=self.oom_killed, peak_memory=peak)

    def resize(self, rows: int, columns: int) -> None:
        """Set the size of the container's terminal (tty=True); its foreground process gets SIGWINCH."""
        if self._master is None or self._status == "removed":
            raise ContainerError(f"container {self.id} has no terminal: create it with tty=True")
        _stdio.set_winsize(self._master, rows, columns)

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

    def logs(
        self,
        stdout: bool = True,
        stderr: bool = True,
        *,
        stream: bool = False,
        follow: bool = False,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> Any:
        """The container's output, both streams interleaved in the order they were written
        (with tty=True both are the terminal's, stdout). Like docker-py: bytes, or with
        stream=True an iterator of chunks as they arrive; follow=True goes on until the
        container exited and all its output is read; tail=N starts at the last N lines;
        timestamps=True prefixes each chunk with its RFC 3339 time and a space."""
        if self._state is None or self._pump is None or self._status == "removed":
            raise ContainerError(f"container {self.id} is {self.status}: it has no logs")
        streams = tuple(name for name, wanted in zip(_stdio.STREAMS, (stdout, stderr)) if wanted)
        path = _stdio.log_path(self._state.paths.dir)
        pump = self._pump
        if follow:
            entries: Any = _stdio.follow(
                path, streams, lambda: pump.done and self.status in ("exited", "removed"), pump.wait_for_data, tail
            )
        else:
            entries = iter(_stdio.read_entries(path, streams, tail))
        chunks = ((f"{t} ".encode() + data if timestamps else data) for _, t, data in entries)
        return chunks if stream else b"".join(chunks)

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
