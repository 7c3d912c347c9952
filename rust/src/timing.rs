//! Where a spawn's time goes: timestamps the child writes at the end of its
//! main steps, read by the parent once the child has exec'd.
//!
//! Only the vfork-style spawn shares memory with the child (CLONE_VM), so
//! only there do the marks reach the parent; elsewhere they stay zero and
//! the breakdown is left out. Writing one is a vDSO clock read and a relaxed
//! store: async-signal-safe, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// The steps the child marks, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The child's first instruction after clone3.
    Entered,
    /// The root filesystem and every mount below it are in place.
    Mounted,
    /// pivot_root done, the old root detached.
    Pivoted,
    /// Hostname set and lo up.
    Networked,
    /// Credentials, stdio and seccomp done: right before execve.
    Exec,
}

pub const COUNT: usize = 5;
/// The names the parent reports each step under: the time from the previous mark to this one.
pub const NAMES: [&str; COUNT] = ["clone", "mounts", "pivot", "network", "creds"];

#[derive(Debug, Default)]
pub struct Marks([AtomicU64; COUNT]);

impl Marks {
    pub fn set(&self, m: Mark) {
        self.0[m as usize].store(crate::sys::monotonic_ns(), Ordering::Relaxed);
    }

    /// Nanoseconds per step, from `start` (the parent's clock before clone3) to
    /// each mark in turn; None unless every mark arrived.
    pub fn steps(&self, start: u64) -> Option<[u64; COUNT]> {
        let mut out = [0; COUNT];
        let mut prev = start;
        for (i, slot) in self.0.iter().enumerate() {
            let t = slot.load(Ordering::Relaxed);
            if t == 0 || t < prev {
                return None;
            }
            out[i] = t - prev;
            prev = t;
        }
        Some(out)
    }

    /// The last mark (right before execve), or 0.
    pub fn last(&self) -> u64 {
        self.0[COUNT - 1].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_need_every_mark_in_order() {
        let m = Marks::default();
        let start = crate::sys::monotonic_ns();
        assert!(m.steps(start).is_none());
        for s in [Mark::Entered, Mark::Mounted, Mark::Pivoted, Mark::Networked, Mark::Exec] {
            m.set(s);
        }
        let steps = m.steps(start).unwrap();
        assert!(m.last() >= start);
        assert_eq!(steps.iter().sum::<u64>(), m.last() - start);
    }
}
