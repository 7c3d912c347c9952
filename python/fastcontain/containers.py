"""Detached containers: created by one process, managed from any (docker-py's containers.*).

    c = fastcontain.containers.run("busybox", ["sleep", "60"], name="web")   # returns at once
    fastcontain.containers.get("web").stop(timeout=1)                         # from any process
    print(c.wait(), c.logs())

Each one has a supervisor process (fastcontain.supervisor) that spawned it, holds it,
writes its exit status to its record (state.json, under the runtime root) and keeps its
state and logs until `remove()`; with autoremove=True (`--rm`) it removes them itself.
A handle here is only a name for the container: it reads the record, and asks the
supervisor (over its control socket) for what needs the container's own process.
"""

from __future__ import annotations

import builtins
import os
import signal as _signal
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from . import exec_detached as _exec_detached
from . import state as _state
from . import supervisor as _supervisor
from .errors import ContainerError, TimeoutExpired
from .oci_runtime import _start_time

if TYPE_CHECKING:  # (imported where used: `fastcontain exec` needs no Config)
    from .config import Config

STOP_TIMEOUT = 10.0  # docker's default grace period before SIGKILL


def _prepare(config: Config, id: str, autoremove: bool, stdin_open: bool = False) -> Any:
    def prepare(stack: ExitStack) -> _supervisor.Supervised:
        from . import api
        from . import stdio as _stdio

        fds = api._Fds()
        stack.callback(fds.close_all)
        pumps: dict[int, int] = {}

        def kept(fd: int) -> int:
            """A descriptor the supervisor holds until it exits."""
            stack.callback(os.close, fd)
            return fd

        def stdio(paths: _state.Paths) -> builtins.list[int]:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            if config.tty:
                # docker run -dt: a terminal whose master the supervisor holds, copying
                # what the container writes on it to stdout.log (-i changes nothing: no
                # one is attached to type into it, and it never reaches end-of-file)
                master, slave = _stdio.open_pty()
                kept(master)
                pumps[master] = kept(os.open(paths.stdout_log, flags, 0o600))
                fds.add(os.open(paths.stderr_log, flags, 0o600))  # (empty: a terminal has one stream)
                return [fds.add(slave)] * 3
            if stdin_open:  # docker run -di: stdin stays open (a pipe the supervisor holds), never at EOF
                r, w = os.pipe2(os.O_CLOEXEC)
                kept(w)
                stdin = fds.add(r)
            else:
                stdin = fds.add(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            return [stdin, fds.add(os.open(paths.stdout_log, flags, 0o600)),
                    fds.add(os.open(paths.stderr_log, flags, 0o600))]

        state, child, spec, cgroup = api._launch(config, id, stack, stdio, wait_for_start=True, netns_reuse=False)
        fds.close_all()
        _exec_detached.write_base(state.paths, spec, config)  # for `exec` from any process
        started = _start_time(child.pid)
        record = {
            "id": id,
            "name": config.name,
            "image": config.image,
            "argv": spec["argv"],
            "pid": child.pid,
            "pid_start": started[0] if started else None,  # with the pid, names the init (exec)
            "created": time.time(),
            "started": None,
            "finished": None,
            "exit_code": None,
            "autoremove": autoremove,
            "tty": config.tty,
            "stdin_open": stdin_open,
            "hostname": spec.get("hostname"),
            "cgroup_dirs": dict(cgroup.dirs),
            "oom_killed": None,
        }
        sup = _supervisor.Supervised(state, child, record, autoremove=autoremove, kill_all=cgroup.kill, pumps=pumps)
        def note_oom() -> None:  # at exit, before teardown removes the cgroup (inspect shows it)
            _state.update_record(state.paths, oom_killed=bool(cgroup.oom_kills()))

        sup.on_stopped.append(note_oom)
        return sup

    return prepare


def _config(image: str | Config, command: Sequence[str] | str | None, fields: dict[str, Any]) -> Config:
    from .api import _config as config

    return config(image, command, fields)


def create(image: str | Config, command: Sequence[str] | str | None = None, *, autoremove: bool = False,
           stdin_open: bool = False, **config_fields: Any) -> Detached:
    """Create a detached container: its process exists, stopped before exec, until start().
    tty=True gives it a terminal held by its supervisor (its output goes to the log);
    stdin_open=True keeps its stdin open (docker's -i: it never reads end-of-file)."""
    config = _config(image, command, config_fields)
    id = _state.new_id()
    record = _supervisor.launch(_prepare(config, id, autoremove, stdin_open), start=False)
    return Detached(_state.Paths(os.path.abspath(_state.default_root()), id), record)


def run(image: str | Config, command: Sequence[str] | str | None = None, *, autoremove: bool = False,
        stdin_open: bool = False, **config_fields: Any) -> Detached:
    """Create and start a detached container (docker run -d); returns once it exec'd.
    tty and stdin_open as for create()."""
    config = _config(image, command, config_fields)
    id = _state.new_id()
    record = _supervisor.launch(_prepare(config, id, autoremove, stdin_open), start=True)
    return Detached(_state.Paths(os.path.abspath(_state.default_root()), id), record)


def get(name_or_id: str, root: str | None = None) -> Detached:
    """The container with this name, id, or unique id prefix. ContainerError if none."""
    root = os.path.abspath(root or _state.default_root())
    if not name_or_id or "/" in name_or_id or name_or_id.startswith("."):
        raise ContainerError(f"no such container: {name_or_id!r}")
    id = _state.lookup(name_or_id, root)
    if id is None:
        candidates = [p.id for p in _state.recorded(root) if p.id.startswith(name_or_id)]
        if len(candidates) > 1:
            raise ContainerError(f"{name_or_id!r} is the prefix of several containers: {', '.join(candidates)}")
        id = candidates[0] if candidates else None
    if id is None:
        raise ContainerError(f"no such container: {name_or_id}")
    paths = _state.Paths(root, id)
    record = _state.read_record(paths)
    if record is None:
        raise ContainerError(f"no such container: {name_or_id} (it is being created or removed)")
    return Detached(paths, record)


def list(all: bool = False, root: str | None = None) -> builtins.list[Detached]:
    """Running (and paused) containers; with all=True, created and stopped ones too."""
    out = []
    for paths in _state.recorded(root):
        record = _state.read_record(paths)
        if record is None:
            continue
        d = Detached(paths, record)
        if all or d.status in ("running", "paused"):
            out.append(d)
    return out


class Detached:
    """A handle on a detached container. Cheap: reading the record is all it does on its own."""

    def __init__(self, paths: _state.Paths, record: dict[str, Any]) -> None:
        self.paths = paths
        self._record = record

    @property
    def id(self) -> str:
        return self.paths.id

    @property
    def name(self) -> str | None:
        name: str | None = self._record.get("name")
        return name

    def reload(self) -> Detached:
        record = _state.read_record(self.paths)
        if record is None:
            raise ContainerError(f"container {self.id} was removed")
        self._record = record
        return self

    @property
    def status(self) -> str:
        """created, running, paused or stopped, as of the last reload()."""
        status = str(self._record["status"])
        if status != "stopped" and not _state.owner_alive(self.paths.dir):
            # the supervisor is gone without writing "stopped" (it was killed): so is the container
            return "stopped"
        return status

    @property
    def exit_code(self) -> int | None:
        """The exit status (-N: killed by signal N), once stopped; None otherwise."""
        code: int | None = self._record.get("exit_code")
        return code

    @property
    def pid(self) -> int | None:
        pid: int | None = self._record.get("pid")
        return pid

    def inspect(self) -> dict[str, Any]:
        """The record, with the current status and where the state lives."""
        self.reload()
        return dict(self._record, status=self.status, state_dir=self.paths.dir,
                    log_paths={"stdout": self.paths.stdout_log, "stderr": self.paths.stderr_log})

    def stats(self) -> dict[str, int | None]:
        """Read at once from the container's cgroup (as Container.stats): cpu_usage_us,
        memory_current, memory_peak, pids_current, oom_kills, io_read_bytes, io_write_bytes."""
        from .cgroups import Cgroup

        status = self.reload().status
        if status not in ("created", "running", "paused"):
            raise ContainerError(f"container {self.id} is {status}: its cgroup is gone, so are its stats")
        return Cgroup.of(self.id, self._record.get("cgroup_dirs") or {}).stats()

    def exec_run(self, cmd: Sequence[str] | str, *, user: str | None = None, env: Any = None,
                 workdir: str | None = None, tty: bool = False, stdin: bytes | str | None = None,
                 stream: bool = False, demux: bool = False, timeout: float | None = None,
                 privileged: bool = False) -> Any:
        """Container.exec_run from any process: `cmd` joins the running container (its init
        found by a pidfd checked against the record) with the container's settings, as
        `user`, with `env` added, in `workdir`. ExecResult(exit_code, output), or with
        stream=True an ExecStream whose exit_code is set once exhausted. privileged=True:
        every capability and no seccomp filter (docker exec --privileged). ContainerError
        when it is not running (or paused)."""
        return _exec_detached.exec_run(self, cmd, user=user, env=env, workdir=workdir, tty=tty, stdin=stdin,
                                       stream=stream, demux=demux, timeout=timeout, privileged=privileged)

    def _ask(self, message: dict[str, Any], timeout: float | None = 30.0) -> dict[str, Any]:
        return _supervisor.request(self.paths, message, timeout)

    def start(self) -> Detached:
        status = self.reload().status
        if status != "created":
            raise ContainerError(f"container {self.id} is {status}: only a created container can start")
        self._record = self._ask({"op": "start"})["record"]
        return self

    def kill(self, signal: int = _signal.SIGKILL) -> None:
        """Send `signal` to the container's first process (SIGKILL ends every process in it)."""
        status = self.reload().status
        if status not in ("created", "running", "paused"):
            raise ContainerError(f"container {self.id} is {status}: nothing to kill")
        self._ask({"op": "kill", "signal": int(signal), "all": int(signal) == _signal.SIGKILL})

    def _freeze(self, frozen: bool) -> None:
        from .oci_runtime import OciCgroup

        with _state.record_locked(self.paths):
            record = _state.read_record(self.paths)
            if record is None:
                raise ContainerError(f"container {self.id} was removed")
            self._record = record
            want = "running" if frozen else "paused"
            if self.status != want:
                raise ContainerError(f"container {self.id} is {self.status}: "
                                     f"{'only a running container can be paused' if frozen else 'it is not paused'}")
            OciCgroup(record.get("cgroup_dirs") or {}).freeze(frozen)
            record["status"] = "paused" if frozen else "running"
            _state.write_record(self.paths, record)

    def pause(self) -> None:
        """Freeze every process of the container (cgroup.freeze, or the v1 freezer)."""
        self._freeze(True)

    def unpause(self) -> None:
        self._freeze(False)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; waits for the exit; its status
        (None if the container removed itself, --rm)."""
        if self.reload().status == "stopped":
            return self.exit_code
        if self.status == "paused":
            self.unpause()  # a frozen process cannot act on SIGTERM
        try:
            self._ask({"op": "stop", "timeout": timeout})
        except ContainerError:
            if self.reload().status != "stopped":
                raise
        return self.wait()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit; the exit status (-N: signal N). None when it was removed on
        exit (autoremove) before an answer. TimeoutExpired if `timeout` passes first."""
        try:
            answer = self._ask({"op": "wait"}, timeout=timeout)
            return int(answer["exit_code"]) if answer.get("exit_code") is not None else None
        except TimeoutExpired:
            raise TimeoutExpired(self._record.get("argv"), timeout or 0, killed=False) from None
        except ContainerError:
            pass  # no supervisor: it exited already
        if _state.read_record(self.paths) is None:
            return None
        self.reload()
        return self.exit_code

    def remove(self, force: bool = False) -> None:
        """Remove the container's state and logs; a running one needs force (it is killed)."""
        status = self.reload().status
        if status != "stopped":
            if not force:
                raise ContainerError(f"container {self.id} is {status}: stop it first or remove it with force")
            try:
                if status == "paused":
                    self.unpause()
                self._ask({"op": "kill", "signal": int(_signal.SIGKILL), "all": True})
                self._ask({"op": "wait"}, timeout=None)
            except ContainerError:
                pass
        deadline = time.monotonic() + 10
        while _state.owner_alive(self.paths.dir):  # the supervisor's last writes after the exit
            if time.monotonic() > deadline:
                raise ContainerError(f"the supervisor of container {self.id} does not exit")
            time.sleep(0.005)
        if self._record.get("autoremove") and _state.read_record(self.paths) is None:
            return
        _state.remove_kept(self.paths, self.name)

    # -- logs --------------------------------------------------------------------------

    def _log_files(self, stdout: bool, stderr: bool) -> builtins.list[tuple[int, str]]:
        return [(i, p) for i, wanted, p in ((1, stdout, self.paths.stdout_log), (2, stderr, self.paths.stderr_log))
                if wanted]

    def logs(self, stdout: bool = True, stderr: bool = True, tail: int | None = None) -> bytes:
        """What the container wrote so far: stdout, then stderr; `tail`: the last N lines of each."""
        return b"".join(data for _, data in self.stream_logs(stdout, stderr, tail=tail, follow=False))

    def stream_logs(self, stdout: bool = True, stderr: bool = True, *, tail: int | None = None,
                    follow: bool = False, poll: float = 0.05) -> Iterator[tuple[int, bytes]]:
        """(stream number, bytes) as written; with follow, until the container stopped."""
        files = []
        try:
            for i, path in self._log_files(stdout, stderr):
                try:
                    files.append((i, open(path, "rb")))
                except FileNotFoundError:
                    raise ContainerError(f"container {self.id} has no logs (its state was removed)") from None
            for i, f in files:
                data = f.read()
                if tail is not None:
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-tail:]) if tail > 0 else b""
                if data:
                    yield i, data
            while follow:
                alive = _state.owner_alive(self.paths.dir)
                got = False
                for i, f in files:
                    data = f.read()
                    if data:
                        got = True
                        yield i, data
                if not alive:
                    return
                if not got:
                    time.sleep(poll)
        finally:
            for _, f in files:
                f.close()
