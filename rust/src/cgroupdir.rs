//! A container's cgroup v2 directory made in one native call: mkdir, the owner xattr
//! (for the sweep), an O_DIRECTORY descriptor (CLONE_INTO_CGROUP's), and the device
//! program attached (BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI). From
//! Python these were four calls, each handing the GIL to another thread starting a
//! container, ctypes building the bpf attribute on the way.

use std::ffi::CStr;

use crate::sys;

/// Which part failed (Python words each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Mkdir,
    Open,
    Attach,
}

/// Make `dir`, tag it with `owner` (xattr `name`; a file system refusing xattrs is not an
/// error: the sweep then goes by age), open it and attach the device program `prog` (a
/// loaded BPF_PROG_TYPE_CGROUP_DEVICE program; none when negative). Its descriptor; on
/// failure nothing is left (the directory removed) and the part and errno are returned.
pub fn make(dir: &CStr, owner: Option<(&CStr, &[u8])>, prog: i32) -> Result<i32, (Part, i32)> {
    sys::mkdir(dir, 0o777).map_err(|e| (Part::Mkdir, e))?;
    if let Some((name, value)) = owner {
        let _ = sys::setxattr(dir, name, value);
    }
    let fd = match sys::open(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = sys::rmdir(dir);
            return Err((Part::Open, e));
        }
    };
    if prog >= 0 {
        if let Err(e) = sys::bpf_prog_attach_device(fd, prog) {
            sys::close(fd);
            let _ = sys::rmdir(dir);
            return Err((Part::Attach, e));
        }
    }
    Ok(fd)
}
