//! Raw syscalls, together in one place.
//!
//! Everything the child calls after `clone3` is here, and all of it is
//! async-signal-safe: a raw syscall, no allocation, no lock, no glibc wrapper
//! that consults thread state (glibc's set*id wrappers signal every thread the
//! parent had, which the child does not have, so the child uses raw syscalls).
//! Each function returns `Err(errno)` on failure.

use std::ffi::{CStr, CString};

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void, pid_t};

pub type SysResult<T> = Result<T, i32>;

pub const CLONE_PIDFD: u64 = 0x0000_1000;
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
pub const CLOSE_RANGE_CLOEXEC: c_uint = 1 << 2;
pub const P_PIDFD: libc::idtype_t = 3;
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub const AT_RECURSIVE: c_uint = 0x8000;

/// `struct clone_args` of clone3(2) (version 2, with `cgroup`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the
    // thread's life; after clone the child's copy of the slot is its own.
    unsafe { *libc::__errno_location() }
}

#[inline]
fn check(ret: c_long) -> SysResult<c_long> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

#[inline]
fn check_int(ret: c_int) -> SysResult<c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// clone3 without a new stack: the child returns 0 on a copy of this stack,
/// like fork, but with every flag at once. Returns the child's pid.
///
/// # Safety
/// The caller's child side (a return value of 0) must only do
/// async-signal-safe work and end in execve or _exit.
pub unsafe fn clone3(args: &mut CloneArgs) -> SysResult<pid_t> {
    // SAFETY: args points to a live clone_args of the size passed; pidfd, if
    // set in flags, points to an i32 the caller keeps alive (see spawn.rs).
    let ret = libc::syscall(
        libc::SYS_clone3,
        args as *mut CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    );
    check(ret).map(|p| p as pid_t)
}

/// clone3 onto a separate stack, the child calling `entry(arg)` there and
/// never returning: for CLONE_VM | CLONE_VFORK spawns, as glibc's
/// posix_spawn does, so the parent's page tables are not copied and the
/// parent sleeps until the child's execve or _exit. Returns the child's pid.
///
/// # Safety
/// `args.stack`/`stack_size` must describe a live, writable stack the child
/// may use; `entry` must be async-signal-safe, never return, and only read
/// what `arg` points to (memory is shared with the parent).
pub unsafe fn clone3_vfork(
    args: &mut CloneArgs,
    entry: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> SysResult<pid_t> {
    let ret: c_long;
    // SAFETY: the syscall returns twice. In the parent (rax != 0) nothing
    // else happened. In the child (rax == 0) rsp is the top of the new stack
    // (16-byte aligned by the caller); it calls entry(arg), which never
    // returns, so no code of this function runs on the new stack. r12 and
    // r13 survive the syscall (only rcx and r11 are clobbered).
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry as usize,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        Err(-ret as i32)
    } else {
        Ok(ret as pid_t)
    }
}

/// An anonymous mapping for a child's stack, unmapped on drop.
pub struct Stack {
    base: *mut c_void,
    size: usize,
}

impl Stack {
    pub fn new(size: usize) -> SysResult<Stack> {
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(Stack { base, size })
    }

    pub fn base(&self) -> u64 {
        self.base as u64
    }

    pub fn size(&self) -> u64 {
        self.size as u64
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(); the child using it has exec'd or exited (CLONE_VFORK).
        unsafe { libc::munmap(self.base, self.size) };
    }
}

/// The fallback for kernels without clone3: clone(2) with CLONE_PIDFD, whose
/// pidfd comes back through the parent_tid argument.
///
/// # Safety
/// As for [`clone3`].
pub unsafe fn clone_legacy(flags: u64, pidfd: &mut c_int) -> SysResult<pid_t> {
    // SAFETY: x86_64 clone(flags, stack, parent_tid, child_tid, tls); a null
    // stack means the child runs on a copy of ours; pidfd is a live i32.
    let ret = libc::syscall(
        libc::SYS_clone,
        flags as c_ulong | libc::SIGCHLD as c_ulong,
        0usize,
        pidfd as *mut c_int,
        0usize,
        0usize,
    );
    check(ret).map(|p| p as pid_t)
}

fn opt(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

pub fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: every pointer is null or a NUL-terminated string borrowed for the call.
    check_int(unsafe { libc::mount(opt(src), target.as_ptr(), opt(fstype), flags, opt(data) as *const c_void) })
        .map(|_| ())
}

/// mount_setattr(2) over a whole tree (AT_RECURSIVE): for read-only rbinds.
pub fn mount_setattr_recursive(target: &CStr, attr_set: u64) -> SysResult<()> {
    mount_setattr(target, attr_set, 0, AT_RECURSIVE as c_uint)
}

/// mount_setattr(2) of the mount at `target` (with AT_RECURSIVE in `flags`, of the tree).
pub fn mount_setattr(target: &CStr, attr_set: u64, attr_clr: u64, flags: c_uint) -> SysResult<()> {
    let mut attr = MountAttr { attr_set, attr_clr, propagation: 0, userns_fd: 0 };
    // SAFETY: target is a NUL-terminated path; attr is a live mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            flags,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(|_| ())
}

pub fn umount2(target: &CStr, flags: c_int) -> SysResult<()> {
    // SAFETY: target is a NUL-terminated path.
    check_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(|_| ())
}

pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both are NUL-terminated paths.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) }).map(|_| ())
}

pub fn chown(path: &CStr, uid: libc::uid_t, gid: libc::gid_t) -> SysResult<()> {
    // SAFETY: path is a valid C string.
    check_int(unsafe { libc::chown(path.as_ptr(), uid, gid) }).map(|_| ())
}

/// chmod o+x (and g+x) of a directory, keeping the rest of its mode.
pub fn add_search_permission(path: &CStr) -> SysResult<()> {
    // SAFETY: st is plain data the kernel fills; path is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check_int(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    let mode = st.st_mode & 0o7777;
    if mode & 0o011 == 0o011 {
        return Ok(());
    }
    chmod(path, mode | 0o011)
}

pub fn mkdir(path: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(|_| ())
}

pub fn mknod(path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::mknod(path.as_ptr(), mode, dev) }).map(|_| ())
}

pub fn symlink(target: &CStr, linkpath: &CStr) -> SysResult<()> {
    // SAFETY: both are NUL-terminated.
    check_int(unsafe { libc::symlink(target.as_ptr(), linkpath.as_ptr()) }).map(|_| ())
}

pub fn rmdir(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::rmdir(path.as_ptr()) }).map(|_| ())
}

pub fn unlink(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::unlink(path.as_ptr()) }).map(|_| ())
}

pub fn setxattr(path: &CStr, name: &CStr, value: &[u8]) -> SysResult<()> {
    // SAFETY: path and name are NUL-terminated; value points to value.len() bytes.
    check_int(unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr() as *const libc::c_void, value.len(), 0) })
        .map(|_| ())
}

/// bpf(BPF_PROG_ATTACH) of a loaded cgroup device program to the cgroup v2 directory
/// `cgroup_fd`, with BPF_F_ALLOW_MULTI (the programs of its ancestors keep applying).
pub fn bpf_prog_attach_device(cgroup_fd: c_int, prog_fd: c_int) -> SysResult<()> {
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    #[repr(C)]
    struct Attach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let attr = Attach {
        target_fd: cgroup_fd as u32,
        attach_bpf_fd: prog_fd as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: attr is a live, initialised union bpf_attr prefix of the size given.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attr as *const Attach, std::mem::size_of::<Attach>())
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// flock(2), retried on EINTR.
pub fn flock(fd: c_int, how: c_int) -> SysResult<()> {
    loop {
        // SAFETY: flock takes any descriptor; a bad one is EBADF.
        match check_int(unsafe { libc::flock(fd, how) }) {
            Err(libc::EINTR) => continue,
            r => return r.map(|_| ()),
        }
    }
}

pub fn chmod(path: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::chmod(path.as_ptr(), mode) }).map(|_| ())
}

pub fn open(path: &CStr, flags: c_int, mode: libc::mode_t) -> SysResult<c_int> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::open(path.as_ptr(), flags, mode as c_uint) })
}

pub fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(|_| ())
}

pub fn sethostname(name: &[u8]) -> SysResult<()> {
    // SAFETY: name points to name.len() readable bytes.
    check_int(unsafe { libc::sethostname(name.as_ptr() as *const c_char, name.len()) }).map(|_| ())
}

/// setns(2): join the namespace `fd` refers to (`nstype` CLONE_NEW*, or 0 for any); with a
/// pidfd and several CLONE_NEW* flags at once (Linux 5.8+) they are joined together, or none is.
pub fn setns(fd: c_int, nstype: c_int) -> SysResult<()> {
    // SAFETY: plain integers.
    check_int(unsafe { libc::setns(fd, nstype) }).map(|_| ())
}

pub fn unshare(flags: c_int) -> SysResult<()> {
    // SAFETY: plain integers.
    check_int(unsafe { libc::unshare(flags) }).map(|_| ())
}

pub fn sched_setaffinity(set: &libc::cpu_set_t) -> SysResult<()> {
    // SAFETY: set is a live cpu_set_t of the size passed.
    check_int(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) })
        .map(|_| ())
}

pub fn setgroups(groups: &[libc::gid_t]) -> SysResult<()> {
    // SAFETY: raw syscall (glibc's wrapper would signal the parent's threads);
    // groups points to groups.len() gids.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(|_| ())
}

pub fn setresgid(gid: libc::gid_t) -> SysResult<()> {
    // SAFETY: raw syscall with plain integers.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(|_| ())
}

pub fn setresuid(uid: libc::uid_t) -> SysResult<()> {
    // SAFETY: raw syscall with plain integers.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(|_| ())
}

/// CLOCK_MONOTONIC in nanoseconds (the clock `Instant` reads); a vDSO call,
/// async-signal-safe.
pub fn monotonic_ns() -> u64 {
    // SAFETY: ts is a live timespec the call fills; CLOCK_MONOTONIC cannot fail.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn umask(mask: libc::mode_t) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) };
}

pub fn dup2(old: c_int, new: c_int) -> SysResult<()> {
    // SAFETY: plain integers.
    check_int(unsafe { libc::dup2(old, new) }).map(|_| ())
}

pub fn clear_cloexec(fd: c_int) -> SysResult<()> {
    // SAFETY: plain integers.
    check_int(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(|_| ())
}

/// Mark every descriptor from `first` up close-on-exec (close_range(2), 5.11+).
pub fn cloexec_from(first: c_uint) -> SysResult<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, c_uint::MAX, CLOSE_RANGE_CLOEXEC) })
        .map(|_| ())
}

/// Close every descriptor >= 3 except those in `keep` (at most 8; negatives ignored),
/// with one close_range(2) per gap. No allocation: async-signal-safe.
pub fn close_all_but(keep: &[c_int]) -> SysResult<()> {
    let mut k = [0 as c_int; 8];
    let mut n = 0;
    for &fd in keep {
        if fd >= 3 && n < k.len() {
            k[n] = fd;
            n += 1;
        }
    }
    let k = &mut k[..n];
    k.sort_unstable();
    let mut lo: c_uint = 3;
    for &fd in k.iter() {
        let fd = fd as c_uint;
        if fd > lo {
            // SAFETY: plain integers; closing descriptors this process owns.
            check(unsafe { libc::syscall(libc::SYS_close_range, lo, fd - 1, 0) })?;
        }
        lo = lo.max(fd + 1);
    }
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_close_range, lo, c_uint::MAX, 0) }).map(|_| ())
}

pub fn close(fd: c_int) {
    // SAFETY: closing a descriptor we own; errors are irrelevant here.
    unsafe { libc::close(fd) };
}

pub fn write_all(fd: c_int, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: buf points to buf.len() readable bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const c_void, buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Read until `buf` is full or end-of-file; returns how many bytes were read.
pub fn read_full(fd: c_int, buf: &mut [u8]) -> SysResult<usize> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the destination is the unfilled tail of buf.
        let n = unsafe {
            libc::read(fd, buf[got..].as_mut_ptr() as *mut c_void, buf.len() - got)
        };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    Ok(got)
}

pub fn pipe_cloexec() -> SysResult<(c_int, c_int)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds has room for the two descriptors.
    check_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// execve(2); returns only on failure, with the errno.
///
/// # Safety
/// argv and envp must be NULL-terminated arrays of NUL-terminated strings
/// that live across the call.
pub unsafe fn execve(path: &CStr, argv: *const *const c_char, envp: *const *const c_char) -> i32 {
    // SAFETY: the caller's contract above.
    unsafe { libc::execve(path.as_ptr(), argv, envp) };
    errno()
}

pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit ends the process without running atexit handlers or
    // unwinding, which is what the child needs.
    unsafe { libc::_exit(code) }
}

/// Block every signal in this thread; returns the previous mask.
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; the pointers are to live locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

pub fn set_signal_mask(mask: &libc::sigset_t) {
    // SAFETY: mask is a live sigset_t. rt_sigprocmask directly: in the child
    // glibc's wrapper is avoided like every other one that has state.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            mask as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            std::mem::size_of::<c_ulong>(),
        )
    };
}

/// In the child: every handled signal back to SIG_DFL (a handler of the
/// parent's would run Python's C handler in a process that is not Python);
/// ignored ones stay ignored except SIGPIPE, SIGXFSZ, which Python ignores
/// for itself, as _posixsubprocess restores them.
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction with live local structs; signals that cannot be
        // changed return EINVAL, which is fine to ignore.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let ignored = old.sa_sigaction == libc::SIG_IGN;
            if old.sa_sigaction == libc::SIG_DFL
                || (ignored && sig != libc::SIGPIPE && sig != libc::SIGXFSZ)
            {
                continue;
            }
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    }
}

/// The flags of the interface `name` in the current network namespace (SIOCGIFFLAGS,
/// through an AF_UNIX socket: it is no TCP or UDP socket of the namespace's counts).
pub fn interface_flags(name: &CStr) -> SysResult<i32> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let bytes = name.to_bytes();
    if bytes.len() >= 16 {
        return Err(libc::EINVAL);
    }
    let mut req = IfReq { name: [0; 16], flags: 0, _pad: [0; 22] };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: a datagram socket, and an ioctl that fills a live ifreq of the kernel's size.
    unsafe {
        let fd = check_int(libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
        let r = check_int(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req as *mut IfReq));
        libc::close(fd);
        r?;
    }
    Ok(req.flags as u16 as i32)
}

/// read(2) once into `buf`; the count read.
pub fn read(fd: c_int, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: buf is writable for buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// Bring `lo` up in the current network namespace with two ioctls.
pub fn loopback_up() -> SysResult<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: a datagram socket, and ioctls that read and write a live ifreq
    // of the kernel's size (40 bytes) naming "lo".
    unsafe {
        let fd = check_int(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
        let mut req = IfReq { name: [0; 16], flags: 0, _pad: [0; 22] };
        req.name[..2].copy_from_slice(b"lo");
        let r = (|| {
            check_int(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req as *mut IfReq))?;
            req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            check_int(libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req as *mut IfReq))?;
            Ok(())
        })();
        libc::close(fd);
        r
    }
}

#[repr(C)]
struct IfReqAddr {
    name: [u8; 16],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

/// `struct rtentry` of <linux/route.h> (glibc's libc crate does not define it).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr_in,
    rt_gateway: libc::sockaddr_in,
    rt_genmask: libc::sockaddr_in,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn sockaddr_in(addr: [u8; 4]) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr) },
        sin_zero: [0; 8],
    }
}

/// Configure an IPv4 interface of the current network namespace with the
/// ioctls ifconfig and route use: its address and netmask, up, then a default
/// route via `gateway`. `name` is NUL-padded (at most 15 bytes).
pub fn interface_up(name: &[u8; 16], addr: [u8; 4], mask: [u8; 4], gateway: Option<[u8; 4]>) -> SysResult<()> {
    // SAFETY: a datagram socket, closed before returning; every ioctl reads or
    // writes a live struct of the kernel's layout (ifreq: 40 bytes, rtentry).
    unsafe {
        let fd = check_int(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
        let r = (|| {
            let mut req = IfReqAddr { name: *name, addr: sockaddr_in(addr), _pad: [0; 8] };
            check_int(libc::ioctl(fd, libc::SIOCSIFADDR, &mut req as *mut IfReqAddr))?;
            req.addr = sockaddr_in(mask);
            check_int(libc::ioctl(fd, libc::SIOCSIFNETMASK, &mut req as *mut IfReqAddr))?;
            let mut flags = IfReqAddr { name: *name, addr: std::mem::zeroed(), _pad: [0; 8] };
            check_int(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut flags as *mut IfReqAddr))?;
            let p = &mut flags.addr as *mut libc::sockaddr_in as *mut libc::c_short;
            *p |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            check_int(libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut flags as *mut IfReqAddr))?;
            if let Some(gw) = gateway {
                let mut dev = *name;
                let mut rt: RtEntry = std::mem::zeroed();
                rt.rt_dst = sockaddr_in([0; 4]);
                rt.rt_genmask = sockaddr_in([0; 4]);
                rt.rt_gateway = sockaddr_in(gw);
                rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
                rt.rt_dev = dev.as_mut_ptr() as *mut c_char;
                check_int(libc::ioctl(fd, libc::SIOCADDRT, &mut rt as *mut RtEntry))?;
            }
            Ok(())
        })();
        libc::close(fd);
        r
    }
}

pub fn pidfd_send_signal(pidfd: c_int, sig: c_int) -> SysResult<()> {
    // SAFETY: plain integers and a null siginfo.
    check(unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, std::ptr::null::<c_void>(), 0)
    })
    .map(|_| ())
}

/// waitid(P_PIDFD); Ok(None) when WNOHANG found nothing to reap. The exit
/// status of [`waitid_pidfd_usage`], without the resource use.
pub fn waitid_pidfd(pidfd: c_int, nohang: bool) -> SysResult<Option<i32>> {
    Ok(waitid_pidfd_usage(pidfd, nohang)?.map(|(rc, _)| rc))
}

/// Remove a directory whose entries are known, deepest first (`(relative path,
/// is a directory)`, a missing one skipped), then the directory itself: one
/// unlinkat each instead of a walk. Ok(false), with what is left in place, when
/// an entry cannot go (a container that wrote into its layer: the caller walks
/// the rest); Ok(true) when the directory is gone, or was already.
pub fn remove_entries(dir: &CStr, entries: &[(CString, bool)]) -> SysResult<bool> {
    let fd = match open(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(e),
    };
    let mut all = true;
    for (rel, is_dir) in entries {
        let flags = if *is_dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: fd is our open directory, rel a NUL-terminated relative path.
        if let Err(e) = check_int(unsafe { libc::unlinkat(fd, rel.as_ptr(), flags) }) {
            if e != libc::ENOENT {
                all = false;
                break;
            }
        }
    }
    close(fd);
    if !all {
        return Ok(false);
    }
    // SAFETY: dir is a NUL-terminated path.
    Ok(check_int(unsafe { libc::rmdir(dir.as_ptr()) }).is_ok())
}

/// poll(2) one descriptor for readability; Ok(true) when readable.
pub fn poll_readable(fd: c_int, timeout_ms: c_int) -> SysResult<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    let n = check_int(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0)
}

pub fn write_file_at(dirfd: c_int, name: &std::ffi::CStr, data: &[u8]) -> SysResult<()> {
    // SAFETY: name is NUL-terminated; the fd is closed before returning.
    let fd = check_int(unsafe { libc::openat(dirfd, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let r = write_all(fd, data);
    close(fd);
    r
}

/// setrlimit through prlimit64 on ourselves (no glibc state involved).
pub fn setrlimit(resource: c_int, soft: u64, hard: u64) -> SysResult<()> {
    let lim = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
    // SAFETY: lim is a live rlimit64; a null old-limit pointer is allowed.
    check(unsafe {
        libc::syscall(libc::SYS_prlimit64, 0, resource, &lim as *const libc::rlimit64, std::ptr::null_mut::<c_void>())
    })
    .map(|_| ())
}

pub fn prctl(option: c_int, arg2: c_ulong) -> SysResult<()> {
    // SAFETY: prctl options used here take integers only.
    check_int(unsafe { libc::prctl(option, arg2, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(|_| ())
}

/// capset(2), version 3: the same 64-bit mask for effective, permitted and inheritable.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> SysResult<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let word = |m: u64, i: usize| (m >> (32 * i)) as u32;
    let hdr = Header { version: 0x2008_0522, pid: 0 };
    let data: [Data; 2] = [0, 1].map(|i| Data {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    // SAFETY: a v3 header and the two data structs the kernel reads.
    check(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) }).map(|_| ())
}

/// seccomp(SECCOMP_SET_MODE_FILTER) with one compiled program.
pub fn seccomp_load(prog: &[seccompiler::sock_filter]) -> SysResult<()> {
    #[repr(C)]
    struct Fprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    let f = Fprog { len: prog.len() as libc::c_ushort, filter: prog.as_ptr() };
    // SAFETY: f points to prog's instructions, which outlive the call; the
    // kernel copies the program.
    check(unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &f as *const Fprog) })
        .map(|_| ())
}

/// Write a small value to a file by path (oom_score_adj).
pub fn write_path(path: &CStr, data: &[u8]) -> SysResult<()> {
    let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC, 0)?;
    let r = write_all(fd, data);
    close(fd);
    r
}

/// The resource use of a reaped process and of the descendants it waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User and system CPU time, microseconds.
    pub utime_us: u64,
    pub stime_us: u64,
    /// Peak resident set size, KiB (ru_maxrss).
    pub maxrss_kib: u64,
}

/// waitid(P_PIDFD) through the raw syscall, whose fifth argument (glibc's
/// wrapper has none) returns the rusage of the reaped child including the
/// descendants it waited for. Ok(None) when WNOHANG found nothing to reap.
pub fn waitid_pidfd_usage(pidfd: c_int, nohang: bool) -> SysResult<Option<(i32, Usage)>> {
    // SAFETY: info and ru are zeroed structs the kernel fills; si_pid and
    // si_status are the fields waitid sets for a CLD_* code.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let mut ru: libc::rusage = std::mem::zeroed();
        let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
        loop {
            let r = libc::syscall(
                libc::SYS_waitid,
                P_PIDFD,
                pidfd as libc::id_t,
                &mut info as *mut libc::siginfo_t,
                flags,
                &mut ru as *mut libc::rusage,
            );
            if r == 0 {
                break;
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(e);
            }
        }
        if info.si_pid() == 0 {
            return Ok(None);
        }
        let status = info.si_status();
        let rc = match info.si_code {
            libc::CLD_EXITED => status,
            _ => -status,
        };
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let usage = Usage { utime_us: us(ru.ru_utime), stime_us: us(ru.ru_stime), maxrss_kib: ru.ru_maxrss as u64 };
        Ok(Some((rc, usage)))
    }
}

/// ioctl(pidfd, PIDFD_GET_MNT_NAMESPACE) (Linux 6.11): a close-on-exec descriptor of the
/// process's mount namespace, which keeps the namespace (and its mounts) alive.
pub fn pidfd_mount_ns(pidfd: c_int) -> SysResult<c_int> {
    const PIDFD_GET_MNT_NAMESPACE: libc::c_ulong = 0xFF03; // _IO(0xFF, 3)
    // SAFETY: plain integers; the ioctl takes no argument and returns a new descriptor.
    check_int(unsafe { libc::ioctl(pidfd, PIDFD_GET_MNT_NAMESPACE, 0) })
}

/// pidfd_open(2): a pidfd for `pid`, close-on-exec.
pub fn pidfd_open(pid: pid_t) -> SysResult<c_int> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as c_int)
}

/// A fork-like clone(2) (no new stack: the child returns 0 on a copy of
/// ours) with extra `flags` such as CLONE_PARENT. Returns the child's pid.
///
/// # Safety
/// As for [`clone3`]: the child side must only do async-signal-safe work and
/// end in execve or _exit.
pub unsafe fn fork_with(flags: u64) -> SysResult<pid_t> {
    // SAFETY: x86_64 clone(flags, stack, parent_tid, child_tid, tls) with a
    // null stack (the child runs on a copy of ours) and no tid pointers.
    let ret = libc::syscall(libc::SYS_clone, flags as c_ulong | libc::SIGCHLD as c_ulong, 0usize, 0usize, 0usize, 0usize);
    check(ret).map(|p| p as pid_t)
}

/// Wait for one of the signals in `set` (rt_sigtimedwait without timeout).
pub fn sigwait(set: &libc::sigset_t) -> SysResult<c_int> {
    // SAFETY: set is a live sigset_t; a null siginfo and a null timeout are allowed.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            set as *const libc::sigset_t,
            std::ptr::null_mut::<libc::siginfo_t>(),
            std::ptr::null::<libc::timespec>(),
            std::mem::size_of::<c_ulong>(),
        )
    })
    .map(|s| s as c_int)
}

/// Reap any child without blocking: Ok(Some((pid, wait status))), Ok(None)
/// when none has exited, Err(ECHILD) when there is none at all.
pub fn reap_any() -> SysResult<Option<(pid_t, c_int)>> {
    let mut status: c_int = 0;
    // SAFETY: status is a live int; a null rusage is allowed.
    let pid = check(unsafe {
        libc::syscall(libc::SYS_wait4, -1 as pid_t, &mut status as *mut c_int, libc::WNOHANG, std::ptr::null_mut::<libc::rusage>())
    })?;
    Ok(if pid == 0 { None } else { Some((pid as pid_t, status)) })
}

pub fn kill(pid: pid_t, sig: c_int) -> SysResult<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_kill, pid, sig) }).map(|_| ())
}

pub fn getpid() -> pid_t {
    // SAFETY: getpid cannot fail; the raw call avoids any cached value of the parent.
    unsafe { libc::syscall(libc::SYS_getpid) as pid_t }
}

pub fn setsid() -> SysResult<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::syscall(libc::SYS_setsid) }).map(|_| ())
}

pub fn setpgid(pid: pid_t, pgid: pid_t) -> SysResult<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_setpgid, pid, pgid) }).map(|_| ())
}

/// Make the terminal on `fd` our controlling terminal (TIOCSCTTY).
pub fn set_controlling_tty(fd: c_int) -> SysResult<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }).map(|_| ())
}

/// tcsetpgrp through TIOCSPGRP: `pgrp` becomes the terminal's foreground group.
pub fn set_foreground(fd: c_int, pgrp: pid_t) -> SysResult<()> {
    // SAFETY: TIOCSPGRP reads a pid_t through the pointer, which is live.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSPGRP, &pgrp as *const pid_t) }).map(|_| ())
}

/// Close every descriptor from `first` up (close_range(2), 5.9+).
pub fn close_from(first: c_uint) -> SysResult<()> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, c_uint::MAX, 0 as c_uint) }).map(|_| ())
}

/// Set a signal's disposition to SIG_IGN or SIG_DFL (no handler functions).
pub fn set_disposition(sig: c_int, ignore: bool) {
    // SAFETY: a zeroed sigaction with only sa_sigaction set is valid.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

// -- the new mount API: idmapped layers and a detached overlay (see idmap.rs) --

pub const OPEN_TREE_CLONE: c_uint = 1;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x0000_0004;
const FSOPEN_CLOEXEC: c_uint = 1;
const FSMOUNT_CLOEXEC: c_uint = 1;
const FSCONFIG_SET_FLAG: c_uint = 0;
const FSCONFIG_SET_STRING: c_uint = 1;
const FSCONFIG_CMD_CREATE: c_uint = 6;

/// open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path` (not recursive).
pub fn open_tree_clone(path: &CStr) -> SysResult<c_int> {
    // SAFETY: path is a NUL-terminated string borrowed for the call; the flags ask for a new fd.
    check(unsafe {
        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint)
    })
    .map(|fd| fd as c_int)
}

/// mount_setattr(MOUNT_ATTR_IDMAP) on a detached mount: its files seen through `userns_fd`'s mapping.
pub fn mount_setattr_idmap(mount_fd: c_int, userns_fd: c_int) -> SysResult<()> {
    let mut attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns_fd as u64 };
    // SAFETY: "" with AT_EMPTY_PATH names mount_fd itself; attr is a live mount_attr of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount_fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as c_uint,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

/// fsopen(2): a filesystem context for `fstype`.
pub fn fsopen(fstype: &CStr) -> SysResult<c_int> {
    // SAFETY: fstype is a NUL-terminated string borrowed for the call.
    check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) }).map(|fd| fd as c_int)
}

/// fsconfig(FSCONFIG_SET_STRING, key, value).
pub fn fsconfig_string(fs_fd: c_int, key: &CStr, value: &CStr) -> SysResult<()> {
    // SAFETY: key and value are NUL-terminated strings borrowed for the call.
    check(unsafe { libc::syscall(libc::SYS_fsconfig, fs_fd, FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0) })
        .map(|_| ())
}

/// fsconfig(FSCONFIG_SET_FLAG, key): a flag option such as "volatile".
pub fn fsconfig_flag(fs_fd: c_int, key: &CStr) -> SysResult<()> {
    // SAFETY: key is a NUL-terminated string borrowed for the call; a flag takes no value.
    check(unsafe { libc::syscall(libc::SYS_fsconfig, fs_fd, FSCONFIG_SET_FLAG, key.as_ptr(), std::ptr::null::<c_void>(), 0) })
        .map(|_| ())
}

/// fsconfig(FSCONFIG_CMD_CREATE): make the superblock.
pub fn fsconfig_create(fs_fd: c_int) -> SysResult<()> {
    // SAFETY: no pointers are passed.
    check(unsafe {
        libc::syscall(libc::SYS_fsconfig, fs_fd, FSCONFIG_CMD_CREATE, std::ptr::null::<c_char>(), std::ptr::null::<c_void>(), 0)
    })
    .map(|_| ())
}

/// fsmount(2): a detached mount of the context's superblock.
pub fn fsmount(fs_fd: c_int) -> SysResult<c_int> {
    // SAFETY: plain integers.
    check(unsafe { libc::syscall(libc::SYS_fsmount, fs_fd, FSMOUNT_CLOEXEC, 0) }).map(|fd| fd as c_int)
}

/// move_mount(2) of the detached mount `mount_fd` onto `target`. Async-signal-safe (the child's).
pub fn move_mount_fd(mount_fd: c_int, target: &CStr) -> SysResult<()> {
    // SAFETY: "" with MOVE_MOUNT_F_EMPTY_PATH names mount_fd itself; target is a NUL-terminated path.
    check(unsafe {
        libc::syscall(libc::SYS_move_mount, mount_fd, c"".as_ptr(), libc::AT_FDCWD, target.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    })
    .map(|_| ())
}

/// A unix stream socket pair, both ends close-on-exec.
pub fn socketpair_cloexec() -> SysResult<(c_int, c_int)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: fds is a live array of two ints the kernel fills.
    check_int(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok((fds[0], fds[1]))
}

/// Room for one descriptor's control message (CMSG_SPACE(sizeof(int)) on 64-bit Linux).
const FD_CMSG_SPACE: usize = 24;

#[repr(C, align(8))]
struct CmsgBuf([u8; FD_CMSG_SPACE]);

/// Send one byte and, when given, one descriptor with it (SCM_RIGHTS).
pub fn send_byte_fd(sock: c_int, byte: u8, fd: Option<c_int>) -> SysResult<()> {
    let mut b = [byte];
    let mut iov = libc::iovec { iov_base: b.as_mut_ptr() as *mut c_void, iov_len: 1 };
    let mut cbuf = CmsgBuf([0; FD_CMSG_SPACE]);
    // SAFETY: msghdr is plain data; all-zero is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        msg.msg_control = cbuf.0.as_mut_ptr() as *mut c_void;
        msg.msg_controllen = FD_CMSG_SPACE as _;
        // SAFETY: the control buffer is live, aligned and CMSG_SPACE(sizeof(int)) long, so the
        // first header and its int of data fit in it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut c_int, fd);
        }
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = check(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as c_long })?;
    if n == 1 { Ok(()) } else { Err(libc::EIO) }
}

/// Receive one byte and the descriptor sent with it, if any (close-on-exec). Ok(None) at EOF.
/// Allocation-free and async-signal-safe (the child's).
pub fn recv_byte_fd(sock: c_int) -> SysResult<Option<(u8, Option<c_int>)>> {
    let mut b = [0u8];
    let mut iov = libc::iovec { iov_base: b.as_mut_ptr() as *mut c_void, iov_len: 1 };
    let mut cbuf = CmsgBuf([0; FD_CMSG_SPACE]);
    // SAFETY: msghdr is plain data; all-zero is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr() as *mut c_void;
    msg.msg_controllen = FD_CMSG_SPACE as _;
    let n = loop {
        // SAFETY: msg points at live buffers for the duration of the call.
        match check(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) as c_long }) {
            Err(libc::EINTR) => continue,
            r => break r?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let mut fd = None;
    // SAFETY: the kernel filled msg_control up to msg_controllen; CMSG_FIRSTHDR checks the length.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
            fd = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const c_int));
        }
    }
    Ok(Some((b[0], fd)))
}
