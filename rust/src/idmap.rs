//! The root filesystem of a container in a user namespace, built by the parent.
//!
//! The parent (root on the host) makes the overlay as a detached mount with
//! the new mount API and hands it to the child, which only attaches it
//! (`move_mount`) in its own mount namespace:
//!
//! - With idmapped layers (Linux 6.15+ for overlay layers that are detached
//!   mounts): each image layer is cloned (`open_tree(OPEN_TREE_CLONE)`) and
//!   idmapped (`mount_setattr(MOUNT_ATTR_IDMAP)`) through the container's own
//!   user namespace, once the parent has written its maps, so a file owned by
//!   0 in the layer is owned by the container's root. No copy of the image.
//!   The upper and work directories are not idmapped: what the container
//!   writes lands there owned by the host ids of its users (0 inside is the
//!   mapped uid outside), as with a chowned copy.
//! - Without (the fallback): the layers are chowned copies (Python's
//!   `userns.shifted_layer`), mounted the same way.
//!
//! Made by the host's root, the overlay reads its own metadata as it does for
//! a container without a user namespace: `trusted.overlay.opaque` directories
//! and whiteouts of the image's layers hide what they hide. (An overlay the
//! child mounts itself runs with the user namespace's credentials, which
//! cannot read `trusted.*`, so an opaque directory would show the layers
//! below it.)

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::errors::{SpawnError, Step};
use crate::sys;

/// The overlay the parent builds (plan.rs fills it from the spec).
#[derive(Debug)]
pub struct ParentOverlay {
    /// Lower layers, topmost first.
    pub lower: Vec<CString>,
    pub upper: CString,
    pub work: CString,
    /// Idmap the lower layers through the child's user namespace.
    pub idmap: bool,
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: fd was just returned by the kernel to us and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn lossy(p: &CStr) -> String {
    p.to_string_lossy().into_owned()
}

/// The kernel's own words about a failed fsconfig (the context's log: "e overlayfs: ...").
fn fs_log(fs_fd: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        // SAFETY: buf is a live buffer of the length passed.
        let n = unsafe { libc::read(fs_fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n as usize]);
        out.push_str(if out.is_empty() { ": " } else { "; " });
        out.push_str(line.trim_start_matches("e ").trim_end());
    }
    out
}

/// A detached, idmapped clone of `dir` (a directory of the image's store).
pub fn idmapped_clone(dir: &CStr, userns_fd: &OwnedFd) -> Result<OwnedFd, SpawnError> {
    let fd = sys::open_tree_clone(dir).map(owned).map_err(|e| {
        SpawnError::new(Step::IdmapLayer, e, Some(lossy(dir)), format!("open_tree(OPEN_TREE_CLONE) of {} failed", lossy(dir)))
    })?;
    sys::mount_setattr_idmap(fd.as_raw_fd(), userns_fd.as_raw_fd()).map_err(|e| {
        let hint = match e {
            libc::EINVAL => ": the filesystem does not support idmapped mounts",
            libc::EPERM => ": idmapping needs CAP_SYS_ADMIN over the filesystem (root on the host)",
            _ => "",
        };
        SpawnError::new(Step::IdmapLayer, e, Some(lossy(dir)), format!("mount_setattr(MOUNT_ATTR_IDMAP) of {} failed{hint}", lossy(dir)))
    })?;
    Ok(fd)
}

/// An O_PATH descriptor of a directory, for a "/proc/self/fd/N" name (fsconfig takes
/// values of at most 256 bytes: a store's paths may be longer).
fn opath(dir: &CStr, step: Step) -> Result<OwnedFd, SpawnError> {
    sys::open(dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
        .map(owned)
        .map_err(|e| SpawnError::new(step, e, Some(lossy(dir)), format!("opening {} failed", lossy(dir))))
}

fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a /proc path")
}

/// Build the overlay as a detached mount. `userns_fd` is the container's user
/// namespace (needed when `o.idmap`).
pub fn build(o: &ParentOverlay, userns_fd: Option<&OwnedFd>) -> Result<OwnedFd, SpawnError> {
    // the layers as descriptors (idmapped clones, or O_PATH), open until the overlay holds its own copies
    let mut lowers = Vec::with_capacity(o.lower.len());
    for l in &o.lower {
        lowers.push(match (o.idmap, userns_fd) {
            (true, Some(ns)) => idmapped_clone(l, ns)?,
            (true, None) => return Err(SpawnError::new(Step::IdmapLayer, libc::EINVAL, None, "idmapping without a user namespace".into())),
            (false, _) => opath(l, Step::ParentOverlay)?,
        });
    }
    let (upper, work) = (opath(&o.upper, Step::ParentOverlay)?, opath(&o.work, Step::ParentOverlay)?);
    let what = format!("the overlay of {} layer(s){}, upper {}", o.lower.len(), if o.idmap { " (idmapped)" } else { "" }, lossy(&o.upper));
    let fail = |e: i32, call: &str, log: String| {
        let hint = if o.idmap && e == libc::EINVAL { " (overlay layers that are idmapped detached mounts need Linux 6.15+)" } else { "" };
        SpawnError::new(Step::ParentOverlay, e, Some(lossy(&o.upper)), format!("{call} for {what} failed{log}{hint}"))
    };
    let fs = sys::fsopen(c"overlay").map(owned).map_err(|e| fail(e, "fsopen(overlay)", String::new()))?;
    let set = |key: &CStr, value: &CStr| {
        sys::fsconfig_string(fs.as_raw_fd(), key, value).map_err(|e| fail(e, &format!("fsconfig {}={}", lossy(key), lossy(value)), fs_log(&fs)))
    };
    // All layers in one value while it fits fsconfig's 256 bytes (every kernel: before 6.5
    // overlay only gathers its options into a string, parsed at create); else one at a
    // time (lowerdir+, Linux 6.8+).
    let joined = lowers.iter().map(|l| fd_path(l).into_string().unwrap_or_default()).collect::<Vec<_>>().join(":");
    if joined.len() < 256 {
        set(c"lowerdir", &CString::new(joined).expect("no NUL in /proc paths"))?;
    } else {
        for l in &lowers {
            set(c"lowerdir+", &fd_path(l))?;
        }
    }
    set(c"upperdir", &fd_path(&upper))?;
    set(c"workdir", &fd_path(&work))?;
    // volatile: no syncs of the throw-away upper layer (as the child's own overlay mount)
    sys::fsconfig_flag(fs.as_raw_fd(), c"volatile").map_err(|e| fail(e, "fsconfig volatile", fs_log(&fs)))?;
    sys::fsconfig_create(fs.as_raw_fd()).map_err(|e| fail(e, "fsconfig(FSCONFIG_CMD_CREATE)", fs_log(&fs)))?;
    let m = sys::fsmount(fs.as_raw_fd()).map(owned).map_err(|e| fail(e, "fsmount", fs_log(&fs)))?;
    drop((lowers, upper, work));
    Ok(m)
}

/// A detached, empty tmpfs (the probe's second layer).
fn empty_tmpfs() -> Result<OwnedFd, SpawnError> {
    let err = |e: i32| SpawnError::new(Step::ParentOverlay, e, None, "a detached tmpfs for the idmap probe failed".into());
    let fs = sys::fsopen(c"tmpfs").map(owned).map_err(err)?;
    sys::fsconfig_create(fs.as_raw_fd()).map_err(err)?;
    sys::fsmount(fs.as_raw_fd()).map(owned).map_err(err)
}

/// The user namespace of a child (its maps written): the mapping to idmap with.
pub fn userns_of(pid: libc::pid_t) -> Result<OwnedFd, SpawnError> {
    let path = CString::new(format!("/proc/{pid}/ns/user")).expect("no NUL in a /proc path");
    sys::open(&path, libc::O_RDONLY | libc::O_CLOEXEC, 0).map(owned).map_err(|e| {
        SpawnError::new(Step::IdmapLayer, e, Some(lossy(&path)), format!("opening {} failed", lossy(&path)))
    })
}

/// Whether layers in `dir`'s filesystem can be idmapped and stacked by an
/// overlay here: the real thing, once, through a short-lived user namespace
/// (a child that waits, mapped with `uid_map` / `gid_map`). Err names the
/// syscall and errno that refused.
pub fn probe(dir: &CStr, uid_map: &[u8], gid_map: &[u8]) -> Result<(), SpawnError> {
    let (r, w) = sys::pipe_cloexec().map_err(|e| SpawnError::new(Step::Pipe, e, None, "pipe for the idmap probe failed".into()))?;
    let (r, w) = (owned(r), owned(w));
    let mut pidfd: libc::c_int = -1;
    let mut args = sys::CloneArgs {
        flags: libc::CLONE_NEWUSER as u64 | sys::CLONE_PIDFD,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    let old = sys::block_all_signals();
    // SAFETY: the child only reads a pipe and _exits (async-signal-safe).
    let pid = match unsafe { sys::clone3(&mut args) } {
        Ok(0) => {
            sys::close(w.as_raw_fd());
            let mut b = [0u8; 1];
            let _ = sys::read_full(r.as_raw_fd(), &mut b);
            sys::exit_now(0)
        }
        Ok(pid) => pid,
        Err(e) => {
            sys::set_signal_mask(&old);
            return Err(SpawnError::new(Step::Clone, e, None, "clone3(CLONE_NEWUSER) of the idmap probe failed".into()));
        }
    };
    sys::set_signal_mask(&old);
    let pidfd = owned(pidfd);
    let result = (|| {
        for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let path = CString::new(format!("/proc/{pid}/{file}")).expect("no NUL in a /proc path");
            sys::write_path(&path, text)
                .map_err(|e| SpawnError::new(Step::UserMap, e, Some(lossy(&path)), format!("writing {} failed", lossy(&path))))?;
        }
        let ns = userns_of(pid)?;
        // an overlay over an idmapped clone, lower layers only (a second, empty one from a
        // detached tmpfs: overlay refuses two copies of one directory), no upper
        let a = idmapped_clone(dir, &ns)?;
        let b = empty_tmpfs()?;
        let fs = sys::fsopen(c"overlay").map(owned).map_err(|e| SpawnError::new(Step::ParentOverlay, e, None, "fsopen(overlay) failed".into()))?;
        let lower = CString::new(format!("/proc/self/fd/{}:/proc/self/fd/{}", a.as_raw_fd(), b.as_raw_fd())).expect("no NUL");
        let fail = |e: i32, fs: &OwnedFd| {
            SpawnError::new(
                Step::ParentOverlay,
                e,
                Some(lossy(dir)),
                format!("an overlay over idmapped detached layers of {} failed{} (needs Linux 6.15+)", lossy(dir), fs_log(fs)),
            )
        };
        sys::fsconfig_string(fs.as_raw_fd(), c"lowerdir", &lower).map_err(|e| fail(e, &fs))?;
        sys::fsconfig_create(fs.as_raw_fd()).map_err(|e| fail(e, &fs))?;
        let _m = sys::fsmount(fs.as_raw_fd()).map(owned).map_err(|e| fail(e, &fs))?;
        Ok(())
    })();
    drop(w);
    drop(r);
    let _ = sys::waitid_pidfd(pidfd.as_raw_fd(), false);
    result
}
