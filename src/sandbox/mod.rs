//! The workload sandbox: seccomp, Landlock, capabilities, rlimits, and the
//! launch path that applies them in a child (or, in handoff mode, in
//! PID 1 itself right before it execs the workload).
//!
//! Use: `LaunchPlan::new` does every allocation, validation and file access
//! (the program is opened, the seccomp profile compiled, the Landlock
//! ruleset created) in PID 1; then `spawn()` starts the child (`clone` with
//! `CLONE_VM | CLONE_VFORK`, on its own stack), which only issues
//! system calls, in the order documented on [`Step`].

pub mod caps;
pub mod config;
pub mod fs_access;
mod launch;
pub mod precompiled;
pub mod seccomp;
mod workload;

pub use config::{LandlockMode, Limit, RlimitConfig, SandboxConfig, SandboxProfile, SeccompChoice};
pub(crate) use launch::warn_no_kills_in_handoff;
pub use launch::{CompiledSeccomp, LaunchOptions, LaunchPlan, Launched, Step};
pub use workload::{LaunchMode, Process, WorkloadConfig};

use crate::names::errno_name;

/// Why the workload could not be prepared or started. `Display` is one line
/// that names the failing step; main prints `FATAL: launch: <this>`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("workload program {path}: {source}")]
    Program {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("environment variable {0} is set twice")]
    DuplicateEnv(String),
    #[error("seccomp profile {path}: {source}")]
    ProfileRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {0}")]
    ProfileImport(#[from] seccomp::oci::ImportError),
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Capability(#[from] caps::UnknownCapability),
    #[error(
        "landlock: the kernel does not support Landlock (set [sandbox] landlock = \"best-effort\" to run without it)"
    )]
    LandlockUnsupported,
    #[error("landlock: {0}")]
    Landlock(#[from] ::landlock::RulesetError),
    #[error("landlock: reading {path}: {source}")]
    LandlockProgram {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("landlock: cannot open {path}: {source}")]
    LandlockPath {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A step of the child failed; `detail` names what (" RLIMIT_NOFILE").
    #[error("{step}{detail} failed: {}", errno_name(*.errno))]
    Step { step: Step, detail: String, errno: i32 },
    #[error("the workload child ended before exec without reporting a step ({0})")]
    ChildVanished(String),
}

impl SandboxError {
    /// The failing step, for errors reported by the child.
    pub fn step(&self) -> Option<Step> {
        match self {
            SandboxError::Step { step, .. } => Some(*step),
            _ => None,
        }
    }
}
