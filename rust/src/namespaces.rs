//! Namespaces as data: spec names to clone flags.

use crate::errors::SpecError;

pub const NAMESPACES: &[(&str, u64)] = &[
    ("mount", libc::CLONE_NEWNS as u64),
    ("pid", libc::CLONE_NEWPID as u64),
    ("uts", libc::CLONE_NEWUTS as u64),
    ("ipc", libc::CLONE_NEWIPC as u64),
    ("net", libc::CLONE_NEWNET as u64),
    ("cgroup", libc::CLONE_NEWCGROUP as u64),
];

pub fn flag(name: &str) -> Option<u64> {
    NAMESPACES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The clone flags for a list of namespace names; unknown names are refused.
pub fn clone_flags(names: &[String]) -> Result<u64, SpecError> {
    let mut flags = 0;
    for (i, name) in names.iter().enumerate() {
        match flag(name) {
            Some(f) => flags |= f,
            None => {
                let known: Vec<&str> = NAMESPACES.iter().map(|(n, _)| *n).collect();
                return Err(SpecError::new(
                    format!("namespaces[{i}]"),
                    name.clone(),
                    format!("unknown namespace (known: {})", known.join(", ")),
                ));
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_combine() {
        let f = clone_flags(&["mount".into(), "net".into()]).unwrap();
        assert_eq!(f, (libc::CLONE_NEWNS | libc::CLONE_NEWNET) as u64);
    }

    #[test]
    fn unknown_is_named() {
        let e = clone_flags(&["mount".into(), "time".into()]).unwrap_err();
        assert_eq!(e.field, "namespaces[1]");
        assert_eq!(e.value, "time");
    }
}
