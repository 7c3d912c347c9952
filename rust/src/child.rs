//! The child's side of a spawn: from clone3's return to execve.
//!
//! Everything here runs in a process copied from a parent that may have
//! threads, so it follows `_posixsubprocess`'s rules: it only reads the plan
//! prepared before the clone, allocates nothing, takes no locks, never
//! unwinds, and every failure ends in `_exit` after one fixed-size
//! `{step, errno, index}` record on the error pipe. The set-up reads as a
//! list, one step a line, ending in execve.

use std::ffi::CStr;

use libc::c_int;

use crate::errors::{Record, Step};
use crate::plan::{Op, Plan, MAX_PATH};
use crate::sys;
use crate::timing::Mark;

/// The descriptors the child gets from the parent.
pub struct Fds {
    /// Write end of the close-on-exec error pipe.
    pub err_w: c_int,
    /// Read end of the sync pipe, when the child waits for start.
    pub sync_r: Option<c_int>,
    /// Read end of the map pipe, when the child waits for its user namespace's mapping.
    pub map_r: Option<c_int>,
    /// Read end of the hooks pipe, when the child waits after its mounts, before pivot_root.
    pub pivot_r: Option<c_int>,
    /// The parent's ends, closed first so that the parent's exit is seen as EOF.
    pub parent_ends: [c_int; 4],
}

/// Exit status of a child whose set-up failed (it is reaped by the parent).
const FAILED: c_int = 127;

fn fail(err_w: c_int, step: Step, errno: i32, index: usize) -> ! {
    let rec = Record { step: step as u32, errno, index: index as u32 };
    let _ = sys::write_all(err_w, &rec.to_bytes());
    sys::exit_now(FAILED)
}

/// `step(); if failed: report and _exit`.
macro_rules! step {
    ($fds:expr, $step:expr, $idx:expr, $call:expr) => {
        if let Err(e) = $call {
            fail($fds.err_w, $step, e, $idx)
        }
    };
}

/// Carry out the plan, then execve. Never returns.
pub fn run(plan: &Plan, fds: &Fds) -> ! {
    plan.marks.set(Mark::Entered);
    for fd in fds.parent_ends {
        if fd >= 0 {
            sys::close(fd);
        }
    }
    sys::reset_signal_dispositions();
    // SAFETY: sigset_t is plain data; all-zero is the empty set.
    sys::set_signal_mask(&unsafe { std::mem::zeroed() });
    // Modes in the plan are exact (a 0666 /dev/null); the user's umask comes before execve.
    sys::umask(0);
    // A network namespace made ahead or another container's: joined before /sys is
    // mounted (sysfs shows the mounter's).
    if let Some(fd) = plan.netns_fd {
        step!(fds, Step::JoinNetns, 0, sys::setns(fd, libc::CLONE_NEWNET));
    }
    if let Some((pidfd, flags)) = plan.join {
        join(plan, fds, pidfd, flags)
    }

    // In a new user namespace: wait for the parent to map it, then be its root
    // (uid 0 inside, which keeps the namespace's capabilities), without the host's groups.
    // The parent may send the root filesystem with the byte: an overlay it built (idmap.rs).
    let mut rootfs_fd: Option<c_int> = None;
    if let Some(map_r) = fds.map_r {
        step!(fds, Step::WaitUserMap, 0, wait_map(map_r, &mut rootfs_fd));
        step!(fds, Step::UsernsRoot, 0, sys::setresgid(0));
        if !plan.userns.as_ref().is_some_and(|u| u.setgroups_deny) {
            step!(fds, Step::UsernsRoot, 0, sys::setgroups(&[]));
        }
        step!(fds, Step::UsernsRoot, 0, sys::setresuid(0));
    }

    // The root filesystem and the mounts inside it.
    step!(fds, Step::MakeRootPrivate, 0, make_root_private());
    if plan.userns.as_ref().is_some_and(|u| u.overlay.is_some()) {
        let Some(fd) = rootfs_fd else { fail(fds.err_w, Step::AttachRootfs, libc::EBADF, 0) };
        step!(fds, Step::AttachRootfs, 0, sys::move_mount_fd(fd, &plan.rootfs));
        sys::close(fd);
    } else {
        step!(fds, Step::MountRootfs, 0, do_op(&plan.rootfs_mount, &mut Ctx::default()));
    }
    // From here on paths below the root filesystem are looked up from it (Ctx::rel).
    step!(fds, Step::MountRootfs, 0, sys::chdir(&plan.rootfs));
    let mut cx = Ctx { root: Some(plan.rootfs.to_bytes()), empty: None };
    for (i, op) in plan.ops.iter().enumerate() {
        step!(fds, op.step(), i, do_op(op, &mut cx));
    }
    plan.marks.set(Mark::Mounted);
    // OCI hooks: createRuntime (the runtime's namespaces) and createContainer (ours,
    // through setns) run now, with our mounts made and the old root still there.
    if let Some(pivot_r) = fds.pivot_r {
        step!(fds, Step::WaitHooks, 0, pause(fds.err_w, pivot_r, Record::PAUSED));
    }

    // pivot_root into it, the old root stacked under the new one and detached.
    step!(fds, Step::PivotRoot, 0, sys::chdir(&plan.rootfs));
    step!(fds, Step::PivotRoot, 0, sys::pivot_root(c".", c"."));
    step!(fds, Step::DetachOldRoot, 0, sys::umount2(c".", libc::MNT_DETACH));
    step!(fds, Step::DetachOldRoot, 0, sys::chdir(c"/"));
    plan.marks.set(Mark::Pivoted);
    if plan.readonly_root {
        step!(fds, Step::ReadonlyRoot, 0, remount_root_readonly());
    }
    if let Some(h) = &plan.hostname {
        step!(fds, Step::Sethostname, 0, sys::sethostname(h));
    }
    if plan.loopback_up {
        step!(fds, Step::LoopbackUp, 0, sys::loopback_up());
    }
    plan.marks.set(Mark::Networked);

    // Stop here until the parent has placed us (cgroups, network) and says start.
    if let Some(sync_r) = fds.sync_r {
        // First drop what we inherited from the parent's other threads and containers: a
        // copy of another spawn's error pipe would keep it from seeing that one's exec (EOF)
        // for as long as we wait, and a copy of another's sync pipe its removal.
        let [i, o, e] = plan.stdio;
        step!(fds, Step::CloseFds, 0, sys::close_all_but(&[fds.err_w, sync_r, i, o, e]));
        step!(fds, Step::WaitStart, 0, wait_for_start(fds.err_w, sync_r));
    }
    // v1 controllers joined by ourselves (the parent opened their cgroup.procs), so a
    // spawn straight to execve needs no stop for the parent to write our pid.
    for (i, fd) in plan.cgroup_procs_fds.iter().enumerate() {
        step!(fds, Step::CgroupAttach, i, sys::write_all(*fd, b"0"));
    }
    // The parent made the interface (a veth end) while we waited.
    if let Some(i) = &plan.interface {
        step!(fds, Step::ConfigureInterface, 0, sys::interface_up(&i.name, i.address, i.mask, i.gateway));
    }
    if plan.late_cgroupns {
        step!(fds, Step::UnshareCgroupns, 0, sys::unshare(libc::CLONE_NEWCGROUP));
    }
    process(plan, fds)
}

/// The process half of the set-up, shared by a container's first process
/// and an exec: limits, security, credentials, stdio, then execve (through
/// the init when the plan has one).
fn process(plan: &Plan, fds: &Fds) -> ! {
    for (i, (res, soft, hard)) in plan.rlimits.iter().enumerate() {
        step!(fds, Step::Rlimit, i, sys::setrlimit(*res, *soft, *hard));
    }
    if let Some(v) = &plan.oom_score_adj {
        step!(fds, Step::OomScoreAdj, 0, sys::write_path(c"/proc/self/oom_score_adj", v));
    }
    if let Some(set) = &plan.cpus {
        step!(fds, Step::Affinity, 0, sys::sched_setaffinity(set));
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it (as runc does).
    if !plan.no_new_privs {
        step!(fds, Step::Seccomp, 0, load_seccomp(plan));
    }
    if let Some(keep) = plan.caps {
        step!(fds, Step::CapBounding, 0, drop_bounding(keep, plan.last_cap));
    }
    if plan.set_groups {
        step!(fds, Step::Setgroups, 0, sys::setgroups(&plan.groups));
    }
    step!(fds, Step::Setgid, 0, sys::setresgid(plan.gid));
    step!(fds, Step::Setuid, 0, sys::setresuid(plan.uid));
    if let Some(keep) = plan.caps {
        // root keeps the set; any other uid lost its permitted set in setresuid, as in docker.
        // The inheritable set stays empty (CVE-2022-24769: no capabilities through execve of a file).
        let set = if plan.uid == 0 { keep } else { 0 };
        step!(fds, Step::Capset, 0, sys::capset(set, set, 0));
        step!(fds, Step::Capset, 0, sys::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong));
    }
    if plan.no_new_privs {
        step!(fds, Step::NoNewPrivs, 0, sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1));
    }
    // After setuid, as runc does: the working directory must be usable by the user.
    step!(fds, Step::Chdir, 0, sys::chdir(&plan.cwd));
    sys::umask(plan.umask);
    if plan.tty {
        // a new session, so that the terminal can become its controlling terminal
        step!(fds, Step::Setsid, 0, sys::setsid());
    }
    step!(fds, Step::Stdio, 0, set_stdio(&plan.stdio));
    if plan.tty {
        step!(fds, Step::ControllingTty, 0, sys::set_controlling_tty(0));
    }
    step!(fds, Step::CloseFds, 0, sys::cloexec_from(3));
    if plan.no_new_privs {
        step!(fds, Step::Seccomp, 0, load_seccomp(plan));
    }
    plan.marks.set(Mark::Exec);
    if plan.init {
        init(plan, fds)
    }
    exec(plan, fds.err_w)
}

/// exec into a running container: join the namespaces of its init through
/// the pidfd, all at once. setns into a pid namespace only applies to
/// children, so the process that runs the command is forked after it (as
/// runc does), with CLONE_PARENT: it is the caller's child, whom the caller
/// waits for; this first process reports its pid and leaves at once. It is
/// born in the container's v2 cgroup (CLONE_INTO_CGROUP) and joins its v1
/// controllers itself before the fork.
fn join(plan: &Plan, fds: &Fds, pidfd: c_int, flags: c_int) -> ! {
    // v1 controllers first, from the host's cgroup namespace: the process forked below
    // inherits them, so it never runs outside the container's v1 limits.
    for (i, fd) in plan.cgroup_procs_fds.iter().enumerate() {
        step!(fds, Step::CgroupAttach, i, sys::write_all(*fd, b"0"));
    }
    step!(fds, Step::JoinNamespaces, 0, sys::setns(pidfd, flags));
    // SAFETY: the child only carries out the plan (async-signal-safe) and ends in execve or _exit.
    match unsafe { sys::fork_with(libc::CLONE_PARENT as u64) } {
        Ok(0) => process(plan, fds),
        Ok(pid) => {
            let rec = Record { step: Record::PID, errno: 0, index: pid as u32 };
            let _ = sys::write_all(fds.err_w, &rec.to_bytes());
            sys::exit_now(0)
        }
        Err(e) => fail(fds.err_w, Step::ExecFork, e, 0),
    }
}

/// Signals the init does not forward: the synchronous ones (a fault of the
/// init's own) and the terminal stops, as tini.
const INIT_UNBLOCKED: [c_int; 9] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// A minimal init as PID 1, like docker's tini: fork the command, then wait
/// for signals with all of them blocked (blocked signals reach a namespace's
/// init even without a handler), forward each one to the command, reap every
/// child that exits (orphans are reparented here), and exit with the
/// command's status, 128+N when it died of signal N (an init cannot re-raise
/// a signal on itself: the kernel ignores it for a pid namespace's init).
/// The command's execve reports to the error pipe as without init: the init
/// closes its copy once the command is forked, so EOF still means exec'd.
fn init(plan: &Plan, fds: &Fds) -> ! {
    // SAFETY: sigset_t is plain data, filled and edited in place.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a live sigset_t; sigfillset and sigdelset only write it.
    unsafe {
        libc::sigfillset(&mut set);
        for sig in INIT_UNBLOCKED {
            libc::sigdelset(&mut set, sig);
        }
    }
    sys::set_signal_mask(&set);
    sys::set_disposition(libc::SIGTTIN, true);
    sys::set_disposition(libc::SIGTTOU, true);
    // SAFETY: the child only runs the steps below and ends in execve or _exit.
    let child = match unsafe { sys::fork_with(0) } {
        Ok(0) => {
            if plan.tty {
                // its own process group, in the terminal's foreground (^C goes to it)
                step!(fds, Step::ForegroundGroup, 0, sys::setpgid(0, 0));
                step!(fds, Step::ForegroundGroup, 0, sys::set_foreground(0, sys::getpid()));
            }
            sys::set_disposition(libc::SIGTTIN, false);
            sys::set_disposition(libc::SIGTTOU, false);
            // SAFETY: sigset_t is plain data; all-zero is the empty set.
            sys::set_signal_mask(&unsafe { std::mem::zeroed() });
            exec(plan, fds.err_w)
        }
        Ok(pid) => pid,
        Err(e) => fail(fds.err_w, Step::InitFork, e, 0),
    };
    // Named so that ps in the container tells it apart (it is a copy of the caller otherwise).
    let _ = sys::prctl(libc::PR_SET_NAME, c"init".as_ptr() as libc::c_ulong);
    // Keep only 0, 1, 2: the error pipe (EOF once the command exec'd) and
    // whatever the parent had open go.
    let _ = sys::close_from(3);
    loop {
        match sys::sigwait(&set) {
            Ok(libc::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = sys::kill(child, sig);
            }
        }
        while let Ok(Some((pid, status))) = sys::reap_any() {
            if pid == child {
                sys::exit_now(exit_code(status))
            }
        }
    }
}

/// A shell's exit code for a wait status: the exit code, or 128+N for signal N.
fn exit_code(status: c_int) -> c_int {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        FAILED
    }
}

fn load_seccomp(plan: &Plan) -> sys::SysResult<()> {
    if let Some(p) = &plan.seccomp {
        for f in &p.filters {
            sys::seccomp_load(f)?;
        }
    }
    Ok(())
}

/// Drop every capability not in `keep` from the bounding set.
fn drop_bounding(keep: u64, last_cap: u32) -> sys::SysResult<()> {
    for cap in 0..=last_cap.min(63) {
        if keep & (1 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
                Ok(()) | Err(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn make_root_private() -> sys::SysResult<()> {
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

fn remount_root_readonly() -> sys::SysResult<()> {
    sys::mount(None, c"/", None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, None)
}

/// What the mount steps share.
#[derive(Default)]
struct Ctx<'a> {
    /// The root filesystem's host path once it is our working directory: paths below it
    /// are given to the kernel relative to it, so that each step's lookup starts there
    /// instead of walking the state folder's path again.
    root: Option<&'a [u8]>,
    /// The first directory masked, whose empty read-only tmpfs the others get a bind of
    /// (a bind keeps its source's read-only, nosuid, nodev and noexec flags), instead of
    /// a superblock each to make and, at exit, to destroy.
    empty: Option<&'a CStr>,
}

impl<'a> Ctx<'a> {
    /// `p` relative to the working directory when it lies below the root filesystem.
    fn rel(&self, p: &'a CStr) -> &'a CStr {
        let Some(root) = self.root else { return p };
        match p.to_bytes_with_nul().strip_prefix(root) {
            Some([b'/', rest @ ..]) if rest.len() > 1 => CStr::from_bytes_with_nul(rest).unwrap_or(p),
            _ => p,
        }
    }
}

fn do_op<'a>(op: &'a Op, cx: &mut Ctx<'a>) -> sys::SysResult<()> {
    match op {
        Op::Mkdir { path, mode } => mkdir_p(cx.rel(path).to_bytes(), *mode),
        Op::MkFile { parent, path } => {
            let path = cx.rel(path);
            mkdir_p(cx.rel(parent).to_bytes(), 0o755)?;
            let fd = sys::open(path, libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644)
                .or_else(|e| {
                    // an existing mount point we may not write (a read-only image file) is fine
                    if e == libc::EACCES || e == libc::EROFS || e == libc::ETXTBSY {
                        sys::open(path, libc::O_PATH | libc::O_CLOEXEC, 0)
                    } else {
                        Err(e)
                    }
                })?;
            sys::close(fd);
            Ok(())
        }
        Op::Mount { src, target, fstype, flags, data } => {
            let src = src.as_deref().map(|s| if fstype.is_none() { cx.rel(s) } else { s });
            sys::mount(src, cx.rel(target), fstype.as_deref(), *flags, data.as_deref())?;
            if cx.root.is_some_and(|r| target.to_bytes_with_nul().strip_prefix(r) == Some(&[0][..])) {
                // a mount over the root itself: the working directory must be on the new top
                sys::chdir(target)?;
            }
            Ok(())
        }
        Op::SetAttr { target, attr } => sys::mount_setattr_recursive(cx.rel(target), *attr),
        Op::Mknod { path, mode, dev } => sys::mknod(cx.rel(path), *mode, *dev),
        Op::Node { path, mode, dev, uid, gid } => {
            let path = cx.rel(path);
            sys::mknod(path, *mode, *dev)?;
            if *uid != 0 || *gid != 0 {
                sys::chown(path, *uid, *gid)?;
            }
            Ok(())
        }
        Op::Symlink { target, link } => sys::symlink(target, cx.rel(link)),
        Op::Mask { target, null, file } => {
            let (target, null) = (cx.rel(target), cx.rel(null));
            let ro = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let dir = || match cx.empty {
                Some(d) => sys::mount(Some(d), target, None, libc::MS_BIND, None),
                None => sys::mount(Some(c"tmpfs"), target, Some(c"tmpfs"), ro, Some(c"size=0")),
            };
            let bind = || sys::mount(Some(null), target, None, libc::MS_BIND, None);
            // the plan's guess first (a failed tmpfs costs a whole superblock), the other on ENOTDIR
            let (r, as_dir) = match if *file { bind() } else { dir() } {
                Err(libc::ENOTDIR) => (if *file { dir() } else { bind() }, *file),
                r => (r, !*file),
            };
            if r.is_ok() && as_dir && cx.empty.is_none() {
                cx.empty = Some(target);
            }
            r.or_else(skip_missing)
        }
        Op::ReadOnly { target, inherit } => {
            let target = cx.rel(target);
            match sys::mount(Some(target), target, None, libc::MS_BIND | libc::MS_REC, None) {
                Ok(()) if *inherit => Ok(()),
                Ok(()) => sys::mount_setattr_recursive(target, sys::MOUNT_ATTR_RDONLY),
                r => r.or_else(skip_missing),
            }
        }
        Op::ProcAttr { target, set, clear } => sys::mount_setattr(cx.rel(target), *set, *clear, 0),
    }
}

/// A masked or read-only path the kernel does not have is not an error.
fn skip_missing(e: i32) -> sys::SysResult<()> {
    if e == libc::ENOENT { Ok(()) } else { Err(e) }
}

/// The C string at the start of a NUL-padded buffer (no allocation).
fn as_cstr(buf: &[u8]) -> &CStr {
    // the buffer is one byte longer than any path, so a NUL is always there
    CStr::from_bytes_until_nul(buf).unwrap_or(c"")
}

/// mkdir -p in a stack buffer. Tries the whole path first: mount points
/// usually exist, or only their last component is missing.
fn mkdir_p(path: &[u8], mode: libc::mode_t) -> sys::SysResult<()> {
    let mut buf = [0u8; MAX_PATH + 1];
    let n = path.len().min(MAX_PATH);
    buf[..n].copy_from_slice(&path[..n]);
    match sys::mkdir(as_cstr(&buf), mode) {
        Ok(()) => return Ok(()),
        Err(libc::EEXIST) => return Ok(()),
        Err(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    for i in 1..n {
        if buf[i] != b'/' {
            continue;
        }
        buf[i] = 0;
        let r = sys::mkdir(as_cstr(&buf), mode);
        buf[i] = b'/';
        match r {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    match sys::mkdir(as_cstr(&buf), mode) {
        Ok(()) | Err(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Block until the parent sends a byte (and maybe a descriptor) on the map socket;
/// its exit (EOF) ends the child quietly.
fn wait_map(sock: c_int, fd: &mut Option<c_int>) -> sys::SysResult<()> {
    match sys::recv_byte_fd(sock)? {
        None => sys::exit_now(FAILED),
        Some((_, got)) => *fd = got,
    }
    sys::close(sock);
    Ok(())
}

/// Report READY, then block until the parent writes a byte (start) or closes
/// the pipe (the container was removed before it started: leave quietly).
fn wait_for_start(err_w: c_int, sync_r: c_int) -> sys::SysResult<()> {
    pause(err_w, sync_r, Record::READY)
}

/// Report `what` (READY, PAUSED), then block until the parent writes a byte on
/// `fd` or closes it (then leave quietly).
fn pause(err_w: c_int, fd: c_int, what: u32) -> sys::SysResult<()> {
    let rec = Record { step: what, errno: 0, index: 0 };
    sys::write_all(err_w, &rec.to_bytes())?;
    let mut b = [0u8; 1];
    if sys::read_full(fd, &mut b)? == 0 {
        sys::exit_now(FAILED);
    }
    sys::close(fd);
    Ok(())
}

/// Make `stdio[i]` the descriptor `i`. Sources below 3 are moved up first,
/// so that an earlier dup2 cannot overwrite a later source.
fn set_stdio(stdio: &[i32; 3]) -> sys::SysResult<()> {
    let mut src = *stdio;
    for s in src.iter_mut() {
        if *s >= 0 && *s < 3 {
            // SAFETY: plain integers; F_DUPFD_CLOEXEC returns a new descriptor >= 3.
            let moved = unsafe { libc::fcntl(*s, libc::F_DUPFD_CLOEXEC, 3) };
            if moved < 0 {
                return Err(sys::errno());
            }
            *s = moved;
        }
    }
    for (i, &s) in src.iter().enumerate() {
        if s >= 0 {
            sys::dup2(s, i as c_int)?;
        } else {
            // inherited: make sure it survives execve
            let _ = sys::clear_cloexec(i as c_int);
        }
    }
    Ok(())
}

/// execve each candidate in turn (a PATH search); ENOENT and ENOTDIR move on,
/// EACCES is remembered as execvp does, anything else is final.
fn exec(plan: &Plan, err_w: c_int) -> ! {
    let mut denied: Option<usize> = None;
    for (i, path) in plan.exec_paths.iter().enumerate() {
        // SAFETY: argv_ptrs and env_ptrs are NULL-terminated arrays into the plan's CStrings.
        let e = unsafe { sys::execve(path, plan.argv_ptrs.as_ptr(), plan.env_ptrs.as_ptr()) };
        match e {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => {
                denied.get_or_insert(i);
            }
            _ => fail(err_w, Step::Execve, e, i),
        }
    }
    match denied {
        Some(i) => fail(err_w, Step::Execve, libc::EACCES, i),
        None => fail(err_w, Step::Execve, libc::ENOENT, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_the_root_become_relative_and_others_stay() {
        let cx = Ctx { root: Some(b"/run/fc/abc/rootfs"), empty: None };
        assert_eq!(cx.rel(c"/run/fc/abc/rootfs/dev/pts"), c"dev/pts");
        assert_eq!(cx.rel(c"/run/fc/abc/rootfs/p"), c"p");
        assert_eq!(cx.rel(c"/run/fc/abc/rootfs"), c"/run/fc/abc/rootfs", "the root itself");
        assert_eq!(cx.rel(c"/run/fc/abc/rootfs/"), c"/run/fc/abc/rootfs/");
        assert_eq!(cx.rel(c"/run/fc/abc/rootfsx/y"), c"/run/fc/abc/rootfsx/y", "a sibling");
        assert_eq!(cx.rel(c"/dev/null"), c"/dev/null");
        assert_eq!(Ctx::default().rel(c"/run/fc/abc/rootfs/dev"), c"/run/fc/abc/rootfs/dev");
    }
}
