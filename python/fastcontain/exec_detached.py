"""exec into a container another process started: `fastcontain exec`, Detached.exec_run
and `fastcontain-oci exec`.

A detached container's init belongs to its supervisor (or, for an OCI container, to
the engine's subreaper); the exec'ing process needs none of them. It opens a pidfd of
its own on the pid in the container's record and checks that it names the recorded
process: a pid is free for reuse once its process is reaped, so /proc/PID/stat's start
time must be the recorded one *after* the pidfd is open (a pidfd keeps naming the
process it was opened on; if that process is the one /proc shows then, with the
recorded start time, it is the container's init). Then the same exec as
Container.exec_run (fastcontain.exec: one setns on the pidfd, a CLONE_PARENT fork into
the pid namespace, born in the container's cgroup), so the exec'd process is the
caller's child and its exit status the caller's to read.

The process half of the container's spec (env, cwd, credentials, capabilities,
no_new_privs, rlimits, CPUs, namespaces, user namespace) is written at creation to
`exec.json` in its state folder, and the seccomp profile it was created with is kept
there (`seccomp.json`, when it came from a file): an exec gets exactly the container's
settings, whatever changed on the host since.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Mapping

from . import state as _state
from .errors import ContainerError
from .exec import Target

if TYPE_CHECKING:
    from .config import Config

BASE_NAME = "exec.json"
PROFILE_NAME = "seccomp.json"
# the keys of a container's spec an exec takes (fastcontain.exec.exec_spec replaces the rest)
PROCESS_KEYS = ("env", "cwd", "uid", "gid", "groups", "umask", "namespaces", "cpus", "capabilities",
                "no_new_privileges", "rlimits", "oom_score_adj")


def seccomp_profile(config: Config) -> str | None:
    """The profile a container of `config` gets (as security.process_part chooses it):
    None for the default, "unconfined", or a profile file's path."""
    from . import security

    opt = security.SecurityOpt.parse(config.security_opt)
    return opt.seccomp if opt.seccomp is not None else ("unconfined" if config.privileged else None)


def write_base(paths: _state.Paths, spec: Mapping[str, Any], config: Config) -> None:
    """At creation: the process half of the container's spec, for execs from any process."""
    base: dict[str, Any] = {k: spec.get(k) for k in PROCESS_KEYS}
    if spec.get("netns_fd") is not None and "net" not in base["namespaces"]:
        base["namespaces"] = list(base["namespaces"]) + ["net"]  # network="container:NAME": joined by fd
    if spec.get("userns"):
        base["userns"] = {"uid_map": spec["userns"]["uid_map"], "gid_map": spec["userns"]["gid_map"]}
    profile = seccomp_profile(config)
    if profile not in (None, "default", "unconfined"):
        shutil.copyfile(str(profile), os.path.join(paths.dir, PROFILE_NAME))
        profile = PROFILE_NAME
    base["seccomp_profile"] = profile
    base["image"] = config.image
    tmp = os.path.join(paths.dir, BASE_NAME + ".tmp")
    with open(tmp, "w") as f:
        json.dump(base, f)
    os.replace(tmp, os.path.join(paths.dir, BASE_NAME))


def read_base(paths: _state.Paths, privileged: bool = False) -> tuple[dict[str, Any], str | None]:
    """(the spec's process half, ready for the native core; the image's name)."""
    from . import security

    try:
        with open(os.path.join(paths.dir, BASE_NAME)) as f:
            base: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise ContainerError(f"container {paths.id} has no {BASE_NAME}: it was made by an older fastcontain, "
                             "exec cannot know its settings") from None
    image = base.pop("image", None)
    profile = base.pop("seccomp_profile", None)
    if profile == PROFILE_NAME:
        profile = os.path.join(paths.dir, PROFILE_NAME)
    base["rlimits"] = [tuple(r) for r in base.get("rlimits") or ()]
    if base.get("userns"):
        base["userns"] = {k: [tuple(m) for m in v] for k, v in base["userns"].items()}
    base["rootfs"] = "/"  # joined, not made: the mount namespace brings the root
    base["default_mounts"] = False
    if privileged:  # docker exec --privileged: every capability, no filter, privileges may grow
        base.update(capabilities=None, no_new_privileges=False, seccomp=None)
    else:
        base["seccomp"] = security.seccomp_for(profile, base.get("capabilities") or ())
    return base, image


def open_init(paths: _state.Paths, record: Mapping[str, Any]) -> int:
    """A pidfd on the container's init, checked to be the recorded process."""
    from .oci_runtime import _start_time

    pid, start = record.get("pid"), record.get("pid_start")
    if not pid or start is None:
        raise ContainerError(f"container {paths.id}'s record has no pid and start time to find its init by")
    try:
        pidfd = os.pidfd_open(int(pid))
    except ProcessLookupError:
        raise ContainerError(f"container {paths.id} is not running (its init, pid {pid}, is gone)") from None
    now = _start_time(int(pid))
    if now is None or now[0] != start or now[1] in ("Z", "X"):
        os.close(pidfd)
        raise ContainerError(f"container {paths.id} is not running (pid {pid} is no longer its init)")
    return pidfd


def target(paths: _state.Paths, record: Mapping[str, Any], status: str, stack: ExitStack,
           privileged: bool = False, base: dict[str, Any] | None = None) -> Target:
    """The Target of a recorded container whose status is `status`; what it opens goes on
    `stack`. `base`: the process half of its spec (default: its exec.json)."""
    from .oci_runtime import OciCgroup

    if status == "paused":
        raise ContainerError(f"container {paths.id} is paused: unpause it before exec")
    if status != "running":
        hint = ": start it first" if status == "created" else ""
        raise ContainerError(f"container {paths.id} is {status}: exec needs a running container{hint}")
    image = None
    if base is None:
        base, image = read_base(paths, privileged)
    pidfd = open_init(paths, record)
    stack.callback(os.close, pidfd)
    cgroup = OciCgroup(dict(record.get("cgroup_dirs") or {}))
    unified = cgroup.dirs.get("unified")
    if unified:
        try:
            cgroup.fd = os.open(unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerError(f"container {paths.id} is not running (its cgroup {unified} is gone)") from None
        stack.callback(cgroup.close)
    return Target(paths.id, pidfd, base, image, cgroup)


def exec_run(detached: Any, cmd: Any, *, privileged: bool = False, **options: Any) -> Any:
    """Detached.exec_run: Container.exec_run's arguments and results."""
    from . import exec as _exec

    stack = ExitStack()
    try:
        detached.reload()
        t = target(detached.paths, detached._record, detached.status, stack, privileged)
    except BaseException:
        stack.close()
        raise
    return _exec.run(t, cmd, stack=stack, **options)
