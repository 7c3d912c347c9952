//! Mount options and the default mount table, as data.
//!
//! Option names map to mount flags through [`OPTIONS`] (as crun's
//! `mount_flags` table); anything not in it is filesystem data ("mode=755").
//! The default container mounts are [`DEFAULT_MOUNTS`], the same list
//! `runc spec` writes, plus the device nodes and links of a minimal /dev.

use crate::errors::SpecError;
use crate::spec::MountSpec;
use libc::c_ulong;

/// How one option name changes the flags.
#[derive(Debug, Clone, Copy)]
pub enum Effect {
    Set(c_ulong),
    Clear(c_ulong),
    /// A propagation change: needs its own mount(2) call after the mount.
    Propagation(c_ulong),
}

pub const OPTIONS: &[(&str, Effect)] = {
    use libc::*;
    use Effect::*;
    &[
        ("defaults", Clear(0)),
        ("ro", Set(MS_RDONLY)),
        ("rw", Clear(MS_RDONLY)),
        ("nosuid", Set(MS_NOSUID)),
        ("suid", Clear(MS_NOSUID)),
        ("nodev", Set(MS_NODEV)),
        ("dev", Clear(MS_NODEV)),
        ("noexec", Set(MS_NOEXEC)),
        ("exec", Clear(MS_NOEXEC)),
        ("sync", Set(MS_SYNCHRONOUS)),
        ("async", Clear(MS_SYNCHRONOUS)),
        ("dirsync", Set(MS_DIRSYNC)),
        ("mand", Set(MS_MANDLOCK)),
        ("nomand", Clear(MS_MANDLOCK)),
        ("atime", Clear(MS_NOATIME)),
        ("noatime", Set(MS_NOATIME)),
        ("diratime", Clear(MS_NODIRATIME)),
        ("nodiratime", Set(MS_NODIRATIME)),
        ("relatime", Set(MS_RELATIME)),
        ("norelatime", Clear(MS_RELATIME)),
        ("strictatime", Set(MS_STRICTATIME)),
        ("nostrictatime", Clear(MS_STRICTATIME)),
        ("bind", Set(MS_BIND)),
        ("rbind", Set(MS_BIND | MS_REC)),
        ("private", Propagation(MS_PRIVATE)),
        ("rprivate", Propagation(MS_PRIVATE | MS_REC)),
        ("shared", Propagation(MS_SHARED)),
        ("rshared", Propagation(MS_SHARED | MS_REC)),
        ("slave", Propagation(MS_SLAVE)),
        ("rslave", Propagation(MS_SLAVE | MS_REC)),
        ("unbindable", Propagation(MS_UNBINDABLE)),
        ("runbindable", Propagation(MS_UNBINDABLE | MS_REC)),
    ]
};

/// The flags a bind mount only gets through a second, remounting call.
pub const BIND_REMOUNT_FLAGS: c_ulong =
    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME
        | libc::MS_NODIRATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;

/// Options compiled: flags, filesystem data, propagation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub flags: c_ulong,
    pub data: String,
    pub propagation: c_ulong,
}

pub fn parse_options(field: &str, options: &[String]) -> Result<Parsed, SpecError> {
    let mut p = Parsed::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        if opt.is_empty() || opt.contains('\0') {
            return Err(SpecError::new(field, opt.clone(), "empty mount option or NUL byte"));
        }
        match OPTIONS.iter().find(|(name, _)| *name == opt.as_str()) {
            Some((_, Effect::Set(f))) => p.flags |= f,
            Some((_, Effect::Clear(f))) => p.flags &= !f,
            Some((_, Effect::Propagation(f))) => p.propagation = *f,
            None => data.push(opt),
        }
    }
    p.data = data.join(",");
    Ok(p)
}

/// The mounts every container gets, before the user's.
/// /sys is read-only unless `sysfs_rw` (docker's --privileged).
pub fn default_mounts(sysfs_rw: bool) -> Vec<MountSpec> {
    let sysfs: &[&str] = if sysfs_rw { &["nosuid", "noexec", "nodev"] } else { &["nosuid", "noexec", "nodev", "ro"] };
    vec![
        MountSpec::new("proc", "/proc", "proc", &["nosuid", "noexec", "nodev"]),
        MountSpec::new("sysfs", "/sys", "sysfs", sysfs),
        MountSpec::new("tmpfs", "/dev", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        MountSpec::new(
            "devpts",
            "/dev/pts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        MountSpec::new("shm", "/dev/shm", "tmpfs", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        MountSpec::new("mqueue", "/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ]
}

/// Character devices of the minimal /dev: (name, major, minor), all mode 0666.
pub const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Links of the minimal /dev: (link, target).
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_and_data_split() {
        let p = parse_options("m", &opts(&["nosuid", "mode=755", "ro", "size=1k"])).unwrap();
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(p.data, "mode=755,size=1k");
        assert_eq!(p.propagation, 0);
    }

    #[test]
    fn later_options_override_earlier() {
        let p = parse_options("m", &opts(&["ro", "rw", "noexec", "exec"])).unwrap();
        assert_eq!(p.flags, 0);
    }

    #[test]
    fn rbind_is_recursive_bind_and_propagation_is_separate() {
        let p = parse_options("m", &opts(&["rbind", "rslave"])).unwrap();
        assert_eq!(p.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(p.propagation, libc::MS_SLAVE | libc::MS_REC);
    }

    #[test]
    fn nul_is_refused_with_the_field() {
        let e = parse_options("mounts[2].options", &opts(&["a\0b"])).unwrap_err();
        assert_eq!(e.field, "mounts[2].options");
    }

    #[test]
    fn default_table_is_what_runc_spec_writes() {
        let m = default_mounts(false);
        let targets: Vec<&str> = m.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"]);
        let sys = parse_options("sys", &m[1].options).unwrap();
        assert!(sys.flags & libc::MS_RDONLY != 0, "/sys is read-only");
        // /dev comes before what is mounted below it.
        assert!(targets.iter().position(|t| *t == "/dev") < targets.iter().position(|t| *t == "/dev/pts"));
    }
}
