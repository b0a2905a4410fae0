//! The workload sandbox: seccomp, Landlock, capabilities, rlimits, and the
//! launch path that applies them in a forked child (or, in handoff mode, in
//! PID 1 itself right before it execs the workload).
//!
//! Use: `LaunchPlan::new` does every allocation, validation and file access
//! (the program is opened, the seccomp profile compiled, the Landlock
//! ruleset created) in PID 1; then `spawn()` forks and the child only issues
//! system calls, in the order documented on [`Step`].

pub mod caps;
pub mod config;
pub mod fs_access;
mod launch;
pub mod seccomp;
mod workload;

pub use config::{LandlockMode, Limit, RlimitConfig, SandboxConfig, SandboxProfile, SeccompChoice};
pub use launch::{LaunchOptions, LaunchPlan, Launched, Step};
pub use workload::{LaunchMode, Process, WorkloadConfig};

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
    #[error("seccomp profile {path}: {reason}")]
    ProfileRead { path: String, reason: String },
    #[error("seccomp profile {0}")]
    ProfileImport(#[from] seccomp::oci::ImportError),
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(
        "landlock: the kernel does not support Landlock (set [sandbox] landlock = \"best-effort\" to run without it)"
    )]
    LandlockUnsupported,
    #[error("landlock: {0}")]
    Landlock(String),
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

/// "EPERM (Operation not permitted)".
pub fn errno_name(errno: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::ENOEXEC, "ENOEXEC"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ETXTBSY, "ETXTBSY"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENOKEY, "ENOKEY"),
        (libc::EKEYREJECTED, "EKEYREJECTED"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::ENOPKG, "ENOPKG"),
        (libc::EBADMSG, "EBADMSG"),
    ];
    let name = NAMES.iter().find(|(n, _)| *n == errno).map(|(_, s)| *s);
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    match name {
        Some(name) => format!("{name} ({text})"),
        None => format!("errno {errno} ({text})"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errno_names() {
        assert_eq!(super::errno_name(libc::EPERM), "EPERM (Operation not permitted)");
        assert!(super::errno_name(4000).starts_with("errno 4000 ("));
    }
}
