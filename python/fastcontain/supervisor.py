"""A detached container's supervisor: one small process per container, and its spawner.

    caller --fork--> intermediate --setsid, fork--> supervisor --clone3--> container init
              (exits at once)

The intermediate exits at once, so the supervisor is reparented (to init, or to the
nearest child subreaper: conmon and containerd-shim are ones) and outlives the caller.
It spawns the container itself: the native Child (its pidfd and the wait-for-start
pipe) belongs to the process that spawned it. It reports "created" (or the error) to
the caller on a pipe, then serves a control socket in the state dir (start, kill,
stop, wait) until the container exits; then it records the exit status, tears down,
and either keeps the state dir and logs until `rm` or removes everything (`--rm`).

An OCI container's supervisor (`exit_after_start`) lives only from create to start:
after start it exits without reaping, so the container's init is reparented to the
engine's subreaper, which waits for it, as runc's init is.

The protocol is one JSON object a line: a request per connection, one answer.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from . import errors as _errors
from . import state as _state

TYPE_CHECKING = False  # typing and traceback are not imported at run time (fastcontain-oci start)
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn

    from . import _native


@dataclass
class Supervised:
    """What `prepare` made: the container, its record, and what to do at each step."""

    state: _state.ContainerState
    child: _native.Child
    record: dict[str, Any]
    autoremove: bool = False
    exit_after_start: bool = False  # OCI: leave the init to the engine's subreaper after start
    before_start: list[Callable[[], None]] = field(default_factory=list)  # may raise: start fails
    after_start: list[Callable[[], None]] = field(default_factory=list)  # errors are logged
    on_stopped: list[Callable[[], None]] = field(default_factory=list)  # before teardown
    kill_all: Callable[[], None] | None = None  # every process of the container (its cgroup)
    pumps: dict[int, int] = field(default_factory=dict)  # read fd -> log fd: a terminal's output, copied


# -- errors across processes ------------------------------------------------------------


def error_to_json(e: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(e).__name__, "message": str(e)}
    for attr in ("step", "errno", "path", "field", "reason"):
        value = getattr(e, attr, None)
        if isinstance(value, (str, int)) or value is None:
            out[attr] = value
    if hasattr(e, "value"):
        out["value"] = repr(getattr(e, "value"))
    return out


def error_from_json(d: dict[str, Any]) -> _errors.FastcontainError:
    """The exception the other process raised, as one of ours (its message kept)."""
    kind = getattr(_errors, str(d.get("type")), None)
    message = str(d.get("message") or "the supervisor failed")
    e: _errors.FastcontainError
    if kind is _errors.SpawnError:
        e = _errors.SpawnError(message, step=str(d.get("step")), errno=int(d.get("errno") or 0), path=d.get("path"))
        e.args = (message,)
    elif kind is _errors.ConfigError:
        e = _errors.ConfigError(str(d.get("field")), d.get("value"), str(d.get("reason")))
        e.args = (message,)
    elif isinstance(kind, type) and issubclass(kind, _errors.FastcontainError) and kind.__init__ is Exception.__init__:
        e = kind(message)
    else:
        e = _errors.ContainerError(message)
    return e


# -- the caller's side -----------------------------------------------------------------


def _read_line(fd: int) -> bytes:
    """Up to a newline or EOF: a container waiting for start holds a copy of the write end
    (close-on-exec, and it has not exec'd), so EOF alone would not come."""
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        if data.endswith(b"\n"):
            return b"".join(chunks)


def launch(
    prepare: Callable[[ExitStack], Supervised], *, start: bool, keep_stdio: bool = False, keep_fds: int = 0
) -> dict[str, Any]:
    """Fork a supervisor that runs `prepare` (which spawns the container), optionally
    starts it, and serves it. Returns its report (the record) once it is created or
    started; raises the supervisor's error otherwise. `keep_stdio`: the supervisor keeps
    the caller's 0, 1, 2 until start (an OCI engine's pipes for the container);
    `keep_fds`: and the caller's fds 3 .. 3+keep_fds-1 (runc's --preserve-fds). Every
    other descriptor is closed in the supervisor: it must not hold the caller's locks
    or pipes for the container's life."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the forked processes)
        code = 0
        try:
            os.close(r)
            _close_inherited(w, keep_fds)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _supervise(prepare, w, start=start, keep_stdio=keep_stdio)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        os.waitpid(pid, 0)
        data = _read_line(r)
    finally:
        os.close(r)
    if not data:
        raise _errors.ContainerError("the container's supervisor died before it reported (see its supervisor.log)")
    report = json.loads(data)
    if not report.get("ok"):
        raise error_from_json(report["error"])
    record: dict[str, Any] = report["record"]
    return record


def _close_inherited(report_fd: int, keep: int) -> None:
    first = 3 + keep
    if report_fd >= first:
        os.closerange(first, report_fd)
        os.closerange(report_fd + 1, 1 << 20)
    else:
        os.closerange(first, 1 << 20)


def _ctl_path(paths: _state.Paths, dirfd: int) -> str:
    # sun_path holds 108 bytes; an engine's root can be longer: go through the dir's fd
    return f"/proc/self/fd/{dirfd}/{os.path.basename(paths.ctl)}"


def request(paths: _state.Paths, message: dict[str, Any], timeout: float | None = 30.0) -> dict[str, Any]:
    """Send one request to the container's supervisor; its answer. ContainerError when
    no supervisor listens (the container is not running)."""
    try:
        dirfd = os.open(paths.dir, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _errors.ContainerError(f"container {paths.id} was removed") from None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(timeout)
            try:
                s.connect(_ctl_path(paths, dirfd))
            except (FileNotFoundError, ConnectionRefusedError):
                raise _errors.ContainerError(f"container {paths.id} has no supervisor: it is not running") from None
            s.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    raise _errors.TimeoutExpired(message.get("op"), timeout or 0, killed=False) from None
                except ConnectionResetError:
                    break  # it exited between our connect and its accept
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(dirfd)
    if not data:
        raise _errors.ContainerError(f"the supervisor of container {paths.id} closed without answering")
    answer: dict[str, Any] = json.loads(data)
    if not answer.get("ok"):
        raise error_from_json(answer["error"])
    return answer


# -- the supervisor ----------------------------------------------------------------------


def _report(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, json.dumps(message).encode() + b"\n")
    os.close(fd)


def _quiet_stdio(keep: bool) -> None:
    """Let go of the caller's terminal or pipes (a `subprocess.run` capturing the CLI's
    output would wait for us otherwise); errors go to supervisor.log later."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2) if not keep else ():
        os.dup2(null, fd)
    os.close(null)


def _supervise(prepare: Callable[[ExitStack], Supervised], report_fd: int, *, start: bool, keep_stdio: bool) -> None:
    _quiet_stdio(keep_stdio)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    with ExitStack() as stack:
        try:
            sup = prepare(stack)
            paths = sup.state.paths
            server = _listen(paths, stack)
            record = dict(sup.record, status="created", supervisor_pid=os.getpid())
            _state.write_record(paths, record)
            if start:
                record = _start(sup)
        except BaseException as e:
            _report(report_fd, {"ok": False, "error": error_to_json(e)})
            raise
        log = os.open(os.path.join(paths.dir, "supervisor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.dup2(log, 2)
        os.close(log)
        _report(report_fd, {"ok": True, "record": record})
        if keep_stdio and not start:
            pass  # the container's stdio are the engine's: hold them (as runc's init does) until start
        elif keep_stdio:
            _quiet_stdio(False)
        if start and sup.exit_after_start:
            _leave(sup, server)
        try:
            Loop(sup, server).run()
        finally:
            server.close()
            try:
                os.unlink(paths.ctl)
            except FileNotFoundError:
                pass
            if not sup.autoremove:
                sup.state.release()  # keep the record and the logs until `rm`


def _logged(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        import traceback

        traceback.print_exc(file=sys.stderr)


def _listen(paths: _state.Paths, stack: ExitStack) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    stack.callback(server.close)
    dirfd = os.open(paths.dir, os.O_PATH | os.O_CLOEXEC)
    try:
        server.bind(_ctl_path(paths, dirfd))
    finally:
        os.close(dirfd)
    os.chmod(paths.ctl, 0o600)
    server.listen(16)
    return server


def _start(sup: Supervised) -> dict[str, Any]:
    for hook in sup.before_start:
        hook()
    sup.child.start()
    record = _state.update_record(sup.state.paths, status="running", started=time.time())
    for hook in sup.after_start:
        _logged(hook)
    return record


def _leave(sup: Supervised, server: socket.socket) -> NoReturn:
    """OCI: exit without reaping or killing: the init goes to the engine's subreaper,
    and the state dir (and cgroup) stay for `delete`."""
    server.close()
    try:
        os.unlink(sup.state.paths.ctl)
    except FileNotFoundError:
        pass
    sys.stderr.flush()
    os._exit(0)


class Loop:
    """Serve requests until the container's init exits (its pidfd reads ready)."""

    def __init__(self, sup: Supervised, server: socket.socket) -> None:
        self.sup = sup
        self.server = server
        self.waiters: list[socket.socket] = []
        self.kill_at: float | None = None

    def run(self) -> None:
        child = self.sup.child
        with selectors.DefaultSelector() as sel:
            sel.register(self.server, selectors.EVENT_READ, "accept")
            sel.register(child.pidfd, selectors.EVENT_READ, "exit")
            for fd in self.sup.pumps:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ, "pump")
            while True:
                timeout = None if self.kill_at is None else max(0.0, self.kill_at - time.monotonic())
                events = sel.select(timeout)
                if self.kill_at is not None and time.monotonic() >= self.kill_at:
                    self.kill_at = None
                    self._kill(signal.SIGKILL, all=True)
                for key, _ in events:
                    if key.data == "pump":
                        if not self._copy(key.fd):
                            sel.unregister(key.fd)
                        continue
                    if key.data == "exit":
                        if self.sup.exit_after_start and not child.started:
                            # OCI, killed before start: leave the zombie to the engine's subreaper
                            _leave(self.sup, self.server)
                        child.wait()
                        for fd in self.sup.pumps:  # what it wrote last, before "stopped" says all is there
                            while self._copy(fd, drain=True):
                                pass
                        _state.update_record(self.sup.state.paths, status="stopped", exit_code=child.returncode,
                                             finished=time.time(), supervisor_pid=None)
                        for hook in self.sup.on_stopped:
                            _logged(hook)
                        self._answer_waiters()
                        return
                    self._accept()

    def _copy(self, fd: int, drain: bool = False) -> bool:
        """Copy what the pump fd has to its log; False at its end (or, draining, when it
        has nothing more now)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return not drain
        except OSError:  # EIO: a terminal whose other side is closed everywhere
            return False
        if data:
            os.write(self.sup.pumps[fd], data)
        return bool(data)

    def _answer_waiters(self) -> None:
        for conn in self.waiters:
            try:
                conn.sendall(json.dumps({"ok": True, "exit_code": self.sup.child.returncode}).encode() + b"\n")
            except OSError:
                pass
            conn.close()
        self.waiters.clear()

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        conn.settimeout(5.0)
        keep = False
        try:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            request = json.loads(data or b"{}")
            try:
                answer = self._handle(request, conn)
            except Exception as e:
                answer = {"ok": False, "error": error_to_json(e)}
            if answer is None:
                keep = True  # a waiter: answered when the container exits
                self.waiters.append(conn)
            else:
                conn.sendall(json.dumps(answer).encode() + b"\n")
        except (OSError, ValueError):
            pass
        finally:
            if not keep:
                conn.close()

    def _kill(self, sig: int, all: bool = False) -> None:
        if all and self.sup.kill_all is not None and sig == signal.SIGKILL:
            self.sup.kill_all()
        self.sup.child.send_signal(sig)

    def _handle(self, request: dict[str, Any], conn: socket.socket) -> dict[str, Any] | None:
        op = request.get("op")
        child = self.sup.child
        if op == "start":
            if child.started:
                raise _errors.ContainerError(f"container {self.sup.state.id} was started already")
            try:
                record = _start(self.sup)
            except _errors.SpawnError:
                # the init is gone: report the exit once the pidfd says so
                raise
            if self.sup.exit_after_start:
                conn.sendall(json.dumps({"ok": True, "record": record}).encode() + b"\n")
                conn.close()
                _leave(self.sup, self.server)
            return {"ok": True, "record": record}
        if op == "kill":
            sig = int(request.get("signal", signal.SIGKILL))
            self._kill(sig, all=bool(request.get("all")))
            return {"ok": True}
        if op == "stop":
            grace = float(request.get("timeout", 10))
            child.send_signal(signal.SIGTERM)
            self.kill_at = time.monotonic() + max(0.0, grace)
            return {"ok": True}
        if op == "wait":
            return None
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        raise _errors.ContainerError(f"unknown request {op!r}")
