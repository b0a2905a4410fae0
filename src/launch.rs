//! Plain workload launch: fork, reset the signal state, new session, stdio
//! (stdin /dev/null, stdout/stderr to pipes the supervisor copies), working
//! directory, identity, execve with an explicit environment.
//!
//! Everything is allocated before the fork; the child only makes raw
//! syscalls and reports a failing step through a close-on-exec pipe.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::config::WorkloadConfig;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("{0}: {1}")]
    Setup(&'static str, #[source] std::io::Error),
    #[error("workload {path}: {step} failed: {source}")]
    Child {
        path: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Steps of the child, reported by index through the error pipe.
const STEPS: &[&str] = &["reset signals", "setsid", "stdio", "chdir", "setgroups", "setresgid", "setresuid", "execve"];

pub struct Spawned {
    pub pid: libc::pid_t,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn cstring(what: &str, s: &str) -> Result<CString, LaunchError> {
    CString::new(s).map_err(|_| LaunchError::Nul { what: what.to_string() })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LaunchError::Setup("pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The environment the workload gets: its configured one plus `extra`
/// (e.g. CREDENTIALS_DIRECTORY). Never PID 1's own.
pub fn environment(cfg: &WorkloadConfig, extra: &[(String, String)]) -> Vec<String> {
    cfg.env.iter().chain(extra.iter().map(|(k, v)| (k, v))).map(|(k, v)| format!("{k}={v}")).collect()
}

/// Starts the workload. It becomes a session and process-group leader.
pub fn spawn(
    cfg: &WorkloadConfig,
    extra_env: &[(String, String)],
    dev_null: &std::path::Path,
) -> Result<Spawned, LaunchError> {
    let path = cstring("workload.path", &cfg.path)?;
    let mut argv = vec![path.clone()];
    for a in &cfg.args {
        argv.push(cstring("workload.args", a)?);
    }
    let envp: Vec<CString> =
        environment(cfg, extra_env).iter().map(|e| cstring("workload.env", e)).collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let workdir = cstring("workload.workdir", &cfg.workdir)?;
    let groups: Vec<libc::gid_t> = cfg.supplementary_groups.clone();
    let (uid, gid) = (cfg.user, cfg.group);

    let null =
        std::fs::OpenOptions::new().read(true).open(dev_null).map_err(|e| LaunchError::Setup("open /dev/null", e))?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;

    // SAFETY: fork(2). The child below only performs async-signal-safe
    // syscalls on data prepared above and ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Setup("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: child side; see above.
        unsafe {
            child(ChildArgs {
                path: path.as_ptr(),
                argv: argv_ptrs.as_ptr(),
                envp: envp_ptrs.as_ptr(),
                workdir: workdir.as_ptr(),
                groups: &groups,
                uid,
                gid,
                is_root,
                stdin: null.as_raw_fd(),
                stdout: out_w.as_raw_fd(),
                stderr: err_w.as_raw_fd(),
                report: report_w.as_raw_fd(),
            })
        }
    }
    drop((out_w, err_w, report_w));
    let mut report = [0u8; 8];
    // SAFETY: reading into a stack buffer; EOF (0) means exec succeeded.
    let n = unsafe { libc::read(report_r.as_raw_fd(), report.as_mut_ptr().cast(), report.len()) };
    if n == report.len() as isize {
        let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]) as usize;
        let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
        let mut status = 0;
        // SAFETY: reaping our own child, which has exited or is exiting; no
        // other reaper runs yet.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(LaunchError::Child {
            path: cfg.path.clone(),
            step: STEPS.get(step).copied().unwrap_or("unknown step"),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    Ok(Spawned { pid, stdout: out_r, stderr: err_r })
}

struct ChildArgs<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    workdir: *const libc::c_char,
    groups: &'a [libc::gid_t],
    uid: u32,
    gid: u32,
    is_root: bool,
    stdin: i32,
    stdout: i32,
    stderr: i32,
    report: i32,
}

/// # Safety
/// Must only be called in the child right after fork(2).
unsafe fn child(a: ChildArgs<'_>) -> ! {
    // SAFETY (whole body): only async-signal-safe syscalls on pointers that
    // stay valid because the parent's memory image is copied.
    unsafe {
        let fail = |step: u32| -> ! {
            let errno = *libc::__errno_location();
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&step.to_ne_bytes());
            buf[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(a.report, buf.as_ptr().cast(), buf.len());
            libc::_exit(127);
        };
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            fail(0);
        }
        if libc::setsid() < 0 {
            fail(1);
        }
        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.stdout, 1) < 0 || libc::dup2(a.stderr, 2) < 0 {
            fail(2);
        }
        if libc::chdir(a.workdir) != 0 {
            fail(3);
        }
        if a.is_root && libc::setgroups(a.groups.len(), a.groups.as_ptr()) != 0 {
            fail(4);
        }
        if libc::setresgid(a.gid, a.gid, a.gid) != 0 {
            fail(5);
        }
        if libc::setresuid(a.uid, a.uid, a.uid) != 0 {
            fail(6);
        }
        libc::execve(a.path, a.argv, a.envp);
        fail(7)
    }
}
