"""The OCI runtime operations behind `fastcontain-oci` (runc's semantics).

create: the calling process forks a supervisor (fastcontain.supervisor) that joins any
namespaces given by path, makes the cgroup at cgroupsPath, spawns the container's init
waiting for start, puts it in its v1 cgroups, writes sysctls and device nodes, runs the
createRuntime/createContainer hooks, writes the record, and waits on its control socket.
start: asks the supervisor, which runs the startContainer hooks, releases the init and
then exits without reaping it, so the init is reparented to the engine's subreaper
(conmon, containerd-shim), which waits for it as it would for runc's. From then on the
state is the record plus the kernel's word on the pid (runc's way): running while
/proc/PID has the recorded start time and is not a zombie, paused while its cgroup is
frozen, stopped otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from . import cgroupdir as _cgroupdir
from . import state as _state
from .errors import ContainerError

TYPE_CHECKING = False  # typing is not imported at run time (see oci_cli)
if TYPE_CHECKING:
    from typing import Any, Callable

    from contextlib import ExitStack

    from . import oci as _oci
    from . import supervisor as _supervisor

# Every call of fastcontain-oci is a new interpreter: modules only some verbs need
# (the translation, the supervisor, subprocess, socket) are imported where used.
OCI_VERSION = "1.1.0"

DEFAULT_ROOT = "/run/fastcontain-oci"


def paths(root: str, id: str) -> _state.Paths:
    return _state.Paths(os.path.abspath(root), id)


def _start_time(pid: int) -> tuple[int, str] | None:
    """(starttime, state letter) of /proc/PID/stat, None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[19]), fields[0]


def _alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    if not pid:
        return False
    st = _start_time(int(pid))
    return st is not None and st[0] == record.get("pid_start") and st[1] not in ("Z", "X")


# -- cgroups at cgroupsPath ------------------------------------------------------------------


class OciCgroup:
    """The container's cgroup at its cgroupsPath, in each hierarchy it needs. The record
    keeps the directories, so `delete` (another process) removes them."""

    def __init__(self, dirs: dict[str, str]) -> None:
        self.dirs = dirs
        self.fd: int | None = None

    @classmethod
    def create(cls, path: str, resources: dict[str, Any], devices: list[dict[str, Any]] = []) -> OciCgroup:
        from . import cgroups, oci

        host = cgroups.Host.detect()
        res = oci.limits(resources)
        files = res.v2_files() if host.layout == "v2" else res.v1_files()
        # linux.resources.devices (fastcontain.devices): a device program on the cgroup2
        # directory, or the v1 devices controller, as for fastcontain.run
        policy = None if res.device_policy.allows_all else res.device_policy
        backend = cgroups.device_backend(host)
        wanted = ([] if host.layout == "v2" else sorted({s.controller for s in files}
                                                         | ({"freezer"} if host.layout == "v1" else set())
                                                         | ({"devices"} if policy and backend == "v1" else set())))
        keys = (["unified"] if host.unified else []) + wanted
        cg = cls({})
        try:
            for key in keys:
                mount = host.unified if key == "unified" else host.v1.get(key)
                if mount is None:
                    raise ContainerError(f"linux.resources: the cgroup v1 controller {key!r} is not mounted")
                cg._mkdir(mount, path, key)
            for s in files:
                d = cg.dirs["unified" if host.layout == "v2" else s.controller]
                name, value = s.file, s.value
                if s.fallback and not os.path.exists(os.path.join(d, name)):
                    name, value = s.fallback
                target = os.path.join(d, name)
                if name in ("memory.memsw.limit_in_bytes", "memory.swap.max") and not os.path.exists(target):
                    continue  # no swap accounting on this host: runc skips the swap limit too
                cgroups._write(target, value)
            if policy and backend == "v1":
                for file, line in policy.v1_lines():
                    cgroups._write(os.path.join(cg.dirs["devices"], file), line)
            if "unified" in cg.dirs:
                cg.fd = os.open(cg.dirs["unified"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                if policy and backend == "bpf":
                    from . import devices as _devices

                    _devices.attach(policy, cg.fd, cg.dirs["unified"])
        except BaseException:
            cg.remove()
            raise
        return cg

    def _mkdir(self, mount: str, path: str, key: str) -> None:
        from . import cgroups

        d = mount
        for part in path.split("/"):
            parent, d = d, os.path.join(d, part)
            if not os.path.isdir(d):
                os.mkdir(d)
                if d == os.path.join(mount, path):
                    self.dirs[key] = d
                if key == "cpuset":  # v1: an empty cpuset refuses tasks
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        cgroups._write(os.path.join(d, f), cgroups._read(os.path.join(parent, f)).strip())
        if key not in self.dirs:
            if os.listdir(d) and cgroups._read(os.path.join(d, "cgroup.procs")).strip():
                raise ContainerError(f"linux.cgroupsPath: the cgroup {d} exists and has processes in it")
            self.dirs[key] = d

    def attach(self, pid: int) -> None:
        from . import cgroups

        for key, d in self.dirs.items():
            if key != "unified":
                cgroups._write(os.path.join(d, "cgroup.procs"), str(pid))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self) -> None:
        self.close()
        if self.procs():
            self.kill_all()
        deadline = time.monotonic() + 5
        for d in reversed(list(self.dirs.values())):
            _cgroupdir.rmdir(d, deadline)
        self.dirs.clear()

    def kill_all(self) -> None:
        """SIGKILL every process: cgroup.kill where there is one, else in rounds."""
        unified = self.dirs.get("unified")
        if unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
            with open(os.path.join(unified, "cgroup.kill"), "w") as f:
                f.write("1")
            return
        for _ in range(3):
            for pid in self.procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def procs(self) -> list[int]:
        for key in ("unified", "freezer", "pids", "memory"):
            d = self.dirs.get(key)
            if d:
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        return [int(p) for p in f.read().split()]
                except OSError:
                    return []
        return []

    def freeze(self, frozen: bool) -> None:
        from . import cgroups

        if "unified" in self.dirs and os.path.exists(os.path.join(self.dirs["unified"], "cgroup.freeze")):
            cgroups._write(os.path.join(self.dirs["unified"], "cgroup.freeze"), "1" if frozen else "0")
        elif "freezer" in self.dirs:
            cgroups._write(os.path.join(self.dirs["freezer"], "freezer.state"), "FROZEN" if frozen else "THAWED")
        else:
            raise ContainerError("pausing needs a freezer: this host has neither cgroup.freeze nor a v1 freezer")

    def frozen(self) -> bool:
        try:
            if "unified" in self.dirs and os.path.exists(os.path.join(self.dirs["unified"], "cgroup.freeze")):
                with open(os.path.join(self.dirs["unified"], "cgroup.freeze")) as f:
                    return f.read().strip() == "1"
            if "freezer" in self.dirs:
                with open(os.path.join(self.dirs["freezer"], "freezer.state")) as f:
                    return f.read().strip() != "THAWED"
        except OSError:
            pass
        return False


# -- hooks --------------------------------------------------------------------------------------


def state_json(record: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """The runtime spec's state of a container."""
    out = {
        "ociVersion": record.get("oci_version", OCI_VERSION),
        "id": record["id"],
        "status": status or record["status"],
        "pid": record.get("pid") or 0,
        "bundle": record["bundle"],
    }
    if record.get("annotations"):
        out["annotations"] = record["annotations"]
    return out


def _setns_all(pid: int, kinds: tuple[str, ...]) -> Callable[[], None]:
    def enter() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fds = [os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC) for k in kinds]
        for k, fd in zip(kinds, fds):
            if libc.setns(fd, 0) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into the container's {k} namespace: {os.strerror(err)}")
            os.close(fd)

    return enter


def run_hooks(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any], *, in_container: int | None = None,
              warn_only: bool = False) -> None:
    """Run each hook with the state on its stdin, as the spec says; a failure (exit status,
    timeout) raises unless `warn_only` (poststart, poststop: the spec logs and goes on)."""
    import subprocess

    data = json.dumps(state).encode()
    for i, h in enumerate(hooks):
        pre = None
        if in_container is not None:
            # the container's namespaces but its pid namespace (that one would only hold the hook's children)
            pre = _setns_all(in_container, ("ipc", "uts", "net", "cgroup", "mnt"))
        try:
            r = subprocess.run(list(h["args"]), executable=h["path"], input=data, env=dict(
                e.split("=", 1) for e in h["env"]), capture_output=True, timeout=h.get("timeout"),
                preexec_fn=pre, cwd="/" if in_container is not None else state["bundle"])
            error = None if r.returncode == 0 else f"exited with status {r.returncode}: {r.stderr.decode(errors='replace').strip()}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {h.get('timeout')} seconds"
        except (OSError, subprocess.SubprocessError) as e:
            error = str(e)
        if error:
            message = f"hooks.{kind}[{i}] ({h['path']}) {error}"
            if not warn_only:
                raise ContainerError(message)
            print(f"fastcontain-oci: warning: {message}", file=sys.stderr)


# -- console -------------------------------------------------------------------------------------


def _console(console_socket: str, size: tuple[int, int] | None) -> int:
    """A pty: the master goes to the engine over its socket (SCM_RIGHTS, as runc does), the
    container gets the slave as its stdio."""
    import fcntl
    import socket
    import struct
    import termios

    master, slave = os.openpty()
    try:
        os.set_inheritable(master, False)
        if size and all(size):
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.connect(console_socket)
            socket.send_fds(s, [b"/dev/ptmx"], [master])
    except OSError as e:
        os.close(slave)
        raise ContainerError(f"--console-socket {console_socket}: sending the terminal failed: {e.strerror}") from None
    finally:
        os.close(master)
    return slave


# -- create ----------------------------------------------------------------------------------------


def _sysctls(pid: int, sysctl: dict[str, str]) -> None:
    """Written from a child that entered the container's namespaces (net.* and the ipc
    knobs are per-namespace by the writer's namespaces, not by the /proc mount)."""
    child = os.fork()
    if child == 0:  # pragma: no cover
        code = 1
        try:
            _setns_all(pid, ("net", "ipc", "uts"))()
            for k, v in sysctl.items():
                with open("/proc/sys/" + k.replace(".", "/"), "w") as f:
                    f.write(v)
            code = 0
        except OSError as e:
            os.write(2, f"fastcontain-oci: linux.sysctl: {e}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise ContainerError(f"linux.sysctl: writing {', '.join(sysctl)} failed (see the log)")


def _mknods(pid: int, devices: list[dict[str, Any]], rootfs: str = "/") -> None:
    """linux.devices, made through /proc/PID/root: at `rootfs` while the container
    waits before pivot_root, at / after it."""
    import stat as st

    kinds = {"c": st.S_IFCHR, "u": st.S_IFCHR, "b": st.S_IFBLK, "p": st.S_IFIFO}
    root = f"/proc/{pid}/root" + rootfs.rstrip("/")
    for d in devices:
        path = root + d["path"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = (d.get("fileMode") or 0o666) & 0o7777
        dev = os.makedev(d.get("major") or 0, d.get("minor") or 0)
        if os.path.lexists(path):
            os.unlink(path)
        try:
            os.mknod(path, kinds[d["type"]] | mode, dev)
            os.chown(path, d.get("uid") or 0, d.get("gid") or 0)
            os.chmod(path, mode)
        except OSError as e:
            raise ContainerError(f"linux.devices: mknod {d['path']} failed: {e.strerror}") from None


def _join(joins: list[tuple[str, str]]) -> None:
    if not joins:
        return
    import ctypes

    files = {"net": "net", "ipc": "ipc", "uts": "uts", "pid": "pid", "cgroup": "cgroup"}
    libc = ctypes.CDLL(None, use_errno=True)
    for kind, path in joins:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, 0) != 0:
                err = ctypes.get_errno()
                raise ContainerError(f"linux.namespaces: joining the {files[kind]} namespace {path} failed: "
                                     f"{os.strerror(err)}")
        finally:
            os.close(fd)


def _hook_dicts(plan: _oci.Plan, kind: str) -> list[dict[str, Any]]:
    return [{"path": h.path, "args": list(h.args), "env": list(h.env), "timeout": h.timeout}
            for h in plan.hooks.get(kind, [])]


def _prepare(root: str, id: str, plan: _oci.Plan, console_socket: str | None) -> Callable[[ExitStack], Any]:
    def prepare(stack: ExitStack) -> _supervisor.Supervised:
        from . import _native
        from . import supervisor as _supervisor

        spec = dict(plan.spec)
        state = stack.enter_context(_state.create(root, id=id, oci=True))
        if plan.seccomp is not None:
            from . import security

            profile = os.path.join(state.paths.dir, "seccomp.json")
            with open(profile, "w") as f:
                json.dump(plan.seccomp, f)
            spec["seccomp"] = security.compile_profile(profile, frozenset(spec.get("capabilities") or ()))
        if plan.terminal:
            if not console_socket:
                raise ContainerError("process.terminal is true: give --console-socket (or set terminal false)")
            slave = _console(console_socket, plan.console_size)
            stack.callback(os.close, slave)
            spec["stdio"] = [slave, slave, slave]
        _join(plan.joins)
        # no cgroupsPath: a top-level cgroup of its own (nothing is left behind by delete)
        cg = OciCgroup.create(plan.cgroups_path or f"fastcontain-oci-{id}", plan.resources, plan.devices)
        stack.callback(cg.remove)  # undone on a failure before start; `delete` removes it later
        spec["cgroup_fd"] = cg.fd
        # The spec's points for these hooks are after the namespaces exist and before
        # pivot_root: only then is the child asked to stop there (one more round trip).
        create_hooks = {kind: _hook_dicts(plan, kind) for kind in ("prestart", "createRuntime", "createContainer")}
        spec["pause_before_pivot"] = any(create_hooks.values())
        child = _native.spawn(spec)
        stack.callback(child.close)
        cg.close()
        cg.attach(child.pid)
        if plan.sysctl:
            _sysctls(child.pid, plan.sysctl)
        st = _start_time(child.pid)
        record = {
            "id": id, "oci": True, "oci_version": plan.oci_version, "bundle": plan.bundle, "pid": child.pid,
            "pid_start": st[0] if st else None, "annotations": plan.annotations, "created": time.time(),
            "rootfs": spec["rootfs"], "cgroup_dirs": cg.dirs, "poststop": _hook_dicts(plan, "poststop"),
            "clone_method": child.clone_method,
        }
        if child.paused_before_pivot:
            # the container's /dev is at its rootfs in its mount namespace, not yet its root
            if plan.devices:
                _mknods(child.pid, plan.devices, spec["rootfs"])
            creating = state_json(record, "creating")
            for kind in ("prestart", "createRuntime"):  # prestart: deprecated, createRuntime's point
                run_hooks(kind, create_hooks[kind], creating)
            run_hooks("createContainer", create_hooks["createContainer"], creating, in_container=child.pid)
            child.resume_setup()
        elif plan.devices:
            _mknods(child.pid, plan.devices)
        sup = _supervisor.Supervised(state, child, record, exit_after_start=True)
        def start_hooks() -> None:
            try:
                run_hooks("startContainer", _hook_dicts(plan, "startContainer"), state_json(record, "created"),
                          in_container=child.pid)
            except ContainerError:
                child.send_signal(signal.SIGKILL)  # the spec: a failed startContainer hook stops the container
                raise

        sup.before_start.append(start_hooks)
        sup.after_start.append(lambda: run_hooks(
            "poststart", _hook_dicts(plan, "poststart"), state_json(record, "running"), warn_only=True))
        return sup

    return prepare


def create(root: str, id: str, bundle: str, *, pid_file: str | None = None, console_socket: str | None = None,
           preserve_fds: int = 0, start: bool = False) -> dict[str, Any]:
    from . import cgroups
    from . import oci as _oci
    from . import supervisor as _supervisor

    try:
        has_unified = cgroups.Host.detect().unified is not None
    except Exception:
        has_unified = False
    plan = _oci.translate(bundle, _oci.load(bundle), has_unified)
    os.makedirs(root, mode=0o711, exist_ok=True)
    if os.path.exists(os.path.join(root, id)):
        raise ContainerError(f"container {id} exists already")
    record = _supervisor.launch(_prepare(root, id, plan, console_socket), start=start, keep_stdio=True,
                                keep_fds=preserve_fds)
    if pid_file:
        write_pid_file(pid_file, record["pid"])
    return record


def write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


# -- the other verbs ----------------------------------------------------------------------------------


def load(root: str, id: str) -> tuple[_state.Paths, dict[str, Any]]:
    p = paths(root, id)
    if "/" in id or not id:
        raise ContainerError(f"container {id!r} does not exist")
    record = _state.read_record(p)
    if record is None:
        raise ContainerError(f"container {id} does not exist")
    return p, record


def status(p: _state.Paths, record: dict[str, Any]) -> str:
    recorded = record["status"]
    if recorded == "created" and _state.owner_alive(p.dir) and _alive(record):
        return "created"
    if recorded in ("running", "paused") and _alive(record):
        return "paused" if OciCgroup(record.get("cgroup_dirs") or {}).frozen() else "running"
    return "stopped"


def state(root: str, id: str) -> dict[str, Any]:
    p, record = load(root, id)
    return state_json(record, status(p, record))


def start(root: str, id: str) -> None:
    p, record = load(root, id)
    st = status(p, record)
    if st != "created":
        raise ContainerError(f"container {id} is {st}: only a created container can start")
    from . import supervisor as _supervisor

    _supervisor.request(p, {"op": "start"})


def kill(root: str, id: str, sig: int, all: bool = False) -> None:
    p, record = load(root, id)
    st = status(p, record)
    if st == "stopped":
        raise ContainerError(f"container {id} is not running")
    if all:
        cg = OciCgroup(record.get("cgroup_dirs") or {})
        if sig == signal.SIGKILL:
            cg.kill_all()
            return
        for pid in cg.procs():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return
    pid = int(record["pid"])
    fd = os.pidfd_open(pid)
    try:
        if _alive(record):  # the pidfd pins the process: no pid reuse between the check and the signal
            signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def delete(root: str, id: str, force: bool = False) -> None:
    p, record = load(root, id)
    st = status(p, record)
    if st in ("running", "paused") and not force:
        raise ContainerError(f"container {id} is {st}: stop it first or use delete --force")
    cg = OciCgroup(record.get("cgroup_dirs") or {})
    if st != "stopped":
        if st == "paused":
            cg.freeze(False)
        try:
            kill(root, id, signal.SIGKILL, all=True)
        except ContainerError:
            pass
    if st == "created" and _state.owner_alive(p.dir):
        from . import supervisor as _supervisor

        try:
            _supervisor.request(p, {"op": "kill", "signal": int(signal.SIGKILL)})
        except ContainerError:
            pass
    deadline = time.monotonic() + 10
    while _state.owner_alive(p.dir) and time.monotonic() < deadline:
        time.sleep(0.002)
    cg.remove()
    _state.remove_kept(p, None)
    run_hooks("poststop", record.get("poststop") or [], state_json(record, "stopped"), warn_only=True)


def pause(root: str, id: str, frozen: bool) -> None:
    p, record = load(root, id)
    st = status(p, record)
    if frozen and st != "running" or not frozen and st != "paused":
        raise ContainerError(f"container {id} is {st}: cannot {'pause' if frozen else 'resume'} it")
    OciCgroup(record.get("cgroup_dirs") or {}).freeze(frozen)
    _state.update_record(p, status="paused" if frozen else "running")


def ps(root: str, id: str) -> list[int]:
    _, record = load(root, id)
    return OciCgroup(record.get("cgroup_dirs") or {}).procs()


def list_all(root: str) -> list[dict[str, Any]]:
    out = []
    for p in _state.recorded(root):
        record = _state.read_record(p)
        if record and record.get("oci"):
            out.append(dict(state_json(record, status(p, record)), created=record.get("created")))
    return out


def run(root: str, id: str, bundle: str, *, pid_file: str | None = None, console_socket: str | None = None,
        detach: bool = False, preserve_fds: int = 0) -> int:
    """runc run: create and start; in the foreground, wait and return the exit status
    (128+N for signal N). The init is reparented to this process (a child subreaper) once
    the supervisor leaves; signals this process gets are forwarded to it; a terminal
    the config asks for without --console-socket is proxied to ours, as runc does."""
    from . import oci as _oci

    if detach:
        create(root, id, bundle, pid_file=pid_file, console_socket=console_socket, preserve_fds=preserve_fds,
               start=True)
        return 0
    import ctypes

    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the init comes back to us
    terminal = bool((_oci.load(bundle).get("process") or {}).get("terminal"))
    listener = None
    if terminal and not console_socket:
        import socket
        import tempfile

        sockdir = tempfile.mkdtemp(prefix="fastcontain-oci-console-")
        console_socket = os.path.join(sockdir, "sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(console_socket)
        listener.listen(1)
    try:
        record = create(root, id, bundle, pid_file=pid_file, console_socket=console_socket,
                        preserve_fds=preserve_fds, start=True)
        pid = int(record["pid"])
        pidfd = os.pidfd_open(pid)
        forwarded = {}

        def forward(signum: int, _frame: Any) -> None:
            try:
                signal.pidfd_send_signal(pidfd, signum)
            except ProcessLookupError:
                pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            forwarded[sig] = signal.signal(sig, forward)
        if listener is not None:
            _proxy_terminal(listener, pidfd)
        code = _reap(pid)
        os.close(pidfd)
    finally:
        if listener is not None:
            listener.close()
            os.unlink(console_socket or "")
            os.rmdir(os.path.dirname(console_socket or ""))
        try:
            delete(root, id, force=True)
        except ContainerError:
            pass
    return code


def _reap(pid: int) -> int:
    while True:
        try:
            got, status_ = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if got == pid:
            code = os.waitstatus_to_exitcode(status_)
            return 128 - code if code < 0 else code


def _proxy_terminal(listener: Any, pidfd: int) -> None:
    """Copy our stdin to the container's terminal and its output to our stdout until it exits."""
    import selectors
    import socket
    import termios
    import tty

    conn, _ = listener.accept()
    with conn:
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(master, selectors.EVENT_READ, "out")
            sel.register(pidfd, selectors.EVENT_READ, "exit")
            try:
                sel.register(0, selectors.EVENT_READ, "in")
            except (ValueError, OSError):
                pass
            done = False
            while not done:
                for key, _ in sel.select():
                    if key.data == "in":
                        data = os.read(0, 65536)
                        if data:
                            os.write(master, data)
                        else:
                            sel.unregister(0)
                    elif key.data == "out":
                        try:
                            data = os.read(master, 65536)
                        except OSError:  # EIO: the last holder of the terminal is gone
                            data = b""
                        if data:
                            os.write(1, data)
                        else:
                            sel.unregister(master)
                    else:
                        done = True
            os.set_blocking(master, False)
            try:
                while data := os.read(master, 65536):
                    os.write(1, data)
            except OSError:
                pass
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
