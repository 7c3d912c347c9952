//! A container's state folder, made in one native call: under the root's shared lock
//! (so a sweep, which takes it exclusively, cannot see the folder before its lock is
//! held) the folder, its lock file held with an exclusive flock, and the overlay's
//! folders. In Python these were a dozen os calls, each handing the GIL to another
//! thread starting a container and waiting to get it back (two threads: the state
//! step's median 506 us against 105 us alone).

use std::ffi::{CStr, CString};

use crate::sys;

/// What failed: the errno and the path it was about.
#[derive(Debug, PartialEq, Eq)]
pub struct Failed {
    pub errno: i32,
    pub path: CString,
}

/// The state folder `dir`, locked (its `lock` file, flock LOCK_EX: the descriptor
/// returned), with `subdirs` (name, mode) in it. `root_lock` is taken shared meanwhile.
/// Err before the lock is held: nothing is left but what was there (the folder itself
/// when it existed: EEXIST). Ok((fd, Some(failed))): the folder and its lock exist and
/// a subfolder failed: the caller removes the folder as it removes any.
pub fn make(root_lock: &CStr, dir: &CStr, lock: &CStr, subdirs: &[(CString, libc::mode_t)]) -> Result<(i32, Option<Failed>), Failed> {
    let fail = |errno: i32, path: &CStr| Failed { errno, path: path.to_owned() };
    let rfd = sys::open(root_lock, libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600).map_err(|e| fail(e, root_lock))?;
    let locked = (|| {
        sys::flock(rfd, libc::LOCK_SH).map_err(|e| fail(e, root_lock))?;
        sys::mkdir(dir, 0o700).map_err(|e| fail(e, dir))?;
        let fd = match sys::open(lock, libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::rmdir(dir);
                return Err(fail(e, lock));
            }
        };
        if let Err(e) = sys::flock(fd, libc::LOCK_EX) {
            sys::close(fd);
            let _ = sys::unlink(lock);
            let _ = sys::rmdir(dir);
            return Err(fail(e, lock));
        }
        Ok(fd)
    })();
    sys::close(rfd);
    let fd = locked?;
    for (path, mode) in subdirs {
        // mkdir then chmod, as the umask may take bits the mode has
        if let Err(e) = sys::mkdir(path, 0o777).and_then(|()| sys::chmod(path, *mode)) {
            return Ok((fd, Some(fail(e, path))));
        }
    }
    Ok((fd, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn c(p: &std::path::Path) -> CString {
        CString::new(p.to_str().unwrap()).unwrap()
    }

    #[test]
    fn a_state_folder_is_made_locked_with_its_subfolders() {
        let root = std::env::temp_dir().join(format!("fastcontain-statedir-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let dir = root.join("0123456789abcdef");
        let subs = [(c(&dir.join("upper")), 0o755), (c(&dir.join("work")), 0o700)];
        let (fd, failed) = make(&c(&root.join("lock")), &c(&dir), &c(&dir.join("lock")), &subs).unwrap();
        assert!(failed.is_none());
        assert_eq!(std::fs::metadata(dir.join("work")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join("upper")).unwrap().permissions().mode() & 0o777, 0o755);
        // the lock is held: another open file description cannot take it
        let other = sys::open(&c(&dir.join("lock")), libc::O_RDWR | libc::O_CLOEXEC, 0).unwrap();
        // SAFETY: other is our open descriptor.
        assert_eq!(unsafe { libc::flock(other, libc::LOCK_EX | libc::LOCK_NB) }, -1);
        sys::close(other);
        // the same folder again: EEXIST, and the first one untouched
        let again = make(&c(&root.join("lock")), &c(&dir), &c(&dir.join("lock")), &subs).unwrap_err();
        assert_eq!((again.errno, again.path.as_c_str()), (libc::EEXIST, c(&dir).as_c_str()));
        assert!(dir.join("upper").is_dir());
        sys::close(fd);
        // a subfolder that cannot be made is reported with the lock held
        let bad = root.join("fedcba9876543210");
        let subs = [(c(&bad.join("no/such/parent")), 0o755)];
        let (fd, failed) = make(&c(&root.join("lock")), &c(&bad), &c(&bad.join("lock")), &subs).unwrap();
        assert_eq!(failed.unwrap().errno, libc::ENOENT);
        sys::close(fd);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
