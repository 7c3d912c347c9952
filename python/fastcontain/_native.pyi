"""The native spawn core (rust/src/py.rs). Private: use fastcontain.run / Container.

One typed value crosses the boundary: the spec, a dict compiled by
fastcontain.spec from validated config. Its keys:

  argv          list[str]        argv[0] is searched in the container's PATH when it has no '/'
  env           list[str]        "KEY=VALUE"; PATH (if present) is also used for the argv[0] search
  cwd           str              absolute path inside the container
  rootfs        str              absolute host directory that becomes / (the overlay is mounted on it)
  overlay       dict | None      {"lower": [str, ...] (topmost first), "upper": str, "work": str};
                                 mounted in the child's own mount namespace, so it dies with it
  readonly_rootfs bool           remount / read-only after the mounts
  namespaces    list[str]        subset of "mount", "pid", "uts", "ipc", "net", "cgroup"; "mount" is required
  hostname      str | None       needs "uts"
  default_mounts bool            /proc, /sys (ro), /dev (tmpfs + nodes, devpts, shm, mqueue, links)
  sysfs_rw      bool             /sys mounted writable (privileged); default False
  device_nodes  list[tuple[str, int, int, int, int, int]]  (path under /dev, st_mode, major, minor, uid, gid):
                                 made in the fresh /dev with mknod (privileged; not with userns)
  mounts        list[dict]       applied after the defaults, in order:
                                 {"source": str, "target": str (absolute, in the container),
                                  "type": str ("bind", "tmpfs", "proc", ...),
                                  "options": list[str] (mount(8) names: "ro", "rbind", "nosuid", "mode=755", ...)}
                                 a bind of a file gets a file as its mount point, a directory a directory
  uid, gid      int
  groups        list[int]        supplementary groups
  umask         int              default 0o022
  stdio         list[int]        three host fds made the container's 0, 1, 2; -1 inherits the caller's
  cpus          list[int] | None sched_setaffinity before exec
  cgroup_fd     int | None       an open cgroup v2 directory: the child is born in it (CLONE_INTO_CGROUP)
  cgroup_procs_fds list[int]     open cgroup.procs or tasks files of v1 controllers: the child writes "0" to each
                                 (joins them itself) before making its cgroup namespace; the caller
                                 closes them after the spawn
  netns_fd      int | None       a network namespace to join with setns first, before any mount, instead
                                 of making one ("net" in namespaces or not): a pool's made ahead (lo up,
                                 perhaps eth0 configured) or another container's /proc/PID/ns/net; the
                                 caller closes its fd after the spawn
  capabilities  list[str] | None the capabilities kept in the bounding, permitted and effective sets
                                 (ambient cleared, inheritable empty); None keeps the caller's (privileged)
  no_new_privileges bool         prctl(PR_SET_NO_NEW_PRIVS) before execve
  seccomp       SeccompProgram | None  from compile_seccomp(), loaded last before execve
                                 (before the capabilities are dropped when no_new_privileges is off)
  masked_paths  list[str]        hidden: /dev/null over files, an empty read-only tmpfs over directories
  readonly_paths list[str]       bound read-only onto themselves; missing paths are skipped
  rlimits       list[tuple[str, int, int]]  ("RLIMIT_NOFILE" or "nofile", soft, hard)
  oom_score_adj int | None       written to /proc/self/oom_score_adj
  userns        dict | None      a new user namespace, made with the others (CLONE_NEWUSER):
                                 {"uid_map": [(inside, outside, count), ...], "gid_map": [...] (0 mapped),
                                  "own": [host paths chowned to root's outside ids before clone],
                                  "traverse": [host directories given o+x before clone],
                                  "overlay_by": "parent-idmap" (the parent builds the overlay over
                                  idmapped clones of the layers and sends it) | "parent" (over the
                                  layers as given) | "child" (default: the child mounts it, userxattr),
                                  "setgroups_deny": bool (write "deny" to setgroups first; rootless),
                                  "map_helpers": [newuidmap, newgidmap] to write the maps (rootless
                                  subuid ranges) or [] (the parent writes them)};
                                 the parent writes the maps while the child waits, before its first
                                 mount; the child then becomes 0:0 inside and binds /dev's nodes
  interface     dict | None      {"name": str, "address": str, "prefix": int, "gateway": str | None}:
                                 an interface the caller creates in the child's netns while it waits
                                 (a veth end); after start the child sets its IPv4 address, brings it
                                 up and adds the default route (ioctls). Needs wait_for_start
  init          bool             a minimal init as PID 1 (like tini): it forks the command, reaps every
                                 zombie, forwards signals to it and exits with its status (128+N when
                                 it died of signal N); execve errors are still reported as SpawnError
  tty           bool             stdio is a terminal's slave side: the command gets a new session
                                 (setsid) with fd 0 as its controlling terminal (TIOCSCTTY); with init,
                                 the command is made the terminal's foreground process group
  join          int | None       exec: a pidfd of a running container's init. The process joins that
                                 container's `namespaces` (setns on the pidfd, all at once) and is then
                                 forked into its pid namespace; rootfs, overlay, mounts, hostname and the
                                 paths are not used (the mount namespace gives root and cwd), everything
                                 else (argv, env, cwd, credentials, capabilities, seccomp, rlimits,
                                 stdio, tty, cpus, cgroup_fd) applies to the exec'd process
  wait_for_start bool            the child stops after its set-up, before affinity, credentials and
                                 execve, until Child.start(); lets the caller place it in v1 cgroups
                                 and wire its network between create and start
  pause_before_pivot bool        (needs wait_for_start) the child also stops after its mounts, before
                                 pivot_root (the old root still there), until Child.resume_setup():
                                 the OCI createRuntime and createContainer hooks run there. Costs
                                 one pipe and one round trip, only when asked
  hold_mount_ns bool             take a descriptor of the container's mount namespace at the clone
                                 (PIDFD_GET_MNT_NAMESPACE, Linux 6.11; nothing held before), so that
                                 the init's exit does not tear its mounts down before we see it:
                                 Child.close() hands it to a native thread that closes it; see
                                 wait_mount_ns_closed

Errors: failures of the child's steps raise fastcontain.errors.SpawnError
(step, errno, path set); a malformed spec raises fastcontain.errors.ConfigError.
"""

from typing import Any, Mapping, Sequence, final

__all__ = ['spawn', 'plan_mounts', 'Child', 'SeccompProgram', 'compile_seccomp', 'remove_entries', 'make_state_dir', 'make_cgroup_dir', 'netns_peek',
           'wait_mount_ns_closed', 'probe_idmap', 'CAPABILITIES', 'STEPS']

def spawn(spec: Mapping[str, Any]) -> Child:
    """clone3 a container from spec. The GIL is released throughout.

    With wait_for_start, returns once the child finished its set-up and waits (with
    pause_before_pivot: once it has its mounts and waits before pivot_root);
    otherwise returns once execve succeeded. Raises SpawnError naming the step.
    With join, the Child returned is the exec'd process (a child of the caller)."""

@final
class Child:
    @property
    def pid(self) -> int: ...
    @property
    def pidfd(self) -> int:
        """A pidfd of the container's init (readable when it exits); -1 once closed."""
    @property
    def clone_method(self) -> str:
        """'clone3', 'clone3+cgroup' (CLONE_INTO_CGROUP) or 'clone' (fallback without clone3)."""
    @property
    def returncode(self) -> int | None:
        """Like subprocess: exit status, or -N for death by signal N; None while running."""
    @property
    def usage(self) -> dict[str, float] | None:
        """Once reaped: 'utime', 'stime' (CPU seconds) and 'maxrss' (peak resident bytes) from
        waitid's rusage, which covers the process and every descendant it waited for."""
    @property
    def started(self) -> bool: ...
    @property
    def timings(self) -> dict[str, int]:
        """Nanoseconds the parent spent in: 'plan', 'clone', 'setup' (until ready/exec), 'start';
        after a spawn straight to execve (which shares memory with the child) also the
        child's own steps, timestamped by the child: 'child_clone' (until it ran),
        'child_mounts', 'child_pivot', 'child_network', 'child_creds' (until right before
        execve) and 'child_exec' (execve until the parent woke)."""
    @property
    def paused_before_pivot(self) -> bool:
        """True while a child spawned with pause_before_pivot waits before pivot_root."""
    def resume_setup(self) -> None:
        """Let a child paused before pivot_root go on; returns once it is ready (waits for
        start). Raises SpawnError naming the step that failed. GIL released."""
    def start(self) -> None:
        """Release a child spawned with wait_for_start; returns once execve succeeded. GIL released."""
    def wait(self, timeout: float | None = None) -> int | None:
        """Reap the child; returns returncode, or None if timeout (seconds) passed. GIL released."""
    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None:
        """pidfd_send_signal; a no-op once the child is reaped."""
    def close(self) -> None:
        """Kill (SIGKILL) and reap the child if still there; close the descriptors (a held mount
        namespace's on the native closer thread). Idempotent."""
    def release(self) -> None:
        """Close the descriptors without killing or reaping a started child: it goes on, and
        is reaped by whoever it is reparented to once we exit (exec --detach). Idempotent."""

@final
class SeccompProgram:
    """A compiled seccomp profile: a stack of BPF filters, shared by every container."""
    @property
    def skipped(self) -> list[str]:
        """Syscall names the profile gave that x86_64 does not have (ignored, as libseccomp does)."""
    @property
    def sizes(self) -> list[int]:
        """BPF instructions per filter, in loading order."""
    def bpf(self) -> list[bytes]:
        """Each filter as struct sock_filter bytes (native order), in loading order."""

def compile_seccomp(
    filters: Sequence[tuple[str, int, str, int, Mapping[str, Sequence[Sequence[tuple[int, str, int, int]]]]]],
) -> SeccompProgram:
    """Compile filters (default action, its errno, matched action, its errno, {syscall: rules}).
    Actions: allow, errno, kill_process, kill_thread, trap, log. A syscall with no rules matches
    always; otherwise when all (arg index, op, value, mask) of any one rule hold. Ops: eq, ne,
    lt, le, gt, ge, masked_eq (value compared with arg & mask). The kernel runs every filter and
    keeps the strictest action; among equal actions, the later filter's errno."""

def probe_idmap(dir: str, uid_map: str, gid_map: str) -> None:
    """Whether layers in dir's filesystem can be idmapped (open_tree + mount_setattr through a
    short-lived user namespace with these maps) and stacked by an overlay built with fsmount;
    raises SpawnError naming the syscall and errno that refused."""

def plan_mounts(spec: Mapping[str, Any]) -> list[tuple[str, str, str, int, str]]:
    """The mount table the child would carry out, as (source, target, fstype, flags, data).
    For tests and debugging; performs no syscall."""

CAPABILITIES: list[str]
"""Every capability name, by number (CAP_CHOWN is 0)."""

STEPS: list[str]
"""The names of the child's steps, in order (the 'step' of a SpawnError)."""

def wait_mount_ns_closed() -> None:
    """Return once every mount namespace held (hold_mount_ns) by a Child closed so far is
    closed, its mounts gone (an overlay on a state folder about to be removed). GIL released."""

def make_state_dir(
    root_lock: str, dir: str, lock: str, subdirs: Sequence[tuple[str, int]]
) -> tuple[int, tuple[int, str] | None]:
    """Under `root_lock` (flock LOCK_SH), make `dir` (0700) and its `lock` file, held
    with LOCK_EX: its descriptor is returned; then each (path, mode) of `subdirs`. The
    second item is None, or (errno, path) of the subfolder that failed (`dir` is the
    caller's to remove then). Raises OSError (errno, message, path) before the lock is
    held, leaving nothing it made. GIL released."""

def make_cgroup_dir(
    dir: str, owner: tuple[str, bytes] | None, prog: int
) -> tuple[int, tuple[str, int] | None]:
    """Make the cgroup v2 directory `dir`, set the xattr owner (name, value) on it when
    given (a refusal is ignored), open it (O_DIRECTORY, close-on-exec) and attach the
    loaded device program `prog` (BPF_PROG_ATTACH, BPF_F_ALLOW_MULTI; negative: none).
    (fd, None), or (-1, (part, errno)) with the directory removed again, part "mkdir",
    "open" or "attach". GIL released."""

def netns_peek(fd: int) -> tuple[bytes, bytes, bytes, int]:
    """What the network namespace `fd` holds, read from inside it by one native thread
    (setns in, then back to the process's namespace): /proc/thread-self/net/dev,
    sockstat and sockstat6 (b"" without IPv6), and lo's flags (SIOCGIFFLAGS). Raises
    OSError naming the step that failed. GIL released."""

def remove_entries(dir: str, entries: Sequence[tuple[str, bool]]) -> bool:
    """Remove `dir`'s known entries ((relative path, is a directory), deepest first, a
    missing one skipped), then `dir`; False when one cannot go (what is left stays).
    True when `dir` is gone, or was. GIL released."""
