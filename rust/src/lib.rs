//! fastcontain's native spawn core.
//!
//! The flow of one container: a [`spec::Spec`] (from Python) becomes a
//! [`plan::Plan`] (C strings, flags, mount operations) before the clone;
//! [`spawn`] clones the child with every namespace flag at once, and
//! [`child`] carries the plan out step by step, ending in execve. Only
//! [`py`] knows about Python.

pub mod caps;
pub mod cgroupdir;
pub mod child;
pub mod errors;
pub mod idmap;
pub mod mount;
pub mod namespaces;
pub mod netpeek;
pub mod plan;
#[cfg(feature = "python")]
mod py;
pub mod seccomp;
pub mod spawn;
pub mod spec;
pub mod statedir;
pub mod syscalls;
pub mod sys;
pub mod timing;
