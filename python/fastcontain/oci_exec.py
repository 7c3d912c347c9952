"""`fastcontain-oci exec`: runc's exec on a running OCI container.

    exec [--process P.json] [--detach] [--pid-file F] [--tty] [--console-socket S]
         [--cwd DIR] [--env K=V]... [--user UID[:GID]] ID [CMD...]

The process is the OCI `process` object of --process (what conmon and containerd's shim
pass), or the container's own config.json process with CMD, --cwd, --env, --user and
--tty laid over it, as runc does. It joins the container's namespaces (those it made and
those it joined by path) through a pidfd on its init checked against the record
(fastcontain.exec_detached), is born in its cgroup, and gets the container's seccomp
filter (the one kept at create) with its own capabilities, rlimits and credentials.

It is this command's child. Without --detach the command waits, passes on the signals
it gets, and exits with its status (128+N for signal N); a terminal without
--console-socket is relayed to ours. With --detach the command returns once the process
has exec'd (writing --pid-file): the process is reparented to the engine's child
subreaper (conmon, containerd-shim), which waits for it, as with runc. With --tty and
--console-socket the terminal's master goes to the engine over the socket (SCM_RIGHTS),
as at create.
"""

from __future__ import annotations

import os
import signal
from contextlib import ExitStack
from typing import Any

from .errors import ContainerError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def process(config: dict[str, Any], path: str | None, args: list[str], *, cwd: str | None, env: list[str],
            tty: bool, user: str | None) -> dict[str, Any]:
    """The exec's OCI process: --process P.json, or config.json's process with the command
    line's pieces laid over it (runc's newProcess)."""
    from . import oci

    if path:
        proc = oci.process_json(path, [], cwd=None, env=[], tty=False, user=None)
        if not isinstance(proc, dict) or not proc:
            raise oci.OciError("--process", f"{path} does not hold a process object")
        return _exact_caps(dict(proc, terminal=bool(proc.get("terminal")) or tty))
    if not args:
        raise oci.OciError("exec", "give a command (or --process P.json)")
    proc = dict(config.get("process") or {})
    proc["args"] = list(args)
    proc["terminal"] = tty
    proc.pop("consoleSize", None)
    if cwd:
        proc["cwd"] = cwd
    if env:
        from .spec import merge_env

        proc["env"] = merge_env(proc.get("env") or [], env)
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise oci.OciError("--user", f"{user!r}: expected UID[:GID] as numbers")
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    return _exact_caps(proc)


def _exact_caps(proc: dict[str, Any]) -> dict[str, Any]:
    """For a user other than root without ambient or inheritable capabilities, the
    effective and permitted sets asked for are what execve clears anyway (a process that
    is not root keeps only its ambient set, and what a file's own capabilities grant,
    which the bounding set limits either way): runc's exec of such a process.json
    (podman's exec -u) ends with the bounding set alone, which is what the native core
    gives. Said so here rather than refused; with ambient or inheritable sets, the
    translation still refuses them."""
    caps = proc.get("capabilities")
    user: dict[str, Any] = proc["user"] if isinstance(proc.get("user"), dict) else {}
    if isinstance(caps, dict) and user.get("uid") not in (None, 0) and not caps.get("ambient") \
            and not caps.get("inheritable"):
        return dict(proc, capabilities={"bounding": list(caps.get("bounding") or [])})
    return proc


def _base(paths: Any, record: dict[str, Any], proc: dict[str, Any], source: str) -> tuple[dict[str, Any], Any]:
    """The process half of the spec (and the Plan carrying its terminal settings)."""
    from . import cgroups, oci, security

    try:
        has_unified = cgroups.Host.detect().unified is not None
    except Exception:
        has_unified = False
    bundle = record["bundle"]
    container = oci.translate(bundle, oci.load(bundle), has_unified)
    plan = oci.Plan(bundle=bundle, spec={})
    try:
        oci._process(proc, plan)
    except oci.OciError as e:
        e.args = (f"the exec's process ({source}): {e.field}: {e.reason}",)
        raise
    base = dict(plan.spec)
    base["namespaces"] = list(container.spec["namespaces"]) + [kind for kind, _ in container.joins]
    if container.spec.get("userns"):
        u = container.spec["userns"]
        base["userns"] = {"uid_map": list(u["uid_map"]), "gid_map": list(u["gid_map"])}
    base.update(rootfs="/", default_mounts=False, cpus=None, seccomp=None)
    profile = os.path.join(paths.dir, "seccomp.json")  # the container's filter, kept at create
    if container.seccomp is not None and os.path.exists(profile):
        base["seccomp"] = security.compile_profile(profile, frozenset(base.get("capabilities") or ()))
    elif container.seccomp is not None:
        raise ContainerError(f"container {paths.id} has a seccomp filter but no copy of it in {paths.dir}")
    return base, plan


def exec_(root: str, id: str, *, process_path: str | None, args: list[str], cwd: str | None, env: list[str],
          tty: bool, user: str | None, detach: bool, pid_file: str | None, console_socket: str | None,
          preserve_fds: int = 0) -> int:
    from . import exec as _exec
    from . import exec_detached
    from . import oci
    from . import oci_runtime as rt

    if preserve_fds:
        raise oci.OciError("--preserve-fds", "passing extra descriptors to an exec'd process is not supported yet")
    p, record = rt.load(root, id)
    proc = process(oci.load(record["bundle"]), process_path, args, cwd=cwd, env=env, tty=tty, user=user)
    if proc.get("terminal") and detach and not console_socket:
        raise oci.OciError("--tty", "a terminal for a detached exec needs --console-socket (nothing else would hold it)")
    with ExitStack() as stack:
        base, plan = _base(p, record, proc, process_path or "the command line over config.json's process")
        target = exec_detached.target(p, record, rt.status(p, record), stack, base=base)
        argv = list(base["argv"])
        master = None
        if plan.terminal and console_socket:
            slave = rt._console(console_socket, plan.console_size)
            stdio = [slave, slave, slave]
        elif plan.terminal:
            from . import stdio as _stdio

            size = _stdio.get_winsize(1) or _stdio.get_winsize(0)
            master, slave = _stdio.open_pty(size)
            stack.callback(os.close, master)
            stdio = [slave, slave, slave]
        else:
            slave, stdio = None, [-1, -1, -1]  # ours: the engine's pipes
        from .cli_exec import Forward

        forward = None if detach else Forward(stack, FORWARDED)
        try:
            child = _exec.spawn(target, argv, user=None, env=[], workdir=None, tty=plan.terminal, stdio=stdio)
        finally:
            if slave is not None:
                os.close(slave)
        if pid_file:
            try:
                rt.write_pid_file(pid_file, child.pid)
            except OSError:
                child.close()
                raise
        if detach:
            child.release()  # reparented to the engine's subreaper when we exit
            return 0
        stack.callback(child.close)
        assert forward is not None
        forward.to(child)
        if master is not None:
            from . import stdio as _stdio

            with _stdio.raw_terminal(0):
                _stdio.relay_terminal(child.pidfd, lambda: child.wait() is not None, master, lambda: None,
                                      lambda: None, in_fd=0, out_fd=1, size_from=1 if os.isatty(1) else None)
        rc = child.wait()
        assert rc is not None
        return 128 - rc if rc < 0 else rc
