//! Plan, then clone: the spec becomes a plan of C strings, flags and
//! operations before `clone3`, so the child only carries it out.
//!
//! The plan has two halves: [`Plan`], what the child reads (no allocation
//! needed to use it), and [`Describe`], the words the parent needs to turn a
//! child's `{step, errno, index}` record into a message naming the path.

use std::ffi::CString;
use std::sync::Arc;
use std::os::unix::fs::FileTypeExt;

use libc::{c_char, c_ulong, mode_t};

use crate::errors::{errno_name, Record, SpawnError, SpecError, Step};
use crate::mount::{self, BIND_REMOUNT_FLAGS, DEVICES, DEV_LINKS};
use crate::namespaces;
use crate::spec::{MountSpec, Spec};
use crate::sys;
use crate::{caps, seccomp::Program};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The child's stack buffer for `mkdir -p`; longer paths are refused in the plan.
pub const MAX_PATH: usize = 4096;

/// One operation of the child's set-up before pivot_root. Paths are host paths
/// under the rootfs.
#[derive(Debug)]
pub enum Op {
    /// mkdir -p; an existing directory is fine.
    Mkdir { path: CString, mode: mode_t },
    /// Make sure a file exists (a mount point for a bind of a file).
    MkFile { parent: CString, path: CString },
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// mount_setattr(AT_RECURSIVE): read-only (etc.) over a whole rbind.
    SetAttr { target: CString, attr: u64 },
    Mknod { path: CString, mode: mode_t, dev: libc::dev_t },
    /// A device node of the host's, made with its owner (its folder made before, by a Mkdir).
    Node { path: CString, mode: mode_t, dev: libc::dev_t, uid: libc::uid_t, gid: libc::gid_t },
    Symlink { target: CString, link: CString },
    /// Hide a path: an empty read-only tmpfs over a directory, /dev/null over
    /// anything else. A path the kernel does not have is skipped.
    Mask { target: CString, null: CString, file: bool },
    /// Bind a path onto itself read-only, recursively. Missing paths are skipped.
    /// `inherit`: the mount it lies on is read-only for now (ProcAttr), which the bind
    /// keeps (a bind copies its source's mount flags): no mount_setattr of its own
    /// (nothing is mounted below it then).
    ReadOnly { target: CString, inherit: bool },
    /// mount_setattr of one mount (not recursive): /proc read-only while the read-only
    /// paths in it are bound, then writable again (2 calls instead of one per path).
    ProcAttr { target: CString, set: u64, clear: u64 },
}

impl Op {
    pub fn step(&self) -> Step {
        match self {
            Op::Mkdir { .. } => Step::Mkdir,
            Op::MkFile { .. } => Step::MkFile,
            Op::Mount { flags, .. } if flags & libc::MS_REMOUNT != 0 => Step::Remount,
            Op::Mount { .. } => Step::Mount,
            Op::SetAttr { .. } => Step::SetAttr,
            Op::Mknod { .. } | Op::Node { .. } => Step::Mknod,
            Op::Symlink { .. } => Step::Symlink,
            Op::Mask { .. } => Step::MaskPath,
            Op::ReadOnly { .. } | Op::ProcAttr { .. } => Step::ReadonlyPath,
        }
    }
}

/// The user namespace's part of a plan: what the parent writes and prepares.
#[derive(Debug)]
pub struct UsernsPlan {
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    /// The host ids of root inside.
    pub root_uid: libc::uid_t,
    pub root_gid: libc::gid_t,
    pub own: Vec<CString>,
    pub traverse: Vec<CString>,
    /// The overlay the parent builds and sends to the child (None: the child mounts rootfs_mount).
    pub overlay: Option<crate::idmap::ParentOverlay>,
    pub setgroups_deny: bool,
    /// newuidmap and newgidmap, with the (inside, outside, count) lines they are given.
    pub map_helpers: Option<[(String, Vec<(u32, u32, u32)>); 2]>,
}

/// Map lines as /proc/PID/uid_map takes them; inside 0 must be mapped, ranges may not overlap.
fn id_map(field: &str, map: &[(u32, u32, u32)]) -> Result<(Vec<u8>, u32), SpecError> {
    if map.is_empty() || map.len() > 340 {
        return Err(SpecError::new(field, format!("{map:?}"), "1 to 340 (inside, outside, count) ranges"));
    }
    let mut text = String::new();
    let mut root = None;
    for (i, &(inside, outside, count)) in map.iter().enumerate() {
        if count == 0 || inside.checked_add(count).is_none() || outside.checked_add(count).is_none() {
            return Err(SpecError::new(format!("{field}[{i}]"), format!("{inside}:{outside}:{count}"), "an empty or overflowing range"));
        }
        for &(i2, o2, c2) in &map[..i] {
            if inside < i2 + c2 && i2 < inside + count || outside < o2 + c2 && o2 < outside + count {
                return Err(SpecError::new(format!("{field}[{i}]"), format!("{inside}:{outside}:{count}"), "overlaps an earlier range"));
            }
        }
        if inside == 0 {
            root = Some(outside);
        }
        text.push_str(&format!("{inside} {outside} {count}\n"));
    }
    let root = root.ok_or_else(|| SpecError::new(field, format!("{map:?}"), "uid 0 inside must be mapped"))?;
    Ok((text.into_bytes(), root))
}

/// An interface to configure after start (see spec::Interface), as the ioctls take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePlan {
    pub name: [u8; 16],
    pub address: [u8; 4],
    pub mask: [u8; 4],
    pub gateway: Option<[u8; 4]>,
}

/// What the child carries out.
pub struct Plan {
    pub clone_flags: u64,
    pub cgroup_fd: Option<i32>,
    /// Joined first (setns): a network namespace made ahead, or another container's.
    pub netns_fd: Option<i32>,
    /// v1 cgroup.procs files the child joins by writing "0", before late_cgroupns.
    pub cgroup_procs_fds: Vec<i32>,
    pub wait_for_start: bool,
    /// Take a descriptor of the child's mount namespace once it is cloned (spec.hold_mount_ns).
    pub hold_mount_ns: bool,
    /// Stop after the mounts, before pivot_root, until the parent says go on (OCI hooks).
    pub pause_before_pivot: bool,
    pub rootfs: CString,
    /// The mount that makes the rootfs directory the container's root.
    pub rootfs_mount: Op,
    /// The mount steps after the rootfs's, carried out from it (the child's working
    /// directory then). Shared by every container whose steps are the same (OpsCache).
    pub ops: Arc<Vec<Op>>,
    pub readonly_root: bool,
    pub hostname: Option<Vec<u8>>,
    pub loopback_up: bool,
    pub interface: Option<InterfacePlan>,
    /// The cgroup namespace is made after start, once the caller has placed
    /// the child in its cgroups (as runc does), so that its root is the
    /// container's cgroup in every hierarchy, v1 ones included.
    pub late_cgroupns: bool,
    /// (resource, soft, hard) for setrlimit.
    pub rlimits: Vec<(libc::c_int, u64, u64)>,
    pub oom_score_adj: Option<Vec<u8>>,
    /// The capability mask kept (bounding, permitted, effective, inheritable); None keeps all.
    pub caps: Option<u64>,
    pub last_cap: u32,
    pub no_new_privs: bool,
    pub seccomp: Option<Arc<Program>>,
    pub cpus: Option<libc::cpu_set_t>,
    pub userns: Option<UsernsPlan>,
    pub cwd: CString,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    /// False in a user namespace whose setgroups is "deny" (rootless): the groups stay as inherited.
    pub set_groups: bool,
    pub umask: mode_t,
    pub stdio: [i32; 3],
    /// Run the command under a minimal init (see `child::init`).
    pub init: bool,
    /// setsid, then fd 0 becomes the controlling terminal.
    pub tty: bool,
    /// exec: (pidfd, CLONE_NEW* flags) of the container to join; the mount
    /// half of the plan is empty then.
    pub join: Option<(i32, i32)>,
    /// execve candidates, in search order.
    pub exec_paths: Vec<CString>,
    // argv and envp as NULL-terminated pointer arrays into the CStrings below.
    _argv: Vec<CString>,
    _env: Vec<CString>,
    pub argv_ptrs: Vec<*const c_char>,
    pub env_ptrs: Vec<*const c_char>,
    /// The child's step timestamps (seen by the parent after a vfork-style spawn).
    pub marks: crate::timing::Marks,
}

// SAFETY: the raw pointers point into the heap buffers of `_argv` and `_env`,
// owned by the same Plan, never mutated and never moved (moving a CString
// does not move its buffer).
unsafe impl Send for Plan {}

/// What the parent keeps to explain a child's record.
#[derive(Debug, Clone, Default)]
pub struct Describe {
    /// (path, message) per op, indexed like `Plan::ops`.
    pub ops: Arc<Vec<(String, String)>>,
    pub rootfs: String,
    pub rootfs_what: String,
    pub cwd: String,
    pub argv0: String,
    pub exec_paths: Vec<String>,
    pub path_searched: Option<String>,
    pub hostname: String,
    pub rlimits: Vec<String>,
    /// The host uid of the user namespace's root, when there is one (for EACCES hints).
    pub userns_root: Option<u32>,
    pub interface: String,
}

impl Describe {
    /// The error a child's record stands for.
    pub fn error(&self, r: Record) -> SpawnError {
        let step = Step::from_u32(r.step).unwrap_or(Step::ReadStatus);
        let idx = r.index as usize;
        let (path, message) = match step {
            Step::Mkdir
            | Step::MkFile
            | Step::Mount
            | Step::Remount
            | Step::SetAttr
            | Step::Mknod
            | Step::Symlink
            | Step::MaskPath
            | Step::ReadonlyPath => match self.ops.get(idx) {
                Some((p, m)) if r.errno == libc::EACCES && self.userns_root.is_some() => (
                    Some(p.clone()),
                    format!(
                        "{m} (in a user namespace the container's root is uid {} on the host: it must be able to \
                         reach the path through every parent directory)",
                        self.userns_root.unwrap_or(0)
                    ),
                ),
                Some((p, m)) => (Some(p.clone()), m.clone()),
                None => (None, format!("set-up operation {idx} failed")),
            },
            Step::AttachRootfs => (
                Some(self.rootfs.clone()),
                format!("attaching {} (move_mount) on {} in the container's mount namespace failed", self.rootfs_what, self.rootfs),
            ),
            Step::MountRootfs => (
                Some(self.rootfs.clone()),
                format!("mounting the container's root filesystem ({}) on {} failed", self.rootfs_what, self.rootfs),
            ),
            Step::PivotRoot => {
                (Some(self.rootfs.clone()), format!("pivot_root into {} failed", self.rootfs))
            }
            Step::Rlimit => {
                let what = self.rlimits.get(idx).cloned().unwrap_or_default();
                let hint = if r.errno == libc::EPERM { " (raising a hard limit needs CAP_SYS_RESOURCE, which this host may not grant)" } else { "" };
                (None, format!("setrlimit {what} failed{hint}"))
            }
            Step::Seccomp => (None, "loading the seccomp filter failed".into()),
            Step::WaitUserMap => (None, "waiting for the parent to write the user namespace's uid_map and gid_map failed".into()),
            Step::UsernsRoot => (None, "becoming uid 0 in the new user namespace failed (is 0 mapped?)".into()),
            Step::CapBounding | Step::Capset => (None, format!("{} failed", step.name())),
            Step::DetachOldRoot => (None, "detaching the old root after pivot_root failed".into()),
            Step::ReadonlyRoot => (Some("/".into()), "remounting / read-only failed".into()),
            Step::Sethostname => (None, format!("sethostname({:?}) failed", self.hostname)),
            Step::LoopbackUp => (None, "bringing lo up in the new network namespace failed".into()),
            Step::JoinNetns => (None, "joining the network namespace (setns of netns_fd) failed".into()),
            Step::ConfigureInterface => (None, format!("configuring {} failed", self.interface)),
            Step::Chdir => (
                Some(self.cwd.clone()),
                format!("chdir to the working directory {} failed", self.cwd),
            ),
            Step::Execve => {
                let path = self.exec_paths.get(idx).cloned().unwrap_or_else(|| self.argv0.clone());
                let msg = match &self.path_searched {
                    Some(p) if r.errno == libc::ENOENT => {
                        format!("execve of {} failed: not found in PATH={}", self.argv0, p)
                    }
                    _ => format!("execve of {path} failed"),
                };
                (Some(path), msg)
            }
            Step::JoinNamespaces => {
                let hint = match r.errno {
                    libc::ESRCH => ": the container's init is gone (is the container stopped?)",
                    libc::EINVAL => ": setns through a pidfd needs Linux 5.8 or later",
                    _ => "",
                };
                (None, format!("joining the container's namespaces (setns on its pidfd) failed{hint}"))
            }
            Step::ExecFork => (None, "forking the exec'd process into the container's pid namespace failed".into()),
            Step::InitFork => (None, "the init forking the command failed".into()),
            Step::ControllingTty => (None, "making the terminal the controlling terminal (TIOCSCTTY) failed".into()),
            Step::ForegroundGroup => (None, "making the command the terminal's foreground group failed".into()),
            other => (None, format!("{} failed", other.name())),
        };
        SpawnError::new(step, r.errno, path, message)
    }
}

fn cstring(field: &str, s: &str) -> Result<CString, SpecError> {
    CString::new(s).map_err(|_| SpecError::new(field, s, "contains a NUL byte"))
}

/// Join an absolute container path to the rootfs, refusing `..` and relative paths.
fn host_path(field: &str, rootfs: &str, target: &str) -> Result<String, SpecError> {
    if !target.starts_with('/') {
        return Err(SpecError::new(field, target, "must be an absolute path inside the container"));
    }
    let mut out = rootfs.trim_end_matches('/').to_string();
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                return Err(SpecError::new(field, target, "must not contain '..'"));
            }
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.len() >= MAX_PATH {
        return Err(SpecError::new(field, target, "path too long"));
    }
    Ok(out)
}

struct Builder<'a> {
    rootfs: &'a str,
    ops: Vec<Op>,
    notes: Vec<(String, String)>,
}

impl Builder<'_> {
    fn push(&mut self, op: Op, path: &str, message: String) {
        self.ops.push(op);
        self.notes.push((path.to_string(), message));
    }

    fn mkdir(&mut self, field: &str, target: &str, mode: mode_t) -> Result<String, SpecError> {
        let host = host_path(field, self.rootfs, target)?;
        self.push(
            Op::Mkdir { path: cstring(field, &host)?, mode },
            target,
            format!("creating the mount point {target} in the container failed"),
        );
        Ok(host)
    }

    fn mount(&mut self, field: &str, m: &MountSpec) -> Result<(), SpecError> {
        let parsed = mount::parse_options(&format!("{field}.options"), &m.options)?;
        let is_bind = m.fstype == "bind" || parsed.flags & libc::MS_BIND != 0;
        let target_field = format!("{field}.target");
        let host = if is_bind {
            let meta = std::fs::metadata(&m.source).map_err(|e| {
                let errno = e.raw_os_error().unwrap_or(0);
                SpecError::new(
                    format!("{field}.source"),
                    m.source.clone(),
                    format!("cannot bind it: {} ({e})", errno_name(errno)),
                )
            })?;
            if meta.is_dir() {
                self.mkdir(&target_field, &m.target, 0o755)?
            } else {
                let host = host_path(&target_field, self.rootfs, &m.target)?;
                let parent = host.rsplit_once('/').map(|(p, _)| p).unwrap_or("/").to_string();
                let kind = if meta.file_type().is_char_device() { "device" } else { "file" };
                self.push(
                    Op::MkFile { parent: cstring(&target_field, &parent)?, path: cstring(&target_field, &host)? },
                    &m.target,
                    format!("creating the {kind} mount point {} in the container failed", m.target),
                );
                host
            }
        } else {
            self.mkdir(&target_field, &m.target, 0o755)?
        };
        let target = cstring(&target_field, &host)?;
        let src = cstring(&format!("{field}.source"), &m.source)?;
        if is_bind {
            let recursive = parsed.flags & libc::MS_REC != 0;
            self.push(
                Op::Mount {
                    src: Some(src),
                    target: target.clone(),
                    fstype: None,
                    flags: libc::MS_BIND | (parsed.flags & libc::MS_REC),
                    data: None,
                },
                &m.target,
                format!("bind mount of {} on {} failed", m.source, m.target),
            );
            let extra = parsed.flags & BIND_REMOUNT_FLAGS;
            if extra != 0 {
                if recursive {
                    let mut attr = 0;
                    for (flag, bit) in [
                        (libc::MS_RDONLY, sys::MOUNT_ATTR_RDONLY),
                        (libc::MS_NOSUID, sys::MOUNT_ATTR_NOSUID),
                        (libc::MS_NODEV, sys::MOUNT_ATTR_NODEV),
                        (libc::MS_NOEXEC, sys::MOUNT_ATTR_NOEXEC),
                    ] {
                        if extra & flag != 0 {
                            attr |= bit;
                        }
                    }
                    self.push(
                        Op::SetAttr { target: target.clone(), attr },
                        &m.target,
                        format!("making the bind mount {} {} failed", m.target, m.options.join(",")),
                    );
                } else {
                    self.push(
                        Op::Mount {
                            src: None,
                            target: target.clone(),
                            fstype: None,
                            flags: libc::MS_BIND | libc::MS_REMOUNT | extra,
                            data: None,
                        },
                        &m.target,
                        format!("remounting the bind mount {} with {} failed", m.target, m.options.join(",")),
                    );
                }
            }
        } else {
            let data = if parsed.data.is_empty() {
                None
            } else {
                Some(cstring(&format!("{field}.options"), &parsed.data)?)
            };
            self.push(
                Op::Mount {
                    src: Some(src),
                    target: target.clone(),
                    fstype: Some(cstring(&format!("{field}.type"), &m.fstype)?),
                    flags: parsed.flags,
                    data,
                },
                &m.target,
                format!("mount of {} on {} (type {}) failed", m.source, m.target, m.fstype),
            );
        }
        if parsed.propagation != 0 {
            self.push(
                Op::Mount { src: None, target, fstype: None, flags: parsed.propagation, data: None },
                &m.target,
                format!("changing the propagation of {} failed", m.target),
            );
        }
        Ok(())
    }

    /// The host's nodes a privileged container gets (docker makes them with mknod too).
    fn host_nodes(&mut self, spec: &Spec) -> Result<(), SpecError> {
        if !spec.device_nodes.is_empty() && spec.userns.is_some() {
            return Err(SpecError::new("device_nodes", spec.device_nodes.len().to_string(), "mknod is not for a user namespace"));
        }
        let mut folders: Vec<&str> = vec!["/dev"];
        for (i, (path, mode, major, minor, uid, gid)) in spec.device_nodes.iter().enumerate() {
            let field = format!("device_nodes[{i}]");
            let kind = mode & libc::S_IFMT;
            if !path.starts_with("/dev/") || (kind != libc::S_IFCHR && kind != libc::S_IFBLK) {
                return Err(SpecError::new(field, path.clone(), "a character or block node under /dev"));
            }
            let folder = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("/dev");
            if !folders.contains(&folder) {
                // each folder once (/dev/input, /dev/net, ...), not a mkdir -p per node
                let host = host_path(&field, self.rootfs, folder)?;
                self.push(
                    Op::Mkdir { path: cstring(&field, &host)?, mode: 0o755 },
                    folder,
                    format!("creating the device folder {folder} failed"),
                );
                folders.push(folder);
            }
            let host = host_path(&field, self.rootfs, path)?;
            self.push(
                Op::Node {
                    path: cstring(&field, &host)?,
                    mode: *mode as mode_t,
                    dev: libc::makedev(*major, *minor),
                    uid: *uid,
                    gid: *gid,
                },
                path,
                format!("creating the device node {path} ({major}:{minor}) failed"),
            );
        }
        Ok(())
    }

    fn dev_nodes(&mut self, userns: bool) -> Result<(), SpecError> {
        for (name, major, minor) in DEVICES {
            let target = format!("/dev/{name}");
            let host = host_path("devices", self.rootfs, &target)?;
            if userns {
                // mknod is not for a user namespace: bind the host's node, as runc does
                let parent = host.rsplit_once('/').map(|(p, _)| p).unwrap_or("/").to_string();
                self.push(
                    Op::MkFile { parent: cstring("devices", &parent)?, path: cstring("devices", &host)? },
                    &target,
                    format!("creating the device mount point {target} failed"),
                );
                self.push(
                    Op::Mount { src: Some(cstring("devices", &target)?), target: cstring("devices", &host)?, fstype: None, flags: libc::MS_BIND, data: None },
                    &target,
                    format!("binding the host's {target} failed"),
                );
                continue;
            }
            self.push(
                Op::Mknod {
                    path: cstring("devices", &host)?,
                    mode: libc::S_IFCHR | 0o666,
                    dev: libc::makedev(*major, *minor),
                },
                &target,
                format!("creating the device node {target} ({major}:{minor}) failed"),
            );
        }
        for (link, to) in DEV_LINKS {
            let host = host_path("devices", self.rootfs, link)?;
            self.push(
                Op::Symlink { target: cstring("devices", to)?, link: cstring("devices", &host)? },
                link,
                format!("creating the link {link} -> {to} failed"),
            );
        }
        Ok(())
    }
}

/// RLIMIT_* by name, as in the OCI runtime spec.
pub const RLIMITS: &[(&str, libc::c_int)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU as libc::c_int),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as libc::c_int),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as libc::c_int),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as libc::c_int),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as libc::c_int),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as libc::c_int),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as libc::c_int),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as libc::c_int),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as libc::c_int),
    ("RLIMIT_AS", libc::RLIMIT_AS as libc::c_int),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as libc::c_int),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as libc::c_int),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as libc::c_int),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as libc::c_int),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as libc::c_int),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as libc::c_int),
];

fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") { upper } else { format!("RLIMIT_{upper}") };
    RLIMITS.iter().find(|(n, _)| *n == full).map(|(_, r)| *r)
}

fn ipv4(field: &str, s: &str) -> Result<[u8; 4], SpecError> {
    s.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets())
        .map_err(|_| SpecError::new(field, s, "not a dotted IPv4 address"))
}

fn interface_plan(i: &crate::spec::Interface, d: &mut Describe) -> Result<InterfacePlan, SpecError> {
    if i.name.is_empty() || i.name.len() > 15 || i.name.contains('/') || i.name.contains('\0') {
        return Err(SpecError::new("interface.name", i.name.clone(), "an interface name of 1 to 15 bytes"));
    }
    if i.prefix > 32 {
        return Err(SpecError::new("interface.prefix", i.prefix.to_string(), "a prefix length of 0 to 32"));
    }
    let mut name = [0u8; 16];
    name[..i.name.len()].copy_from_slice(i.name.as_bytes());
    let mask = if i.prefix == 0 { 0u32 } else { u32::MAX << (32 - i.prefix as u32) };
    let gateway = i.gateway.as_deref().map(|g| ipv4("interface.gateway", g)).transpose()?;
    d.interface = format!(
        "{} with {}/{}{}",
        i.name,
        i.address,
        i.prefix,
        i.gateway.as_deref().map(|g| format!(" and a default route via {g}")).unwrap_or_default()
    );
    Ok(InterfacePlan { name, address: ipv4("interface.address", &i.address)?, mask: mask.to_be_bytes(), gateway })
}

fn cpu_set(cpus: &[usize]) -> Result<libc::cpu_set_t, SpecError> {
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpus.is_empty() {
        return Err(SpecError::new("cpus", "[]", "an empty CPU list would leave nothing to run on"));
    }
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(SpecError::new("cpus", c.to_string(), "CPU number too large"));
        }
        // SAFETY: c < CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    Ok(set)
}

/// What a /proc or /sys path of the container's fresh procfs and sysfs is, seen from the
/// host's (the same kernel): None when this kernel has no such path (its mask is
/// skipped: nothing to hide), Some(Some(is_dir)), or Some(None) when unknown here.
///
/// Remembered for KERNEL_PATHS_FOR: the ~16 lstat calls of the default masked and
/// read-only paths were a fifth of building a plan. A path that a module loaded since
/// brings (/sys/devices/virtual/powercap, say) is masked from then on, at most that late.
fn kernel_path_kind(spec: &Spec, path: &str) -> Option<Option<bool>> {
    if !spec.default_mounts || !(path.starts_with("/proc/") || path.starts_with("/sys/")) {
        return Some(None);
    }
    let mut known = KERNEL_PATHS.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    match *known {
        Some((since, _)) if now.duration_since(since) > KERNEL_PATHS_FOR => *known = None,
        _ => {}
    }
    let (_, kinds) = known.get_or_insert_with(|| (now, std::collections::HashMap::new()));
    if let Some(kind) = kinds.get(path) {
        return *kind;
    }
    let kind = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(Some(m.is_dir())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(None),
    };
    kinds.insert(path.to_string(), kind);
    kind
}

/// How long kernel_path_kind's answers are kept.
const KERNEL_PATHS_FOR: std::time::Duration = std::time::Duration::from_secs(1);

type KernelPaths = Option<(std::time::Instant, std::collections::HashMap<String, Option<Option<bool>>>)>;
static KERNEL_PATHS: std::sync::Mutex<KernelPaths> = std::sync::Mutex::new(None);

type Notes = Vec<(String, String)>;

/// The mount steps after the rootfs's (default mounts, device nodes, the caller's
/// mounts, masks, read-only paths, the working directory), their host paths below
/// `rootfs`; and the words for their failures.
fn build_ops(spec: &Spec, ns_flags: u64, rootfs: &str) -> Result<(Arc<Vec<Op>>, Arc<Notes>), SpecError> {
    let mut b = Builder { rootfs, ops: Vec::new(), notes: Vec::new() };
    if spec.default_mounts {
        for (i, m) in default_mounts_for(spec, ns_flags).iter().enumerate() {
            b.mount(&format!("default_mounts[{i}]"), m)?;
            if m.target == "/dev" {
                // nodes and links go into the fresh /dev tmpfs before anything is mounted below it
                b.dev_nodes(spec.userns.is_some())?;
                b.host_nodes(spec)?;
            }
        }
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        b.mount(&format!("mounts[{i}]"), m)?;
    }
    // files are masked by the container's own /dev/null (the host's without default mounts)
    let null = cstring("masked_paths", &if spec.default_mounts { format!("{rootfs}/dev/null") } else { "/dev/null".into() })?;
    for (i, p) in spec.masked_paths.iter().enumerate() {
        let field = format!("masked_paths[{i}]");
        let host = host_path(&field, rootfs, p)?;
        let Some(kind) = kernel_path_kind(spec, p) else { continue };
        // a file first gets /dev/null bound on it; a directory an empty tmpfs (each falls back to the other)
        let file = kind == Some(false);
        b.push(Op::Mask { target: cstring(&field, &host)?, null: null.clone(), file }, p, format!("masking {p} failed"));
    }
    let readonly: Vec<&String> = spec.readonly_paths.iter().filter(|p| kernel_path_kind(spec, p).is_some()).collect();
    // All in the container's own /proc (the defaults): bound while /proc is read-only. A bind's
    // submounts keep their own flags, so not when a mount or a mask lies below one of them.
    let below = |t: &str| readonly.iter().any(|p| t.strip_prefix(p.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/')));
    let inherit = spec.default_mounts
        && readonly.len() > 1
        && readonly.iter().all(|p| p.starts_with("/proc/"))
        && !spec.mounts.iter().any(|m| below(&m.target))
        && !spec.masked_paths.iter().any(|m| below(m));
    let proc = cstring("readonly_paths", &format!("{rootfs}/proc"))?;
    if inherit {
        let attr = Op::ProcAttr { target: proc.clone(), set: sys::MOUNT_ATTR_RDONLY, clear: 0 };
        b.push(attr, "/proc", "making /proc read-only for its read-only paths failed".into());
    }
    for (i, p) in readonly.iter().enumerate() {
        let field = format!("readonly_paths[{i}]");
        let host = host_path(&field, rootfs, p)?;
        b.push(Op::ReadOnly { target: cstring(&field, &host)?, inherit }, p, format!("making {p} read-only failed"));
    }
    if inherit {
        let attr = Op::ProcAttr { target: proc, set: 0, clear: sys::MOUNT_ATTR_RDONLY };
        b.push(attr, "/proc", "making /proc writable again after its read-only paths failed".into());
    }
    if !spec.cwd.trim_end_matches('/').is_empty() {
        // docker and runc create a missing working directory
        let host = host_path("cwd", rootfs, &spec.cwd)?;
        b.push(
            Op::Mkdir { path: cstring("cwd", &host)?, mode: 0o755 },
            &spec.cwd,
            format!("creating the working directory {} failed", spec.cwd),
        );
    }
    Ok((Arc::new(b.ops), Arc::new(b.notes)))
}

/// Mount steps made once for the containers whose steps are the same: those without
/// mounts of their own, device nodes or a user namespace (whose steps read the host:
/// bind sources, the host's nodes, ids), the rest being the same list of default mounts,
/// masks and read-only paths every time. They are built relative to the rootfs, which
/// the child has made its working directory by then (child::run), so the list serves
/// any rootfs; kept for KERNEL_PATHS_FOR, as what the masks depend on. Building them
/// was ~40 us of each spawn (allocations, formatted messages, lstat of kernel paths).
struct OpsCache {
    entries: std::sync::Mutex<Vec<CachedOps>>,
}

struct CachedOps {
    made: std::time::Instant,
    default_mounts: bool,
    sysfs_rw: bool,
    masked_paths: Vec<String>,
    readonly_paths: Vec<String>,
    cwd: String,
    ops: Arc<Vec<Op>>,
    notes: Arc<Notes>,
}

const OPS_CACHED: usize = 8;
static OPS: OpsCache = OpsCache { entries: std::sync::Mutex::new(Vec::new()) };

impl OpsCache {
    fn cacheable(spec: &Spec) -> bool {
        spec.mounts.is_empty() && spec.device_nodes.is_empty() && spec.userns.is_none()
    }

    /// The steps for `spec`, from the cache where they can be (else built with `rootfs`'s host paths).
    fn get(&self, spec: &Spec, ns_flags: u64, rootfs: &str) -> Result<(Arc<Vec<Op>>, Arc<Notes>), SpecError> {
        if !Self::cacheable(spec) {
            return build_ops(spec, ns_flags, rootfs);
        }
        let now = std::time::Instant::now();
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.retain(|e| now.duration_since(e.made) <= KERNEL_PATHS_FOR);
            if let Some(e) = entries.iter().find(|e| {
                e.default_mounts == spec.default_mounts
                    && e.sysfs_rw == spec.sysfs_rw
                    && e.masked_paths == spec.masked_paths
                    && e.readonly_paths == spec.readonly_paths
                    && e.cwd == spec.cwd
            }) {
                return Ok((e.ops.clone(), e.notes.clone()));
            }
        }
        let (ops, notes) = build_ops(spec, ns_flags, ".")?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= OPS_CACHED {
            entries.remove(0);
        }
        entries.push(CachedOps {
            made: now,
            default_mounts: spec.default_mounts,
            sysfs_rw: spec.sysfs_rw,
            masked_paths: spec.masked_paths.clone(),
            readonly_paths: spec.readonly_paths.clone(),
            cwd: spec.cwd.clone(),
            ops: ops.clone(),
            notes: notes.clone(),
        });
        Ok((ops, notes))
    }
}

/// Turn a spec into the plan the child carries out and the words to explain its failures.
pub fn build(spec: &Spec) -> Result<(Plan, Describe), SpecError> {
    build_with(spec, true)
}

/// build(); `cache`: the mount steps from OpsCache where they can be (their paths are
/// relative to the rootfs then).
fn build_with(spec: &Spec, cache: bool) -> Result<(Plan, Describe), SpecError> {
    if let Some(pidfd) = spec.join {
        return build_exec(spec, pidfd);
    }
    if spec.argv.is_empty() {
        return Err(SpecError::new("argv", "[]", "a command is required"));
    }
    if !spec.rootfs.starts_with('/') {
        return Err(SpecError::new("rootfs", spec.rootfs.clone(), "must be an absolute host path"));
    }
    let ns_flags = namespaces::clone_flags(&spec.namespaces)?;
    if ns_flags & libc::CLONE_NEWNS as u64 == 0 {
        return Err(SpecError::new(
            "namespaces",
            spec.namespaces.join(","),
            "a container needs its own mount namespace ('mount') for its root filesystem",
        ));
    }
    if spec.hostname.is_some() && ns_flags & libc::CLONE_NEWUTS as u64 == 0 {
        return Err(SpecError::new(
            "hostname",
            spec.hostname.clone().unwrap_or_default(),
            "setting a hostname needs a 'uts' namespace (it would change the host's)",
        ));
    }
    let rootfs = spec.rootfs.trim_end_matches('/').to_string();
    let mut d = Describe { rootfs: rootfs.clone(), ..Default::default() };

    let mut rootfs_mount = match &spec.overlay {
        Some(o) => {
            if o.lower.is_empty() {
                return Err(SpecError::new("overlay.lower", "[]", "an overlay needs at least one lower layer"));
            }
            for (field, p) in o.lower.iter().map(|p| ("overlay.lower", p))
                .chain([("overlay.upper", &o.upper), ("overlay.work", &o.work)])
            {
                if p.contains(',') || p.contains(':') || !p.starts_with('/') {
                    return Err(SpecError::new(field, p.clone(), "overlay paths must be absolute and free of ',' and ':'"));
                }
            }
            // volatile: no syncs of the throw-away upper layer (umount drops from ~1 ms to ~50 µs here)
            let data = format!("lowerdir={},upperdir={},workdir={},volatile", o.lower.join(":"), o.upper, o.work);
            d.rootfs_what = format!("overlay of {} layer(s), upper {}", o.lower.len(), o.upper);
            Op::Mount {
                src: Some(cstring("overlay", "overlay")?),
                target: cstring("rootfs", &rootfs)?,
                fstype: Some(cstring("overlay", "overlay")?),
                flags: 0,
                data: Some(cstring("overlay", &data)?),
            }
        }
        None => {
            d.rootfs_what = "bind".into();
            Op::Mount {
                src: Some(cstring("rootfs", &rootfs)?),
                target: cstring("rootfs", &rootfs)?,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            }
        }
    };

    if !spec.cwd.starts_with('/') {
        return Err(SpecError::new("cwd", spec.cwd.clone(), "must be an absolute path inside the container"));
    }
    let (ops, notes) = if cache { OPS.get(spec, ns_flags, &rootfs)? } else { build_ops(spec, ns_flags, &rootfs)? };
    d.ops = notes;

    let argv: Vec<CString> = spec
        .argv
        .iter()
        .enumerate()
        .map(|(i, a)| cstring(&format!("argv[{i}]"), a))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if !e.contains('=') {
                return Err(SpecError::new(format!("env[{i}]"), e.clone(), "expected KEY=VALUE"));
            }
            cstring(&format!("env[{i}]"), e)
        })
        .collect::<Result<_, _>>()?;

    let argv0 = spec.argv[0].clone();
    if argv0.is_empty() {
        return Err(SpecError::new("argv[0]", "", "the command is empty"));
    }
    let exec_paths: Vec<String> = if argv0.contains('/') {
        vec![argv0.clone()]
    } else {
        let path = spec
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let v: Vec<String> = path
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{}/{}", dir.trim_end_matches('/'), argv0))
            .collect();
        d.path_searched = Some(path);
        v
    };
    if exec_paths.is_empty() {
        return Err(SpecError::new("env.PATH", "", format!("PATH is empty: cannot find {argv0}")));
    }
    d.exec_paths = exec_paths.clone();
    d.argv0 = argv0;
    let exec_paths: Vec<CString> =
        exec_paths.iter().map(|p| cstring("argv[0]", p)).collect::<Result<_, _>>()?;

    d.cwd = spec.cwd.clone();

    let hostname = match &spec.hostname {
        Some(h) if h.len() > 64 || h.is_empty() => {
            return Err(SpecError::new("hostname", h.clone(), "must be 1 to 64 bytes"));
        }
        Some(h) => {
            d.hostname = h.clone();
            Some(h.as_bytes().to_vec())
        }
        None => None,
    };

    for fd in spec.stdio {
        if fd < -1 {
            return Err(SpecError::new("stdio", fd.to_string(), "a descriptor or -1 to inherit"));
        }
    }

    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());

    if let Some(fd) = spec.cgroup_procs_fds.iter().find(|fd| **fd < 0) {
        return Err(SpecError::new("cgroup_procs_fds", fd.to_string(), "must be open descriptors"));
    }
    // Joined after the clone (by the parent while the child waits, or by the child
    // itself), a cgroup namespace must come after: its root is the cgroup at unshare time.
    let late_cgroupns = (spec.wait_for_start || !spec.cgroup_procs_fds.is_empty())
        && ns_flags & libc::CLONE_NEWCGROUP as u64 != 0;
    let mut clone_flags = ns_flags | sys::CLONE_PIDFD;
    if late_cgroupns {
        clone_flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    if spec.cgroup_fd.is_some() {
        clone_flags |= sys::CLONE_INTO_CGROUP;
    }
    // A network namespace to join instead of a new one: a pool's, made ahead (lo up,
    // perhaps its eth0 too: its ~0.5 ms of creation paid off the container's path), or
    // another container's (container:NAME).
    let netns_fd = match spec.netns_fd {
        Some(fd) if fd < 0 => return Err(SpecError::new("netns_fd", fd.to_string(), "must be an open descriptor")),
        Some(fd) => {
            clone_flags &= !(libc::CLONE_NEWNET as u64);
            Some(fd)
        }
        None => None,
    };

    let mut rlimits = Vec::with_capacity(spec.rlimits.len());
    for (i, (name, soft, hard)) in spec.rlimits.iter().enumerate() {
        let field = format!("rlimits[{i}]");
        let Some(res) = rlimit_resource(name) else {
            return Err(SpecError::new(field, name.clone(), "not a resource setrlimit(2) knows (RLIMIT_NOFILE, RLIMIT_NPROC, ...)"));
        };
        if soft > hard {
            return Err(SpecError::new(field, format!("{name}={soft}:{hard}"), "the soft limit is above the hard limit"));
        }
        rlimits.push((res, *soft, *hard));
        d.rlimits.push(format!("{name}={soft}:{hard}"));
    }
    let oom_score_adj = match spec.oom_score_adj {
        Some(v) if !(-1000..=1000).contains(&v) => {
            return Err(SpecError::new("oom_score_adj", v.to_string(), "must be between -1000 and 1000"));
        }
        Some(v) => Some(v.to_string().into_bytes()),
        None => None,
    };
    let interface = spec.interface.as_ref().map(|i| interface_plan(i, &mut d)).transpose()?;
    if interface.is_some() && (!spec.wait_for_start || (ns_flags & libc::CLONE_NEWNET as u64 == 0 && netns_fd.is_none())) {
        return Err(SpecError::new(
            "interface",
            spec.interface.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            "an interface is made by the parent between create and start: it needs wait_for_start and a network namespace of the container's own",
        ));
    }
    if spec.pause_before_pivot && !spec.wait_for_start {
        return Err(SpecError::new(
            "pause_before_pivot",
            "true",
            "a child paused before pivot_root is set up by the caller until start: it needs wait_for_start",
        ));
    }
    let cap_mask = spec.capabilities.as_deref().map(|c| caps::mask("capabilities", c)).transpose()?;
    let userns = match &spec.userns {
        None => None,
        Some(u) => {
            let (uid_map, root_uid) = id_map("userns.uid_map", &u.uid_map)?;
            let (gid_map, root_gid) = id_map("userns.gid_map", &u.gid_map)?;
            clone_flags |= libc::CLONE_NEWUSER as u64;
            d.userns_root = Some(root_uid);
            let overlay = match (u.overlay_by.as_str(), &spec.overlay) {
                ("parent-idmap" | "parent", Some(o)) => Some(crate::idmap::ParentOverlay {
                    lower: o.lower.iter().map(|p| cstring("overlay.lower", p)).collect::<Result<_, _>>()?,
                    upper: cstring("overlay.upper", &o.upper)?,
                    work: cstring("overlay.work", &o.work)?,
                    idmap: u.overlay_by == "parent-idmap",
                }),
                ("parent-idmap" | "parent", None) | ("child" | "", _) => None,
                (other, _) => {
                    return Err(SpecError::new("userns.overlay_by", other, "expected 'parent-idmap', 'parent' or 'child'"));
                }
            };
            if overlay.is_none() {
                if let (Some(_), Op::Mount { data: Some(data), .. }) = (&spec.overlay, &mut rootfs_mount) {
                    // mounted in the user namespace: overlay's metadata in user.overlay.* xattrs (Linux 5.11+)
                    *data = cstring("overlay", &format!("{},userxattr", data.to_string_lossy()))?;
                }
            } else {
                d.rootfs_what = format!("{} (built by the parent)", d.rootfs_what);
            }
            Some(UsernsPlan {
                uid_map,
                gid_map,
                root_uid,
                root_gid,
                own: u.own.iter().map(|p| cstring("userns.own", p)).collect::<Result<_, _>>()?,
                traverse: u.traverse.iter().map(|p| cstring("userns.traverse", p)).collect::<Result<_, _>>()?,
                overlay,
                setgroups_deny: u.setgroups_deny,
                map_helpers: match u.map_helpers.as_slice() {
                    [] => None,
                    [uid, gid] => Some([(uid.clone(), u.uid_map.clone()), (gid.clone(), u.gid_map.clone())]),
                    _ => return Err(SpecError::new("userns.map_helpers", format!("{:?}", u.map_helpers), "expected [newuidmap, newgidmap]")),
                },
            })
        }
    };
    let plan = Plan {
        clone_flags,
        cgroup_fd: spec.cgroup_fd,
        netns_fd,
        cgroup_procs_fds: spec.cgroup_procs_fds.clone(),
        wait_for_start: spec.wait_for_start,
        hold_mount_ns: spec.hold_mount_ns,
        pause_before_pivot: spec.pause_before_pivot,
        rootfs: cstring("rootfs", &rootfs)?,
        rootfs_mount,
        ops,
        readonly_root: spec.readonly_rootfs,
        hostname,
        loopback_up: ns_flags & libc::CLONE_NEWNET as u64 != 0 && netns_fd.is_none(),
        interface,
        late_cgroupns,
        rlimits,
        oom_score_adj,
        caps: cap_mask,
        last_cap: caps::last_cap(),
        no_new_privs: spec.no_new_privileges,
        seccomp: spec.seccomp.clone(),
        cpus: spec.cpus.as_deref().map(cpu_set).transpose()?,
        userns,
        cwd: cstring("cwd", &spec.cwd)?,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.groups.clone(),
        set_groups: !spec.userns.as_ref().is_some_and(|u| u.setgroups_deny),
        umask: spec.umask as mode_t & 0o777,
        stdio: spec.stdio,
        init: spec.init,
        tty: spec.tty,
        join: None,
        exec_paths,
        _argv: argv,
        _env: env,
        argv_ptrs,
        env_ptrs,
        marks: Default::default(),
    };
    Ok((plan, d))
}

/// The default mounts as a user namespace can make them: sysfs only in a network
/// namespace it owns (else the host's /sys is bound read-only, as runc does), and
/// devpts's gid=5 only when gid 5 is mapped (the kernel refuses an unmapped one).
fn default_mounts_for(spec: &Spec, ns_flags: u64) -> Vec<MountSpec> {
    let mut mounts = mount::default_mounts(spec.sysfs_rw);
    if let Some(u) = &spec.userns {
        let own_netns = ns_flags & libc::CLONE_NEWNET as u64 != 0 && spec.netns_fd.is_none();
        let gid5 = u.gid_map.iter().any(|&(inside, _, count)| inside <= 5 && 5 - inside < count);
        for m in mounts.iter_mut() {
            if m.fstype == "sysfs" && !own_netns {
                *m = MountSpec::new("/sys", "/sys", "bind", &["rbind", "nosuid", "noexec", "nodev", "ro"]);
            }
            if m.fstype == "devpts" && !gid5 {
                m.options.retain(|o| o != "gid=5");
            }
        }
    }
    mounts
}

/// The plan of an exec into a running container: the process half of a
/// container's plan (command, environment, credentials, capabilities,
/// seccomp, rlimits, stdio), with the namespaces of `pidfd` joined instead of
/// created and no mount set-up (joining the mount namespace sets the root and
/// working directory). Built by the same builder, from a spec without its
/// filesystem half, so the two cannot drift apart.
fn build_exec(spec: &Spec, pidfd: i32) -> Result<(Plan, Describe), SpecError> {
    if pidfd < 0 {
        return Err(SpecError::new("join", pidfd.to_string(), "expected the pidfd of a running container's init"));
    }
    let mut join_flags = namespaces::clone_flags(&spec.namespaces)?;
    if spec.userns.is_some() {
        // its user namespace too, mapped already: credentials are then the container's own ids
        join_flags |= libc::CLONE_NEWUSER as u64;
    }
    if join_flags & libc::CLONE_NEWNS as u64 == 0 {
        return Err(SpecError::new(
            "namespaces",
            spec.namespaces.join(","),
            "an exec joins at least the container's mount namespace ('mount'): its root filesystem",
        ));
    }
    if spec.init || spec.wait_for_start || spec.pause_before_pivot {
        return Err(SpecError::new("join", pidfd.to_string(), "an exec takes neither init nor wait_for_start"));
    }
    let process_only = Spec {
        join: None,
        rootfs: "/".into(),
        overlay: None,
        readonly_rootfs: false,
        namespaces: vec!["mount".into()],
        hostname: None,
        default_mounts: false,
        mounts: Vec::new(),
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
        userns: None,
        ..spec.clone()
    };
    let (mut plan, mut d) = build(&process_only)?;
    plan.ops = Arc::default();
    d.ops = Arc::default();
    plan.clone_flags = sys::CLONE_PIDFD | if spec.cgroup_fd.is_some() { sys::CLONE_INTO_CGROUP } else { 0 };
    plan.loopback_up = false;
    plan.late_cgroupns = false;
    plan.join = Some((pidfd, join_flags as i32));
    plan.set_groups = !spec.userns.as_ref().is_some_and(|u| u.setgroups_deny);
    Ok((plan, d))
}

/// The mount table of a spec as (source, target, fstype, flags, data): for tests and debugging.
/// One row of [`mount_table`]: (source, target, fstype, flags, data).
pub type MountRow = (String, String, String, u64, String);

pub fn mount_table(spec: &Spec) -> Result<Vec<MountRow>, SpecError> {
    let (plan, _) = build_with(spec, false)?; // host paths, not the cache's relative ones
    let s = |c: &Option<CString>| c.as_ref().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(std::iter::once(&plan.rootfs_mount)
        .chain(plan.ops.iter())
        .filter_map(|op| match op {
            Op::Mount { src, target, fstype, flags, data } => Some((
                s(src),
                target.to_string_lossy().into_owned(),
                s(fstype),
                *flags,
                s(data),
            )),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Overlay;

    fn spec() -> Spec {
        Spec {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin:/usr/bin".into()],
            rootfs: "/run/fc/rootfs".into(),
            overlay: Some(Overlay { lower: vec!["/img/a".into(), "/img/b".into()], upper: "/run/fc/up".into(), work: "/run/fc/work".into() }),
            ..Spec::default()
        }
    }

    #[test]
    fn overlay_data_lists_layers_topmost_first() {
        let t = mount_table(&spec()).unwrap();
        assert_eq!(t[0].1, "/run/fc/rootfs");
        assert_eq!(t[0].2, "overlay");
        assert_eq!(t[0].4, "lowerdir=/img/a:/img/b,upperdir=/run/fc/up,workdir=/run/fc/work,volatile");
    }

    #[test]
    fn default_mounts_land_under_the_rootfs_in_order() {
        let t = mount_table(&spec()).unwrap();
        let targets: Vec<&str> = t.iter().skip(1).map(|m| m.1.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/run/fc/rootfs/proc",
                "/run/fc/rootfs/sys",
                "/run/fc/rootfs/dev",
                "/run/fc/rootfs/dev/pts",
                "/run/fc/rootfs/dev/shm",
                "/run/fc/rootfs/dev/mqueue"
            ]
        );
        let sys = &t[2];
        assert_eq!(sys.2, "sysfs");
        assert!(sys.3 & libc::MS_RDONLY != 0);
        let dev = &t[3];
        assert_eq!(dev.4, "mode=755,size=65536k");
    }

    #[test]
    fn device_nodes_follow_the_dev_tmpfs() {
        let (plan, d) = build(&spec()).unwrap();
        let dev_mount = d.ops.iter().position(|(p, m)| p == "/dev" && m.starts_with("mount of")).unwrap();
        let null = d.ops.iter().position(|(p, _)| p == "/dev/null").unwrap();
        let pts = d.ops.iter().position(|(p, m)| p == "/dev/pts" && m.starts_with("mount of")).unwrap();
        assert!(dev_mount < null && null < pts);
        match &plan.ops[null] {
            Op::Mknod { mode, dev, .. } => {
                assert_eq!(*mode, libc::S_IFCHR | 0o666);
                assert_eq!(*dev, libc::makedev(1, 3));
            }
            other => panic!("expected mknod, got {other:?}"),
        }
    }

    #[test]
    fn privileged_gets_a_writable_sys_and_the_hosts_nodes_each_folder_made_once() {
        let mut s = spec();
        s.sysfs_rw = true;
        s.device_nodes = vec![
            ("/dev/kmsg".into(), libc::S_IFCHR | 0o644, 1, 11, 0, 0),
            ("/dev/input/event0".into(), libc::S_IFCHR | 0o660, 13, 64, 0, 104),
            ("/dev/input/event1".into(), libc::S_IFCHR | 0o660, 13, 65, 0, 104),
        ];
        let t = mount_table(&s).unwrap();
        assert!(t[2].3 & libc::MS_RDONLY == 0, "sysfs rw");
        let (plan, d) = build(&s).unwrap();
        let pts = d.ops.iter().position(|(p, m)| p == "/dev/pts" && m.starts_with("mount of")).unwrap();
        let made: Vec<&str> = d.ops.iter().map(|(p, _)| p.as_str()).filter(|p| p.starts_with("/dev/input") || *p == "/dev/kmsg").collect();
        assert_eq!(made, ["/dev/kmsg", "/dev/input", "/dev/input/event0", "/dev/input/event1"]);
        let event1 = d.ops.iter().position(|(p, _)| p == "/dev/input/event1").unwrap();
        assert!(event1 < pts, "made in the fresh /dev before anything is mounted below it");
        match &plan.ops[event1] {
            Op::Node { dev, gid, .. } => assert_eq!((*dev, *gid), (libc::makedev(13, 65), 104)),
            other => panic!("expected a node, got {other:?}"),
        }
        s.device_nodes = vec![("/etc/passwd".into(), libc::S_IFREG | 0o644, 0, 0, 0, 0)];
        assert_eq!(build(&s).err().unwrap().field, "device_nodes[0]");
    }

    #[test]
    fn readonly_rbind_uses_recursive_setattr_and_plain_ro_bind_a_remount() {
        let mut s = spec();
        s.mounts = vec![
            MountSpec::new("/usr", "/usr", "bind", &["rbind", "ro"]),
            MountSpec::new("/etc/hostname", "/etc/hostname", "bind", &["bind", "ro"]),
        ];
        let (plan, d) = build(&s).unwrap();
        let usr: Vec<&Op> = plan.ops.iter().zip(d.ops.iter()).filter(|(_, (p, _))| p == "/usr").map(|(o, _)| o).collect();
        assert!(matches!(usr[0], Op::Mkdir { .. }));
        assert!(matches!(usr[1], Op::Mount { flags, .. } if *flags == libc::MS_BIND | libc::MS_REC));
        assert!(matches!(usr[2], Op::SetAttr { attr, .. } if *attr == sys::MOUNT_ATTR_RDONLY));
        let f: Vec<&Op> = plan.ops.iter().zip(d.ops.iter()).filter(|(_, (p, _))| p == "/etc/hostname").map(|(o, _)| o).collect();
        assert!(matches!(f[0], Op::MkFile { .. }), "a file source gets a file mount point");
        assert!(matches!(f[2], Op::Mount { flags, .. } if *flags == libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY));
    }

    #[test]
    fn bind_of_missing_source_names_the_field() {
        let mut s = spec();
        s.mounts = vec![MountSpec::new("/no/such/dir/fastcontain", "/x", "bind", &["rbind"])];
        let e = build(&s).err().unwrap();
        assert_eq!(e.field, "mounts[0].source");
        assert!(e.reason.contains("ENOENT"), "{}", e.reason);
    }

    #[test]
    fn a_working_directory_is_created_last_and_slash_is_not() {
        let mut s = spec();
        s.cwd = "/work/dir".into();
        let (plan, d) = build(&s).unwrap();
        assert_eq!(d.ops.last().unwrap().0, "/work/dir");
        assert!(matches!(plan.ops.last().unwrap(), Op::Mkdir { path, .. } if path.to_str().unwrap() == "./work/dir")); // relative to the rootfs (OpsCache)
        s.cwd = "/".into();
        let (_, d) = build(&s).unwrap();
        assert!(d.ops.iter().all(|(p, _)| p != "/"));
    }

    #[test]
    fn a_waiting_child_makes_its_cgroup_namespace_after_start() {
        let mut s = spec();
        let (plan, _) = build(&s).unwrap();
        assert!(!plan.late_cgroupns && plan.clone_flags & libc::CLONE_NEWCGROUP as u64 != 0);
        s.wait_for_start = true;
        let (plan, _) = build(&s).unwrap();
        assert!(plan.late_cgroupns && plan.clone_flags & libc::CLONE_NEWCGROUP as u64 == 0);
    }

    #[test]
    fn targets_may_not_climb_out() {
        let mut s = spec();
        s.mounts = vec![MountSpec::new("tmpfs", "/tmp/../../etc", "tmpfs", &[])];
        let e = build(&s).err().unwrap();
        assert_eq!(e.field, "mounts[0].target");
    }

    #[test]
    fn command_is_searched_in_the_spec_path() {
        let (plan, d) = build(&spec()).unwrap();
        assert_eq!(d.exec_paths, ["/bin/sh", "/usr/bin/sh"]);
        assert_eq!(plan.exec_paths.len(), 2);
        assert_eq!(*plan.argv_ptrs.last().unwrap(), std::ptr::null());
        let mut s = spec();
        s.argv = vec!["/opt/x".into()];
        let (_, d) = build(&s).unwrap();
        assert_eq!(d.exec_paths, ["/opt/x"]);
        assert!(d.path_searched.is_none());
    }

    #[test]
    fn exec_error_message_names_the_path() {
        let mut s = spec();
        s.argv = vec!["/bin/nosuch".into()];
        let (_, d) = build(&s).unwrap();
        let e = d.error(Record { step: Step::Execve as u32, errno: libc::ENOENT, index: 0 });
        assert_eq!(e.message, "execve of /bin/nosuch failed");
        assert_eq!(e.path.as_deref(), Some("/bin/nosuch"));
        let (_, d) = build(&spec()).unwrap();
        let e = d.error(Record { step: Step::Execve as u32, errno: libc::ENOENT, index: 1 });
        assert_eq!(e.message, "execve of sh failed: not found in PATH=/bin:/usr/bin");
    }

    #[test]
    fn mount_error_names_the_container_path() {
        let mut s = spec();
        s.mounts = vec![MountSpec::new("tmpfs", "/scratch", "tmpfs", &["size=1m"])];
        let (plan, d) = build(&s).unwrap();
        let idx = plan.ops.len() - 1;
        let e = d.error(Record { step: Step::Mount as u32, errno: libc::EINVAL, index: idx as u32 });
        assert_eq!(e.path.as_deref(), Some("/scratch"));
        assert_eq!(e.message, "mount of tmpfs on /scratch (type tmpfs) failed");
    }

    #[test]
    fn hostname_without_uts_is_refused() {
        let mut s = spec();
        s.hostname = Some("box".into());
        s.namespaces = vec!["mount".into(), "pid".into()];
        assert_eq!(build(&s).err().unwrap().field, "hostname");
    }

    #[test]
    fn mount_namespace_is_required_and_flags_follow_namespaces() {
        let mut s = spec();
        s.namespaces = vec!["pid".into()];
        assert_eq!(build(&s).err().unwrap().field, "namespaces");
        let (plan, _) = build(&spec()).unwrap();
        assert!(plan.loopback_up);
        assert!(plan.clone_flags & sys::CLONE_PIDFD != 0);
        assert!(plan.clone_flags & sys::CLONE_INTO_CGROUP == 0);
        let mut s = spec();
        s.cgroup_fd = Some(7);
        s.namespaces = vec!["mount".into()];
        let (plan, _) = build(&s).unwrap();
        assert!(plan.clone_flags & sys::CLONE_INTO_CGROUP != 0);
        assert!(!plan.loopback_up);
    }

    #[test]
    fn masks_follow_what_the_kernel_has() {
        let mut s = spec();
        s.masked_paths = vec!["/proc/no-such-file-fastcontain".into(), "/proc/fs".into(), "/proc/version".into(), "/img/x".into()];
        s.readonly_paths = vec!["/proc/no-such-file-fastcontain".into(), "/proc/sys".into()];
        let (plan, d) = build(&s).unwrap();
        let masks: Vec<(&str, bool)> = plan
            .ops
            .iter()
            .zip(d.ops.iter())
            .filter_map(|(o, (p, _))| match o {
                Op::Mask { file, .. } => Some((p.as_str(), *file)),
                _ => None,
            })
            .collect();
        assert_eq!(masks, [("/proc/fs", false), ("/proc/version", true), ("/img/x", false)]);
        assert_eq!(plan.ops.iter().filter(|o| matches!(o, Op::ReadOnly { .. })).count(), 1);
    }

    #[test]
    fn a_failed_mask_or_read_only_bind_names_its_path() {
        let mut s = spec();
        s.masked_paths = vec!["/proc/fs".into()];
        s.readonly_paths = vec!["/proc/sys".into()];
        let (plan, d) = build(&s).unwrap();
        for (step, path, words) in [(Step::MaskPath, "/proc/fs", "masking /proc/fs failed"),
                                    (Step::ReadonlyPath, "/proc/sys", "making /proc/sys read-only failed")] {
            let idx = plan.ops.iter().position(|o| o.step() == step).unwrap() as u32;
            let e = d.error(Record { step: step as u32, errno: libc::EPERM, index: idx });
            assert_eq!((e.path.as_deref(), e.message.as_str()), (Some(path), words));
        }
    }

    #[test]
    fn containers_with_the_same_mount_steps_share_them_relative_to_their_rootfs() {
        let mut a = spec();
        a.masked_paths = vec!["/proc/fs".into()];
        let mut b = a.clone();
        b.rootfs = "/run/fc/other/rootfs".into();
        let (pa, da) = build(&a).unwrap();
        let (pb, db) = build(&b).unwrap();
        assert!(Arc::ptr_eq(&pa.ops, &pb.ops) && Arc::ptr_eq(&da.ops, &db.ops));
        assert_eq!(pb.rootfs.to_str().unwrap(), "/run/fc/other/rootfs");
        let targets: Vec<&str> = pa.ops.iter().filter_map(|o| match o {
            Op::Mount { target, .. } | Op::Mask { target, .. } => Some(target.to_str().unwrap()),
            _ => None,
        }).collect();
        assert!(targets.contains(&"./proc") && targets.contains(&"./proc/fs"), "{targets:?}");
        assert!(targets.iter().all(|t| t.starts_with("./")), "{targets:?}");
        // other masks: other steps
        let mut c = a.clone();
        c.masked_paths = vec!["/proc/sys".into()];
        assert!(!Arc::ptr_eq(&pa.ops, &build(&c).unwrap().0.ops));
        // mounts of its own: built for it, with host paths
        let mut m = a.clone();
        m.mounts = vec![MountSpec::new("tmpfs", "/data", "tmpfs", &[])];
        let (pm, _) = build(&m).unwrap();
        assert!(!Arc::ptr_eq(&pa.ops, &pm.ops));
        assert!(pm.ops.iter().any(|o| matches!(o, Op::Mount { target, .. } if target.to_str() == Ok("/run/fc/rootfs/data"))));
        // the mount table shows host paths
        assert!(mount_table(&a).unwrap().iter().any(|r| r.1 == "/run/fc/rootfs/proc"));
    }

    #[test]
    fn kernel_paths_are_looked_up_once_a_while() {
        let s = spec();
        assert_eq!(kernel_path_kind(&s, "/proc/sys"), Some(Some(true)));
        assert_eq!(kernel_path_kind(&s, "/proc/no-such-file-fastcontain"), None);
        let known = KERNEL_PATHS.lock().unwrap();
        let (_, kinds) = known.as_ref().unwrap();
        assert_eq!(kinds.get("/proc/sys"), Some(&Some(Some(true))));
        assert_eq!(kinds.get("/proc/no-such-file-fastcontain"), Some(&None));
    }

    #[test]
    fn read_only_paths_in_proc_are_bound_while_proc_is_read_only() {
        let mut s = spec();
        s.readonly_paths = vec!["/proc/sys".into(), "/proc/fs".into(), "/proc/no-such-file-fastcontain".into()];
        let (plan, _) = build(&s).unwrap();
        let tail: Vec<&Op> = plan.ops.iter().filter(|o| matches!(o, Op::ReadOnly { .. } | Op::ProcAttr { .. })).collect();
        assert_eq!(tail.len(), 4, "ro /proc, two binds, rw /proc");
        assert!(matches!(tail[0], Op::ProcAttr { target, set, clear: 0 } if *set == sys::MOUNT_ATTR_RDONLY && target.to_str().unwrap() == "./proc"));
        assert!(tail[1..3].iter().all(|o| matches!(o, Op::ReadOnly { inherit: true, .. })));
        assert!(matches!(tail[3], Op::ProcAttr { set: 0, clear, .. } if *clear == sys::MOUNT_ATTR_RDONLY));
        // a mount below one of them keeps its own flags in a bind: each gets its recursive setattr
        s.mounts = vec![MountSpec::new("tmpfs", "/proc/sys/x", "tmpfs", &[])];
        let (plan, _) = build(&s).unwrap();
        assert!(!plan.ops.iter().any(|o| matches!(o, Op::ProcAttr { .. })));
        assert_eq!(plan.ops.iter().filter(|o| matches!(o, Op::ReadOnly { inherit: false, .. })).count(), 2);
    }

    #[test]
    fn a_user_namespace_maps_root_and_binds_the_device_nodes() {
        let mut s = spec();
        s.userns = Some(crate::spec::Userns { uid_map: vec![(0, 100000, 65536)], gid_map: vec![(0, 200000, 1000)], ..Default::default() });
        let (plan, d) = build(&s).unwrap();
        let u = plan.userns.as_ref().unwrap();
        assert_eq!((u.root_uid, u.root_gid), (100000, 200000));
        assert_eq!(u.uid_map, b"0 100000 65536\n");
        assert!(plan.clone_flags & libc::CLONE_NEWUSER as u64 != 0);
        let null = d.ops.iter().position(|(p, m)| p == "/dev/null" && m.starts_with("binding")).unwrap();
        assert!(matches!(&plan.ops[null], Op::Mount { flags, .. } if *flags == libc::MS_BIND));
        assert!(!plan.ops.iter().any(|o| matches!(o, Op::Mknod { .. })));
        s.userns.as_mut().unwrap().uid_map = vec![(1, 100000, 10)];
        assert_eq!(build(&s).err().unwrap().reason, "uid 0 inside must be mapped");
        s.userns.as_mut().unwrap().uid_map = vec![(0, 100000, 10), (5, 300000, 10)];
        assert_eq!(build(&s).err().unwrap().field, "userns.uid_map[1]");
    }

    #[test]
    fn joining_v1_cgroups_in_the_child_makes_the_cgroup_namespace_late() {
        let mut s = spec();
        s.cgroup_procs_fds = vec![5, 6];
        let (plan, _) = build(&s).unwrap();
        assert!(plan.late_cgroupns && plan.clone_flags & libc::CLONE_NEWCGROUP as u64 == 0);
        assert_eq!(plan.cgroup_procs_fds, [5, 6]);
        s.cgroup_procs_fds = vec![-1];
        assert_eq!(build(&s).err().unwrap().field, "cgroup_procs_fds");
    }

    #[test]
    fn a_prepared_netns_is_joined_instead_of_made() {
        let mut s = spec();
        s.netns_fd = Some(9);
        let (plan, _) = build(&s).unwrap();
        assert_eq!(plan.netns_fd, Some(9));
        assert!(plan.clone_flags & libc::CLONE_NEWNET as u64 == 0 && !plan.loopback_up);
        s.netns_fd = Some(-1);
        assert_eq!(build(&s).err().unwrap().field, "netns_fd");
    }

    #[test]
    fn a_user_namespace_gets_default_mounts_it_can_make() {
        let mut s = spec();
        s.userns = Some(crate::spec::Userns { uid_map: vec![(0, 0, 1)], gid_map: vec![(0, 0, 1)], ..Default::default() });
        s.namespaces = vec!["mount".into(), "pid".into()];
        let m = default_mounts_for(&s, namespaces::clone_flags(&s.namespaces).unwrap());
        let sys = m.iter().find(|m| m.target == "/sys").unwrap();
        assert_eq!((sys.source.as_str(), sys.fstype.as_str()), ("/sys", "bind"), "no netns of its own: the host's /sys");
        assert!(sys.options.contains(&"rbind".to_string()) && sys.options.contains(&"ro".to_string()));
        let pts = m.iter().find(|m| m.fstype == "devpts").unwrap();
        assert!(!pts.options.contains(&"gid=5".to_string()), "gid 5 is not mapped");
        s.namespaces.push("net".into());
        s.userns.as_mut().unwrap().gid_map = vec![(0, 100000, 65536)];
        let m = default_mounts_for(&s, namespaces::clone_flags(&s.namespaces).unwrap());
        assert_eq!(m, mount::default_mounts(false), "its own netns and gid 5 mapped: the usual defaults");
        s.userns = None;
        s.namespaces = vec!["mount".into()];
        assert_eq!(default_mounts_for(&s, namespaces::clone_flags(&s.namespaces).unwrap()), mount::default_mounts(false));
    }

    #[test]
    fn pausing_before_pivot_needs_wait_for_start() {
        let mut s = spec();
        s.pause_before_pivot = true;
        assert_eq!(build(&s).err().unwrap().field, "pause_before_pivot");
        s.wait_for_start = true;
        assert!(build(&s).unwrap().0.pause_before_pivot);
    }

    #[test]
    fn an_exec_plan_joins_and_keeps_only_the_process_half() {
        let mut s = spec();
        s.join = Some(9);
        s.cwd = "/work".into();
        s.mounts = vec![MountSpec::new("tmpfs", "/scratch", "tmpfs", &[])];
        s.masked_paths = vec!["/proc/kcore".into()];
        s.hostname = Some("box".into());
        s.uid = 1000;
        let (plan, d) = build(&s).unwrap();
        let all = ["mount", "pid", "uts", "ipc", "net", "cgroup"].iter().map(|n| namespaces::flag(n).unwrap()).fold(0, |a, f| a | f);
        assert_eq!(plan.join, Some((9, all as i32)));
        assert!(plan.ops.is_empty() && d.ops.is_empty(), "no mount set-up, not even the workdir");
        assert_eq!(plan.clone_flags, sys::CLONE_PIDFD, "no namespace is created");
        assert!(plan.hostname.is_none() && !plan.loopback_up);
        assert_eq!((plan.uid, plan.cwd.to_str().unwrap()), (1000, "/work"));
        assert_eq!(d.exec_paths, ["/bin/sh", "/usr/bin/sh"]);
        s.cgroup_fd = Some(4);
        assert_eq!(build(&s).unwrap().0.clone_flags, sys::CLONE_PIDFD | sys::CLONE_INTO_CGROUP);
        s.namespaces = vec!["pid".into()];
        assert_eq!(build(&s).err().unwrap().field, "namespaces");
        s.namespaces = vec!["mount".into()];
        s.userns = Some(crate::spec::Userns { uid_map: vec![(0, 100000, 65536)], gid_map: vec![(0, 100000, 65536)], ..Default::default() });
        let (plan, _) = build(&s).unwrap();
        assert_eq!(plan.join.unwrap().1, (libc::CLONE_NEWNS | libc::CLONE_NEWUSER) as i32, "its user namespace is joined");
        assert!(plan.userns.is_none(), "and not made or mapped again");
        s.init = true;
        assert_eq!(build(&s).err().unwrap().field, "join");
    }

    #[test]
    fn overlay_paths_with_separators_are_refused() {
        let mut s = spec();
        s.overlay.as_mut().unwrap().upper = "/a,b".into();
        assert_eq!(build(&s).err().unwrap().field, "overlay.upper");
    }

    #[test]
    fn interface_is_planned_as_the_ioctls_take_it() {
        let mut s = spec();
        s.wait_for_start = true;
        s.interface = Some(crate::spec::Interface {
            name: "eth0".into(),
            address: "172.30.1.5".into(),
            prefix: 20,
            gateway: Some("172.30.0.1".into()),
        });
        let (plan, d) = build(&s).unwrap();
        let i = plan.interface.unwrap();
        assert_eq!(&i.name[..5], b"eth0\0");
        assert_eq!(i.address, [172, 30, 1, 5]);
        assert_eq!(i.mask, [255, 255, 240, 0]);
        assert_eq!(i.gateway, Some([172, 30, 0, 1]));
        assert_eq!(d.interface, "eth0 with 172.30.1.5/20 and a default route via 172.30.0.1");
        s.interface.as_mut().unwrap().address = "172.30.1".into();
        assert_eq!(build(&s).err().unwrap().field, "interface.address");
        s.interface.as_mut().unwrap().address = "172.30.1.5".into();
        s.wait_for_start = false;
        assert_eq!(build(&s).err().unwrap().field, "interface");
    }

    #[test]
    fn joining_a_netns_leaves_out_the_new_one() {
        let mut s = spec();
        s.netns_fd = Some(5);
        s.namespaces.retain(|n| n != "net");
        let (plan, _) = build(&s).unwrap();
        assert_eq!(plan.netns_fd, Some(5));
        assert!(!plan.loopback_up);
        assert!(plan.clone_flags & libc::CLONE_NEWNET as u64 == 0);
    }

    fn userns(overlay_by: &str) -> crate::spec::Userns {
        crate::spec::Userns {
            uid_map: vec![(0, 1000, 1)],
            gid_map: vec![(0, 1000, 1)],
            overlay_by: overlay_by.into(),
            ..Default::default()
        }
    }

    #[test]
    fn who_mounts_the_overlay_under_a_user_namespace() {
        let mut s = spec();
        s.userns = Some(userns("parent-idmap"));
        let (plan, _) = build(&s).unwrap();
        let o = plan.userns.as_ref().unwrap().overlay.as_ref().unwrap();
        assert!(o.idmap && o.lower.len() == 2 && o.upper.to_str() == Ok("/run/fc/up"));
        s.userns = Some(userns("parent"));
        assert!(!build(&s).unwrap().0.userns.unwrap().overlay.unwrap().idmap);
        // the child's own mount (rootless) reads overlay's metadata from user.* xattrs
        s.userns = Some(userns("child"));
        let (plan, _) = build(&s).unwrap();
        assert!(plan.userns.as_ref().unwrap().overlay.is_none());
        match &plan.rootfs_mount {
            Op::Mount { data: Some(d), .. } => assert!(d.to_str().unwrap().ends_with(",volatile,userxattr")),
            other => panic!("{other:?}"),
        }
        s.userns = Some(userns("elsewhere"));
        assert_eq!(build(&s).err().unwrap().field, "userns.overlay_by");
    }

    #[test]
    fn one_id_mapped_drops_the_tty_group_and_the_host_network_binds_sys() {
        let mut s = spec();
        s.default_mounts = true;
        s.userns = Some(userns("child"));
        s.namespaces = vec!["mount".into(), "pid".into()];
        let t = mount_table(&s).unwrap();
        let devpts = t.iter().find(|r| r.2 == "devpts").unwrap();
        assert!(!devpts.4.contains("gid=5"), "{devpts:?}");
        let sys = t.iter().find(|r| r.1 == "/run/fc/rootfs/sys").unwrap();
        assert_eq!((sys.0.as_str(), sys.2.as_str()), ("/sys", ""), "{sys:?}");
        s.namespaces.push("net".into());
        let t = mount_table(&s).unwrap();
        assert!(t.iter().any(|r| r.1 == "/run/fc/rootfs/sys" && r.2 == "sysfs"));
    }
}
