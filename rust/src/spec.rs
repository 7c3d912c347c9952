//! The spec: one frozen value from Python describing a container to spawn.
//! Plain Rust; `py.rs` fills it from the dict documented in `_native.pyi`.

use std::sync::Arc;

use crate::seccomp::Program;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Read-only lower directories, topmost first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub fstype: String,
    /// mount(8) option names: "ro", "rbind", "nosuid", "mode=755", ...
    pub options: Vec<String>,
}

impl MountSpec {
    pub fn new(source: &str, target: &str, fstype: &str, options: &[&str]) -> Self {
        MountSpec {
            source: source.to_string(),
            target: target.to_string(),
            fstype: fstype.to_string(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A user namespace made with the container's other namespaces (CLONE_NEWUSER):
/// the parent writes the maps while the child waits, before its first mount.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Userns {
    /// (inside, outside, count) lines of uid_map and gid_map; inside 0 must be mapped.
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
    /// Host paths given to the container's root (chown to the outside ids of 0:0) before clone:
    /// its state folder, rootfs mount point, overlay upper and work.
    pub own: Vec<String>,
    /// Host directories the container's root must be able to cross (o+x added before clone).
    pub traverse: Vec<String>,
    /// Who mounts the overlay (see idmap.rs): "parent-idmap" (the parent, over idmapped
    /// clones of the layers), "parent" (the parent, over the layers as given: chowned
    /// copies), "child" or "" (the child, in its user namespace, with `userxattr`: rootless).
    pub overlay_by: String,
    /// Write "deny" to /proc/PID/setgroups before gid_map (an unprivileged parent must);
    /// the child then leaves its groups as they are.
    pub setgroups_deny: bool,
    /// [newuidmap, newgidmap]: the setuid helpers that write the maps (rootless with
    /// /etc/subuid ranges); empty: the parent writes them itself.
    pub map_helpers: Vec<String>,
}

/// An interface the parent put in the container's network namespace while it
/// waited for start (a veth end): configured by the child after start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Dotted IPv4 address and prefix length.
    pub address: String,
    pub prefix: u8,
    /// The default route's next hop, if any.
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub rootfs: String,
    pub overlay: Option<Overlay>,
    pub readonly_rootfs: bool,
    pub namespaces: Vec<String>,
    pub hostname: Option<String>,
    pub default_mounts: bool,
    /// /sys writable (docker's --privileged); read-only otherwise.
    pub sysfs_rw: bool,
    /// Device nodes made in the fresh /dev: (path, st_mode, major, minor, uid, gid) (privileged).
    pub device_nodes: Vec<(String, u32, u32, u32, u32, u32)>,
    pub mounts: Vec<MountSpec>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: u32,
    pub stdio: [i32; 3],
    pub cpus: Option<Vec<usize>>,
    pub cgroup_fd: Option<i32>,
    /// A network namespace to join (setns) instead of making one: a Pool's slot made
    /// ahead, or another container's (container:NAME). "net" in namespaces or not, the
    /// clone makes no new one.
    pub netns_fd: Option<i32>,
    /// Open cgroup.procs files of v1 controllers: the child writes "0" to each (joins
    /// them itself) before its cgroup namespace is made, so no stop before exec is needed.
    pub cgroup_procs_fds: Vec<i32>,
    pub wait_for_start: bool,
    /// Keep a descriptor of the container's mount namespace (Child::take_mount_ns), so that
    /// its teardown (every mount's, the overlay's above all) happens when that descriptor is
    /// closed, on a teardown thread, instead of in the init's exit, before its parent sees it.
    pub hold_mount_ns: bool,
    /// Stop once more, after the mounts and before pivot_root, until the parent
    /// says go on (OCI createRuntime/createContainer hooks run there). Needs wait_for_start.
    pub pause_before_pivot: bool,
    /// The capabilities kept in every set; None keeps what the caller has (privileged).
    pub capabilities: Option<Vec<String>>,
    pub no_new_privileges: bool,
    /// Compiled once per profile (seccomp::compile), shared by every container.
    pub seccomp: Option<Arc<Program>>,
    /// Paths hidden (files under /dev/null, directories under an empty read-only tmpfs).
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// (RLIMIT_NAME, soft, hard); u64::MAX is unlimited.
    pub rlimits: Vec<(String, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    pub userns: Option<Userns>,
    pub interface: Option<Interface>,
    /// Run a minimal init as PID 1 that spawns the command, reaps zombies and forwards signals.
    pub init: bool,
    /// stdio is a terminal: the command gets a new session with fd 0 as its controlling terminal.
    pub tty: bool,
    /// exec: a pidfd of a running container's init whose `namespaces` the
    /// process joins; rootfs, mounts and the rest of the set-up are not used.
    pub join: Option<i32>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/".to_string(),
            rootfs: String::new(),
            overlay: None,
            readonly_rootfs: false,
            namespaces: ["mount", "pid", "uts", "ipc", "net", "cgroup"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            hostname: None,
            default_mounts: true,
            sysfs_rw: false,
            device_nodes: Vec::new(),
            mounts: Vec::new(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            umask: 0o022,
            stdio: [-1, -1, -1],
            cpus: None,
            cgroup_fd: None,
            netns_fd: None,
            cgroup_procs_fds: Vec::new(),
            wait_for_start: false,
            hold_mount_ns: false,
            pause_before_pivot: false,
            capabilities: None,
            no_new_privileges: false,
            seccomp: None,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            rlimits: Vec::new(),
            oom_score_adj: None,
            userns: None,
            interface: None,
            init: false,
            tty: false,
            join: None,
        }
    }
}
