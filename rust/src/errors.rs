//! The steps of a container's start, and the errors they produce.
//!
//! One `Step` enum names every step, both for the code and for the message a
//! user sees. The child reports a failed step as a fixed-size [`Record`] over
//! the close-on-exec error pipe; the parent turns it into a [`SpawnError`]
//! with the path the plan knows for that step.

use std::fmt;

macro_rules! steps {
    ($($variant:ident = $name:literal,)*) => {
        /// Every step of a container's start, in order. Parent-side steps first.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Step { $($variant,)* }

        impl Step {
            pub const ALL: &'static [Step] = &[$(Step::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Step::$variant => $name,)* }
            }

            pub fn from_u32(v: u32) -> Option<Step> {
                Step::ALL.get(v as usize).copied()
            }
        }
    };
}

steps! {
    // in the parent
    Pipe = "pipe",
    Clone = "clone",
    CgroupAttach = "cgroup attach",
    UserMap = "write uid_map and gid_map",
    IdmapLayer = "idmap an image layer",
    ParentOverlay = "build the overlay",
    ReadStatus = "read child status",
    Start = "start",
    // in the child, in order
    ResetSignals = "reset signals",
    WaitUserMap = "wait for the user namespace mapping",
    UsernsRoot = "become root in the user namespace",
    JoinNetns = "join network namespace",
    MakeRootPrivate = "make mounts private",
    MountRootfs = "mount rootfs",
    AttachRootfs = "attach the parent's overlay",
    Mkdir = "create mount point",
    MkFile = "create file mount point",
    Mount = "mount",
    Remount = "remount",
    SetAttr = "mount_setattr",
    Mknod = "mknod",
    Symlink = "symlink",
    MaskPath = "mask path",
    ReadonlyPath = "readonly path",
    // OCI hooks: after the mounts, the parent runs createRuntime and createContainer
    WaitHooks = "wait for the createRuntime and createContainer hooks",
    PivotRoot = "pivot_root",
    DetachOldRoot = "detach old root",
    ReadonlyRoot = "remount root read-only",
    Sethostname = "sethostname",
    LoopbackUp = "loopback up",
    WaitStart = "wait for start",
    ConfigureInterface = "configure network interface",
    UnshareCgroupns = "unshare cgroup namespace",
    Rlimit = "setrlimit",
    OomScoreAdj = "oom_score_adj",
    Affinity = "sched_setaffinity",
    CapBounding = "drop bounding capabilities",
    Chdir = "chdir",
    Setgroups = "setgroups",
    Setgid = "setgid",
    Setuid = "setuid",
    Capset = "capset",
    NoNewPrivs = "no_new_privs",
    Stdio = "stdio",
    CloseFds = "close inherited fds",
    Setsid = "setsid",
    ControllingTty = "set controlling terminal",
    Seccomp = "seccomp",
    Execve = "execve",
    // the optional init (PID 1) and its child, the command
    InitFork = "init fork",
    ForegroundGroup = "terminal foreground group",
    // exec into a running container: join, then fork into its pid namespace
    JoinNamespaces = "join namespaces",
    ExecFork = "exec fork",
    PidfdOpen = "pidfd_open",
}

/// What the child writes to the error pipe: fixed size, no allocation.
/// `index` is the plan's index for the step (which mount, which exec candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Record {
    pub step: u32,
    pub errno: i32,
    pub index: u32,
}

impl Record {
    pub const SIZE: usize = std::mem::size_of::<Record>();
    /// Written (with errno 0) when the child finished its set-up and waits for start.
    pub const READY: u32 = u32::MAX;
    /// Sent by an exec's first child (errno 0, index the pid): the pid of the process that execs.
    pub const PID: u32 = u32::MAX - 1;
    /// Written (errno 0) when the child has its mounts and waits before pivot_root
    /// (`pause_before_pivot`: the parent runs the OCI createRuntime/createContainer hooks).
    pub const PAUSED: u32 = u32::MAX - 2;

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.step.to_ne_bytes());
        b[4..8].copy_from_slice(&self.errno.to_ne_bytes());
        b[8..12].copy_from_slice(&self.index.to_ne_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Record {
        Record {
            step: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            errno: i32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            index: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// A failed step, with what the user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    pub step: Step,
    pub errno: i32,
    pub path: Option<String>,
    /// A sentence naming what was attempted ("execve of /bin/nosuch failed").
    pub message: String,
}

impl SpawnError {
    pub fn new(step: Step, errno: i32, path: Option<String>, message: String) -> Self {
        SpawnError { step, errno, path, message }
    }

    /// An error of a parent-side syscall, with errno taken from the OS.
    pub fn last_os(step: Step, what: &str) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        SpawnError::new(step, errno, None, format!("{what} failed"))
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (step '{}'", self.message, self.step.name())?;
        if self.errno != 0 {
            write!(f, ", {}", errno_name(self.errno))?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for SpawnError {}

/// A spec value that cannot be turned into a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError { field: field.into(), value: value.into(), reason: reason.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}={:?}: {}", self.field, self.value, self.reason)
    }
}

#[derive(Debug)]
pub enum Error {
    Spec(SpecError),
    Spawn(SpawnError),
}

impl From<SpecError> for Error {
    fn from(e: SpecError) -> Self {
        Error::Spec(e)
    }
}

impl From<SpawnError> for Error {
    fn from(e: SpawnError) -> Self {
        Error::Spawn(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spec(e) => e.fmt(f),
            Error::Spawn(e) => e.fmt(f),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The symbolic name of an errno value, for messages from plain Rust.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETXTBSY => "ETXTBSY",
        _ => "errno",
    }
}
