//! The parent's side of a spawn: pipes, one clone3, the child's status, and
//! the handle that waits for, signals and reaps the container's init.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libc::c_int;

use crate::child;
use crate::errors::{Record, SpawnError, Step};
use crate::plan::{Describe, Plan, UsernsPlan};
use crate::sys;
use crate::timing;

/// How the child was created, for the record (and for the benches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMethod {
    Clone3,
    /// clone3 with CLONE_INTO_CGROUP: born in its cgroup.
    Clone3Cgroup,
    /// clone(2), where clone3 is missing; the cgroup is joined by a cgroup.procs write.
    Clone,
}

impl CloneMethod {
    pub fn name(self) -> &'static str {
        match self {
            CloneMethod::Clone3 => "clone3",
            CloneMethod::Clone3Cgroup => "clone3+cgroup",
            CloneMethod::Clone => "clone",
        }
    }
}

/// Nanoseconds the parent spent in each part of a spawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub plan: u64,
    pub clone: u64,
    pub setup: u64,
    pub start: u64,
    /// The child's own steps (timing::NAMES) and its execve until the parent
    /// woke, when the child shared our memory (the vfork-style spawn).
    pub child: Option<([u64; timing::COUNT], u64)>,
}

struct State {
    /// Read end of the error pipe, until execve is confirmed.
    err_r: Option<OwnedFd>,
    /// Write end of the sync pipe, until start.
    sync_w: Option<OwnedFd>,
    /// Write end of the hooks pipe while the child waits before pivot_root.
    pivot_w: Option<OwnedFd>,
    started: bool,
    returncode: Option<i32>,
    /// From waitid when it was reaped: CPU time and peak memory of it and of what it reaped.
    usage: Option<sys::Usage>,
    timings: Timings,
}

/// A spawned container's init process.
pub struct Child {
    pid: libc::pid_t,
    /// Shared so that a waiter keeps the descriptor alive while it polls unlocked.
    pidfd: Mutex<Option<Arc<OwnedFd>>>,
    method: CloneMethod,
    state: Mutex<State>,
    describe: Describe,
    /// The container's mount namespace, held past the init's exit (spec.hold_mount_ns)
    /// until the caller takes it (take_mount_ns) or the Child goes.
    mount_ns: Mutex<Option<OwnedFd>>,
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by the kernel to us and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A pipe whose two ends are >= 3, so they never collide with the stdio the
/// child sets up (the caller may have closed its own 0, 1, 2).
fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (r, w) = sys::pipe_cloexec().map_err(|e| {
        SpawnError::new(Step::Pipe, e, None, "creating the status pipe failed".into())
    })?;
    let (r, w) = (owned(r), owned(w));
    let lift = |fd: OwnedFd| -> Result<OwnedFd, SpawnError> {
        if fd.as_raw_fd() >= 3 {
            return Ok(fd);
        }
        // SAFETY: plain integers.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if n < 0 {
            return Err(SpawnError::last_os(Step::Pipe, "moving the status pipe above stdio"));
        }
        Ok(owned(n))
    };
    Ok((lift(r)?, lift(w)?))
}

fn elapsed_ns(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// Clone the container's init from `plan` and return once it is ready
/// (waiting for start) or has exec'd. `plan_ns` is what building the plan cost.
pub fn spawn(plan: Plan, describe: Describe, plan_ns: u64) -> Result<Child, SpawnError> {
    let (err_r, err_w) = pipe()?;
    let (sync_r, sync_w) = if plan.wait_for_start {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    // OCI hooks: the child stops after its mounts, before pivot_root, until told.
    let (pivot_r, pivot_w) = if plan.pause_before_pivot {
        let (r, w) = pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };

    // A user namespace: the container's root gets its folders, and a pipe on which the
    // child waits until its uid_map and gid_map are written.
    let (map_r, map_w) = match &plan.userns {
        Some(u) => {
            prepare_userns(u)?;
            let (r, w) = socketpair()?;
            (Some(r), Some(w))
        }
        None => (None, None),
    };

    // The common case: the child runs straight to execve (see below).
    let vfork = sync_r.is_none() && map_r.is_none() && !plan.init && plan.join.is_none();
    let t_clone = Instant::now();
    let t0 = sys::monotonic_ns();
    let mut mount_ns: Option<OwnedFd> = None;
    let (pid, pidfd, method, sync_r, sync_w) = {
        let mut pidfd: c_int = -1;
        let mut args = sys::CloneArgs {
            flags: plan.clone_flags,
            pidfd: &mut pidfd as *mut c_int as u64,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: plan.cgroup_fd.unwrap_or(0).max(0) as u64,
            ..Default::default()
        };
        let method = if plan.cgroup_fd.is_some() { CloneMethod::Clone3Cgroup } else { CloneMethod::Clone3 };
        let fds = child::Fds {
            err_w: err_w.as_raw_fd(),
            sync_r: sync_r.as_ref().map(|f| f.as_raw_fd()),
            map_r: map_r.as_ref().map(|f| f.as_raw_fd()),
            pivot_r: pivot_r.as_ref().map(|f| f.as_raw_fd()),
            parent_ends: [
                err_r.as_raw_fd(),
                sync_w.as_ref().map_or(-1, |f| f.as_raw_fd()),
                map_w.as_ref().map_or(-1, |f| f.as_raw_fd()),
                pivot_w.as_ref().map_or(-1, |f| f.as_raw_fd()),
            ],
        };
        // Signals stay blocked across the clone so that no handler of ours runs in the child.
        let old_mask = sys::block_all_signals();
        // An init never execs (it waits for the command), an exec's first
        // process forks again: both need a copy of our memory, not ours.
        let r = if vfork {
            // The common case: the child runs straight to execve. Share our memory
            // and sleep until its exec (CLONE_VM | CLONE_VFORK), as posix_spawn does:
            // no page tables copied, no copy-on-write faults in the child.
            clone_vfork(&mut args, &plan, &fds)
        } else {
            // SAFETY: the child side only calls child::run, which is async-signal-safe and ends in execve or _exit.
            unsafe { sys::clone3(&mut args) }
        };
        let r = match r {
            Ok(0) => child::run(&plan, &fds),
            Ok(pid) => {
                // First, while the child (exec'd already when it shared our memory) is
                // surely alive: a kernel before 6.11 (ENOTTY) or a child gone (ESRCH) holds nothing.
                if plan.hold_mount_ns {
                    mount_ns = sys::pidfd_mount_ns(pidfd).ok().map(owned);
                }
                Ok((pid, method, sync_r, sync_w))
            }
            Err(libc::ENOSYS) if map_r.is_none() && pivot_r.is_none() => {
                sys::set_signal_mask(&old_mask);
                return clone_fallback(plan, describe, plan_ns, err_r, err_w, sync_r, sync_w, t_clone);
            }
            Err(e) => Err(e),
        };
        sys::set_signal_mask(&old_mask);
        match r {
            Ok((pid, method, sync_r, sync_w)) => (pid, owned(pidfd), method, sync_r, sync_w),
            Err(e) => return Err(clone_error(&plan, e)),
        }
    };
    drop(map_r);
    drop(pivot_r);
    if let (Some(u), Some(w)) = (&plan.userns, map_w) {
        if let Err(e) = write_maps(pid, u, w) {
            kill_and_reap(&pidfd);
            return Err(e);
        }
    }
    let steps = plan.marks.steps(t0).map(|s| (s, sys::monotonic_ns().saturating_sub(plan.marks.last())));
    let joining = plan.join.is_some();
    drop(plan);
    if joining {
        return finish_exec(pidfd, method, err_r, err_w, describe, plan_ns, t_clone);
    }
    let child = finish(pid, pidfd, method, err_r, err_w, sync_r, sync_w, pivot_w, describe, plan_ns, t_clone, vfork)?;
    child.lock().timings.child = steps;
    *child.mount_ns.lock().unwrap_or_else(|p| p.into_inner()) = mount_ns;
    Ok(child)
}

/// The parent's side of an exec: the first child joins the namespaces,
/// forks the process that execs (our child, through CLONE_PARENT), sends its
/// pid and exits. Read every record until EOF (the command exec'd, or
/// failed and exited): the pid and a failure may come in either order.
fn finish_exec(
    first: OwnedFd,
    method: CloneMethod,
    err_r: OwnedFd,
    err_w: OwnedFd,
    describe: Describe,
    plan_ns: u64,
    t_clone: Instant,
) -> Result<Child, SpawnError> {
    let clone_ns = elapsed_ns(t_clone);
    drop(err_w);
    let t_setup = Instant::now();
    let mut pid: Option<libc::pid_t> = None;
    let mut failure: Option<SpawnError> = None;
    loop {
        let mut buf = [0u8; Record::SIZE];
        match sys::read_full(err_r.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) if n == Record::SIZE => {
                let rec = Record::from_bytes(&buf);
                if rec.step == Record::PID {
                    pid = Some(rec.index as libc::pid_t);
                } else if failure.is_none() {
                    failure = Some(describe.error(rec));
                }
            }
            Ok(n) => {
                failure.get_or_insert(SpawnError::new(
                    Step::ReadStatus,
                    0,
                    None,
                    format!("the exec sent a short status ({n} of {} bytes)", Record::SIZE),
                ));
                break;
            }
            Err(e) => {
                failure.get_or_insert(SpawnError::new(Step::ReadStatus, e, None, "reading the exec's status failed".into()));
                break;
            }
        }
    }
    drop(err_r);
    // the first process exits right after sending the pid
    let _ = sys::waitid_pidfd(first.as_raw_fd(), false);
    drop(first);
    let Some(pid) = pid else {
        return Err(failure.unwrap_or_else(|| {
            SpawnError::new(Step::ReadStatus, 0, None, "the exec's first process died without reporting".into())
        }));
    };
    // It is our unreaped child, so its pid cannot be reused before we open the pidfd.
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => owned(fd),
        Err(e) => {
            // SAFETY: plain integers; pid is our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(failure.unwrap_or_else(|| {
                SpawnError::new(Step::PidfdOpen, e, None, format!("pidfd_open of the exec'd process {pid} failed"))
            }));
        }
    };
    if let Some(f) = failure {
        kill_and_reap(&pidfd);
        return Err(f);
    }
    Ok(Child {
        pid,
        pidfd: Mutex::new(Some(Arc::new(pidfd))),
        method,
        state: Mutex::new(State {
            err_r: None,
            sync_w: None,
            pivot_w: None,
            started: true,
            returncode: None,
            usage: None,
            timings: Timings { plan: plan_ns, clone: clone_ns, setup: elapsed_ns(t_setup), ..Default::default() },
        }),
        describe,
        mount_ns: Mutex::new(None),
    })
}

/// The child's stack for a vfork-style spawn: the set-up needs little (a
/// path buffer of MAX_PATH and a few frames), this leaves ample room.
const CHILD_STACK: usize = 256 * 1024;

struct VforkArg<'a> {
    plan: &'a Plan,
    fds: &'a child::Fds,
}

extern "C" fn vfork_entry(arg: *mut libc::c_void) -> ! {
    // SAFETY: arg points to the VforkArg on the parent's stack, alive because
    // the parent sleeps (CLONE_VFORK) until this process execs or exits.
    let a = unsafe { &*(arg as *const VforkArg<'_>) };
    child::run(a.plan, a.fds)
}

fn clone_vfork(args: &mut sys::CloneArgs, plan: &Plan, fds: &child::Fds) -> sys::SysResult<libc::pid_t> {
    let stack = sys::Stack::new(CHILD_STACK)?;
    args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
    args.stack = stack.base();
    args.stack_size = stack.size();
    let mut arg = VforkArg { plan, fds };
    // SAFETY: the stack is live until after the child has exec'd or exited
    // (CLONE_VFORK); vfork_entry never returns and only reads the plan.
    unsafe { sys::clone3_vfork(args, vfork_entry, &mut arg as *mut VforkArg<'_> as *mut libc::c_void) }
}

/// Give the container's root (the host ids inside 0:0 maps to) its state folders,
/// and let it cross the directories above them.
fn prepare_userns(u: &UsernsPlan) -> Result<(), SpawnError> {
    for p in &u.own {
        sys::chown(p, u.root_uid, u.root_gid).map_err(|e| {
            let p = p.to_string_lossy().into_owned();
            SpawnError::new(Step::UserMap, e, Some(p.clone()), format!("giving {p} to the user namespace's root ({}:{}) failed", u.root_uid, u.root_gid))
        })?;
    }
    for p in &u.traverse {
        sys::add_search_permission(p).map_err(|e| {
            let p = p.to_string_lossy().into_owned();
            SpawnError::new(Step::UserMap, e, Some(p.clone()), format!("letting the user namespace's root cross {p} (o+x) failed"))
        })?;
    }
    Ok(())
}

/// The map socket: the child waits on it for its maps (and the parent's overlay).
fn socketpair() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (a, b) = sys::socketpair_cloexec()
        .map_err(|e| SpawnError::new(Step::Pipe, e, None, "creating the user namespace's map socket failed".into()))?;
    Ok((owned(a), owned(b)))
}

/// Write the child's uid_map and gid_map, build its overlay when the parent
/// makes it (idmap.rs), then let it go on (one byte on its map socket, with the
/// overlay's mount descriptor).
fn write_maps(pid: libc::pid_t, u: &UsernsPlan, w: OwnedFd) -> Result<(), SpawnError> {
    if u.setgroups_deny {
        let path = format!("/proc/{pid}/setgroups");
        let c = std::ffi::CString::new(path.clone()).expect("no NUL in a /proc path");
        sys::write_path(&c, b"deny")
            .map_err(|e| SpawnError::new(Step::UserMap, e, Some(path.clone()), format!("writing \"deny\" to {path} failed")))?;
    }
    if let Some(helpers) = &u.map_helpers {
        for (helper, map) in helpers {
            let mut cmd = std::process::Command::new(helper);
            cmd.arg(pid.to_string());
            for (i, o, c) in map {
                cmd.args([i.to_string(), o.to_string(), c.to_string()]);
            }
            let shown = format!("{helper} {pid} {}", map.iter().map(|(i, o, c)| format!("{i} {o} {c}")).collect::<Vec<_>>().join(" "));
            let out = cmd.stdin(std::process::Stdio::null()).output().map_err(|e| {
                SpawnError::new(Step::UserMap, e.raw_os_error().unwrap_or(0), Some(helper.clone()), format!("running {shown} failed"))
            })?;
            if !out.status.success() {
                let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
                return Err(SpawnError::new(Step::UserMap, libc::EPERM, Some(helper.clone()), format!("{shown} failed ({}): {said}", out.status)));
            }
        }
    }
    for (file, text) in [("uid_map", &u.uid_map), ("gid_map", &u.gid_map)] {
        if u.map_helpers.is_some() {
            break;
        }
        let path = format!("/proc/{pid}/{file}");
        let c = std::ffi::CString::new(path.clone()).expect("no NUL in a /proc path");
        sys::write_path(&c, text).map_err(|e| {
            let hint = match e {
                libc::EPERM => ": the range is not ours to map (CAP_SETUID/CAP_SETGID over it, or /etc/subuid for rootless)",
                libc::EINVAL => ": a malformed or overlapping range",
                _ => "",
            };
            SpawnError::new(
                Step::UserMap,
                e,
                Some(path.clone()),
                format!("writing {:?} to {path} failed{hint}", String::from_utf8_lossy(text).trim_end()),
            )
        })?;
    }
    let overlay = match &u.overlay {
        Some(o) => {
            let ns = if o.idmap { Some(crate::idmap::userns_of(pid)?) } else { None };
            Some(crate::idmap::build(o, ns.as_ref())?)
        }
        None => None,
    };
    sys::send_byte_fd(w.as_raw_fd(), b'm', overlay.as_ref().map(|m| m.as_raw_fd()))
        .map_err(|e| SpawnError::new(Step::UserMap, e, None, "telling the container its user namespace is mapped failed".into()))
}

fn clone_error(plan: &Plan, e: i32) -> SpawnError {
    if plan.cgroup_fd.is_some() && matches!(e, libc::EBUSY | libc::EOPNOTSUPP | libc::EACCES | libc::EBADF) {
        return SpawnError::new(
            Step::CgroupAttach,
            e,
            None,
            "clone3 into the container's cgroup (CLONE_INTO_CGROUP) failed: is cgroup_fd a cgroup v2 directory \
             without processes in its children and with its controllers enabled?"
                .into(),
        );
    }
    let hint = match e {
        libc::EPERM => ": creating namespaces needs CAP_SYS_ADMIN",
        libc::ENOSPC => ": a namespace limit (/proc/sys/user/max_*_namespaces) is reached",
        libc::EINVAL if plan.userns.is_some() => ": this kernel refuses a user namespace with these flags",
        libc::EAGAIN => ": the process limit is reached",
        _ => "",
    };
    SpawnError::new(Step::Clone, e, None, format!("clone3 of the container's init failed{hint}"))
}

/// Kernels without clone3 (before 5.3): clone(2), then the cgroup joined by a
/// write to cgroup.procs while the child waits on the sync pipe.
#[allow(clippy::too_many_arguments)]
fn clone_fallback(
    plan: Plan,
    describe: Describe,
    plan_ns: u64,
    err_r: OwnedFd,
    err_w: OwnedFd,
    mut sync_r: Option<OwnedFd>,
    mut sync_w: Option<OwnedFd>,
    t_clone: Instant,
) -> Result<Child, SpawnError> {
    let cgroup_fd = plan.cgroup_fd;
    let hold = cgroup_fd.is_some() && sync_r.is_none();
    if hold {
        let (r, w) = pipe()?;
        sync_r = Some(r);
        sync_w = Some(w);
    }
    let fds = child::Fds {
        err_w: err_w.as_raw_fd(),
        sync_r: sync_r.as_ref().map(|f| f.as_raw_fd()),
        map_r: None,
        pivot_r: None,
        parent_ends: [err_r.as_raw_fd(), sync_w.as_ref().map_or(-1, |f| f.as_raw_fd()), -1, -1],
    };
    let mut pidfd: c_int = -1;
    let flags = plan.clone_flags & !sys::CLONE_INTO_CGROUP;
    let old_mask = sys::block_all_signals();
    // SAFETY: as for clone3 above.
    let r = unsafe { sys::clone_legacy(flags, &mut pidfd) };
    if let Ok(0) = r {
        child::run(&plan, &fds)
    }
    sys::set_signal_mask(&old_mask);
    let pid = r.map_err(|e| clone_error(&plan, e))?;
    let pidfd = owned(pidfd);
    drop(plan);
    if let Some(cg) = cgroup_fd {
        let joined = sys::write_file_at(cg, c"cgroup.procs", pid.to_string().as_bytes());
        if let Err(e) = joined {
            kill_and_reap(&pidfd);
            return Err(SpawnError::new(
                Step::CgroupAttach,
                e,
                Some("cgroup.procs".into()),
                format!("writing pid {pid} to the container cgroup's cgroup.procs failed"),
            ));
        }
    }
    let child = finish(pid, pidfd, CloneMethod::Clone, err_r, err_w, sync_r, sync_w, None, describe, plan_ns, t_clone, false)?;
    if hold {
        child.start()?;
    }
    Ok(child)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    pid: libc::pid_t,
    pidfd: OwnedFd,
    method: CloneMethod,
    err_r: OwnedFd,
    err_w: OwnedFd,
    sync_r: Option<OwnedFd>,
    sync_w: Option<OwnedFd>,
    pivot_w: Option<OwnedFd>,
    describe: Describe,
    plan_ns: u64,
    t_clone: Instant,
    vforked: bool,
) -> Result<Child, SpawnError> {
    let clone_ns = elapsed_ns(t_clone);
    // Our copies of the child's ends go, so that its exec or death is seen as EOF.
    drop(err_w);
    drop(sync_r);
    let waits = sync_w.is_some();
    let first = if pivot_w.is_some() { Some(Record::PAUSED) } else if waits { Some(Record::READY) } else { None };
    let child = Child {
        pid,
        pidfd: Mutex::new(Some(Arc::new(pidfd))),
        method,
        state: Mutex::new(State {
            err_r: Some(err_r),
            sync_w,
            pivot_w,
            started: !waits,
            returncode: None,
            usage: None,
            timings: Timings { plan: plan_ns, clone: clone_ns, ..Default::default() },
        }),
        describe,
        mount_ns: Mutex::new(None),
    };
    let t_setup = Instant::now();
    {
        let mut st = child.lock();
        // A vfork-style child let us go on at its exec's point of no return (the kernel
        // releases our memory in exec_mmap, after which an exec can only succeed or kill
        // it) or at its exit; a step that failed wrote its record before _exit. So an
        // empty pipe now means it exec'd: no wait for the exec's end to close the pipe
        // (~100 us of every run on a busy host: the exec finishes on its CPU meanwhile).
        let execing = vforked
            && first.is_none()
            && st.err_r.as_ref().is_some_and(|r| !sys::poll_readable(r.as_raw_fd(), 0).unwrap_or(true));
        if execing {
            st.err_r = None;
        } else {
            child.read_status(&mut st, first)?;
        }
        st.timings.setup = elapsed_ns(t_setup);
    }
    Ok(child)
}

fn kill_and_reap(pidfd: &OwnedFd) {
    let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
    let _ = sys::waitid_pidfd(pidfd.as_raw_fd(), false);
}

impl Child {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pidfd_arc(&self) -> Option<Arc<OwnedFd>> {
        self.pidfd.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn pidfd(&self) -> RawFd {
        self.pidfd_arc().map_or(-1, |f| f.as_raw_fd())
    }

    pub fn method(&self) -> CloneMethod {
        self.method
    }

    pub fn started(&self) -> bool {
        self.lock().started
    }

    pub fn timings(&self) -> Timings {
        self.lock().timings
    }

    pub fn returncode(&self) -> Option<i32> {
        self.lock().returncode
    }

    /// The rusage waitid returned when it was reaped (None before, or when
    /// it was reaped after a failed set-up).
    pub fn usage(&self) -> Option<sys::Usage> {
        self.lock().usage
    }

    /// Read the child's next status from the error pipe: `expect` (READY when it
    /// waits for start, PAUSED before pivot_root), EOF (None: exec'd), or a
    /// failure record (then it is reaped).
    fn read_status(&self, st: &mut State, expect: Option<u32>) -> Result<(), SpawnError> {
        let Some(err_r) = st.err_r.as_ref() else { return Ok(()) };
        let mut buf = [0u8; Record::SIZE];
        let got = sys::read_full(err_r.as_raw_fd(), &mut buf).map_err(|e| {
            SpawnError::new(Step::ReadStatus, e, None, "reading the container's start status failed".into())
        });
        let failure = match got {
            Err(e) => e,
            Ok(0) if expect.is_none() => {
                st.err_r = None;
                return Ok(());
            }
            Ok(0) => SpawnError::new(
                Step::ReadStatus,
                0,
                None,
                "the container's init died during its set-up without reporting a step".into(),
            ),
            Ok(n) if n == Record::SIZE => {
                let rec = Record::from_bytes(&buf);
                if Some(rec.step) == expect {
                    return Ok(());
                }
                self.describe.error(rec)
            }
            Ok(n) => SpawnError::new(
                Step::ReadStatus,
                0,
                None,
                format!("the container's init sent a short status ({n} of {} bytes)", Record::SIZE),
            ),
        };
        st.err_r = None;
        st.sync_w = None;
        st.pivot_w = None;
        if let Some(fd) = self.pidfd_arc() {
            kill_and_reap(&fd);
        }
        st.returncode = Some(-libc::SIGKILL);
        Err(failure)
    }

    /// Let a child that waits for start go on; returns once it exec'd.
    pub fn start(&self) -> Result<(), SpawnError> {
        let t = Instant::now();
        let mut st = self.lock();
        if st.started {
            return Ok(());
        }
        if st.pivot_w.is_some() {
            return Err(SpawnError::new(
                Step::Start,
                libc::EINVAL,
                None,
                "the container waits before pivot_root: resume_setup() comes before start".into(),
            ));
        }
        let Some(sync_w) = st.sync_w.take() else {
            return Err(SpawnError::new(Step::Start, libc::EINVAL, None, "the container cannot be started again".into()));
        };
        if st.returncode.is_some() {
            return Err(SpawnError::new(Step::Start, libc::ESRCH, None, "the container's init is gone".into()));
        }
        let w = sys::write_all(sync_w.as_raw_fd(), b"s");
        drop(sync_w);
        if let Err(e) = w {
            return Err(SpawnError::new(Step::Start, e, None, "telling the container to start failed".into()));
        }
        st.started = true;
        self.read_status(&mut st, None)?;
        st.timings.start = elapsed_ns(t);
        Ok(())
    }

    /// True while the child waits after its mounts, before pivot_root.
    pub fn paused_before_pivot(&self) -> bool {
        self.lock().pivot_w.is_some()
    }

    /// Let a child paused before pivot_root go on; returns once it is ready
    /// (waiting for start), or with the error of the step that failed.
    pub fn resume_setup(&self) -> Result<(), SpawnError> {
        let mut st = self.lock();
        let Some(pivot_w) = st.pivot_w.take() else {
            return Err(SpawnError::new(Step::WaitHooks, libc::EINVAL, None, "the container does not wait before pivot_root".into()));
        };
        let w = sys::write_all(pivot_w.as_raw_fd(), b"p");
        drop(pivot_w);
        if let Err(e) = w {
            return Err(SpawnError::new(Step::WaitHooks, e, None, "telling the container to go on to pivot_root failed".into()));
        }
        self.read_status(&mut st, Some(Record::READY))
    }

    /// Reap without blocking.
    pub fn poll(&self) -> Result<Option<i32>, i32> {
        let mut st = self.lock();
        if st.returncode.is_some() {
            return Ok(st.returncode);
        }
        let Some(fd) = self.pidfd_arc() else { return Ok(st.returncode) };
        if let Some((rc, usage)) = sys::waitid_pidfd_usage(fd.as_raw_fd(), true)? {
            st.returncode = Some(rc);
            st.usage = Some(usage);
        }
        Ok(st.returncode)
    }

    /// Wait until the child exits or `timeout` passes (Ok(None)). Returns
    /// Err(EINTR) when a signal arrived, so the caller can run its handlers
    /// and call again with what is left of its timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>, i32> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(rc) = self.poll()? {
                return Ok(Some(rc));
            }
            let Some(fd) = self.pidfd_arc() else { return Ok(None) };
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.as_millis().clamp(1, c_int::MAX as u128) as c_int
                }
            };
            sys::poll_readable(fd.as_raw_fd(), ms)?;
        }
    }

    /// pidfd_send_signal; nothing to do once the child is reaped.
    pub fn send_signal(&self, sig: c_int) -> Result<(), i32> {
        let st = self.lock();
        if st.returncode.is_some() {
            return Ok(());
        }
        let Some(fd) = self.pidfd_arc() else { return Ok(()) };
        match sys::pidfd_send_signal(fd.as_raw_fd(), sig) {
            Ok(()) | Err(libc::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// SIGKILL and reap if still there, then close every descriptor (a held mount
    /// namespace's on the closer thread, see `mount_ns`). Idempotent.
    pub fn close(&self) {
        if let Some(ns) = self.mount_ns.lock().unwrap_or_else(|p| p.into_inner()).take() {
            mount_ns::close_later(ns);
        }
        let mut st = self.lock();
        st.sync_w = None;
        st.pivot_w = None;
        st.err_r = None;
        let fd = self.pidfd.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fd) = fd {
            if st.returncode.is_none() {
                let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
                if let Ok(Some((rc, usage))) = sys::waitid_pidfd_usage(fd.as_raw_fd(), false) {
                    st.returncode = Some(rc);
                    st.usage = Some(usage);
                }
            }
        }
    }
}

impl Child {
    /// Let the process go on without us: close our descriptors without killing or
    /// reaping it (an exec --detach: once we exit it is reparented to our subreaper,
    /// which waits for it). Only for a started child; idempotent.
    pub fn release(&self) -> Result<(), SpawnError> {
        let mut st = self.lock();
        if !st.started {
            return Err(SpawnError::new(Step::Start, libc::EINVAL, None, "only a started process can be released".into()));
        }
        st.err_r = None;
        st.sync_w = None;
        self.pidfd.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.close();
    }
}

/// Held mount namespaces (spec.hold_mount_ns), closed in order by one thread of
/// ours. Closing the last reference tears the namespace down in the closing
/// thread (umount_tree, then every superblock: the overlay, /proc, the tmpfs
/// mounts...), ~120-170 µs here that the init's exit would otherwise spend
/// before its parent sees it. A native thread and not the Python teardown
/// worker: that one runs only when the caller lets go of the GIL, which is
/// when it spawns the next container, whose mounts would then wait on the
/// teardown's namespace lock. What removes a container's state folder calls
/// `wait_closed` first (the overlay on it must be gone).
pub mod mount_ns {
    use std::os::fd::OwnedFd;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Condvar, Mutex};

    struct Closer {
        pid: u32,
        tx: Sender<OwnedFd>,
        sent: u64,
    }

    static CLOSER: Mutex<Option<Closer>> = Mutex::new(None);
    /// Descriptors the current process's thread has closed so far.
    static DONE: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Close `fd` on the closer thread (started on first use, again in a forked child).
    pub fn close_later(fd: OwnedFd) {
        let pid = std::process::id();
        let mut c = lock(&CLOSER);
        if c.as_ref().is_none_or(|c| c.pid != pid) {
            let (tx, rx) = channel::<OwnedFd>();
            *lock(&DONE.0) = 0;
            let started = std::thread::Builder::new().name("fc-mntns-close".into()).spawn(move || {
                for fd in rx {
                    drop(fd);
                    *lock(&DONE.0) += 1;
                    DONE.1.notify_all();
                }
            });
            if started.is_err() {
                return; // no thread: `fd` is closed here, as without holding
            }
            *c = Some(Closer { pid, tx, sent: 0 });
        }
        let closer = c.as_mut().expect("just set");
        if closer.tx.send(fd).is_ok() {
            closer.sent += 1;
        }
    }

    /// Return once every descriptor handed to close_later so far is closed.
    pub fn wait_closed() {
        let target = match lock(&CLOSER).as_ref() {
            Some(c) if c.pid == std::process::id() => c.sent,
            _ => return,
        };
        let mut d = lock(&DONE.0);
        while *d < target {
            d = DONE.1.wait(d).unwrap_or_else(|p| p.into_inner());
        }
    }
}
