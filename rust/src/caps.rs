//! Capabilities: the names the kernel knows, as a table, and the sets a
//! container's init gets before execve.

use crate::errors::SpecError;

/// Every capability of Linux 6.x, by number.
pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capability's number; "CAP_" is optional and case is ignored.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    CAPS.iter().position(|c| *c == full).map(|i| i as u32)
}

/// The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap),
/// read once per process: it is fixed for the kernel's lifetime.
pub fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(CAPS.len() as u32 - 1)
    })
}

/// A capability set as the two 32-bit words capset(2) takes.
pub fn mask(field: &str, names: &[String]) -> Result<u64, SpecError> {
    let mut m = 0u64;
    for (i, n) in names.iter().enumerate() {
        let bit = number(n).ok_or_else(|| {
            SpecError::new(format!("{field}[{i}]"), n.clone(), "not a capability this kernel knows (see capabilities(7))")
        })?;
        m |= 1 << bit;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_with_or_without_prefix() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("net_raw"), Some(13));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_its_place() {
        let e = mask("capabilities", &["CAP_KILL".into(), "CAP_FLY".into()]).unwrap_err();
        assert_eq!(e.field, "capabilities[1]");
        assert_eq!(mask("c", &["KILL".into(), "CHOWN".into()]).unwrap(), 0b100001);
    }
}
