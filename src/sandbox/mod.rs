//! The workload sandbox: seccomp, Landlock, capabilities, rlimits, and the
//! launch path that applies them in a forked child.

pub mod caps;
pub mod seccomp;
