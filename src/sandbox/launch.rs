//! The launch path: everything is prepared in PID 1 ([`LaunchPlan::new`]),
//! then [`LaunchPlan::spawn`] forks and the child applies the sandbox with
//! raw system calls only (no allocation, no locks, nothing that can panic),
//! in the order of [`Step`], and execs the pre-opened program with
//! `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`. A failing step writes
//! (step, detail, errno) to a close-on-exec pipe and `_exit(127)`s; the parent
//! turns that into [`SandboxError::Step`]. End of file on that pipe without
//! a report means the exec succeeded.

use std::convert::Infallible;
use std::ffi::{CString, c_char};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use super::config::{Limit, SandboxConfig, SeccompChoice};
use super::seccomp::{self, Program};
use super::{SandboxError, caps, fs_access};
use crate::config::LaunchMode;
use crate::config::WorkloadConfig;

/// The steps of the child, in order. The number is what the child reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Every signal back to SIG_DFL (PID 1 ignores or handles some).
    ResetSignals = 1,
    /// Empty signal mask (PID 1 blocks signals for its signalfd).
    UnblockSignals = 2,
    /// New session and process group, so the supervisor can signal the group.
    Setsid = 3,
    /// stdin from /dev/null (or a pipe for helpers).
    Stdin = 4,
    Stdout = 5,
    Stderr = 6,
    /// One resource limit (detail: the resource).
    Setrlimit = 7,
    /// /proc/self/oom_score_adj (PID 1 runs at -1000).
    OomScoreAdj = 8,
    /// PR_CAPBSET_DROP (detail: the capability).
    BoundingSet = 9,
    Setgroups = 10,
    Setresgid = 11,
    /// PR_SET_KEEPCAPS, only when capabilities are kept by a non-root user.
    KeepCaps = 12,
    Setresuid = 13,
    /// capset: effective, permitted, inheritable = the kept set (empty).
    Capset = 14,
    AmbientClear = 15,
    /// PR_CAP_AMBIENT_RAISE for a kept capability (detail: the capability).
    AmbientRaise = 16,
    Chdir = 17,
    NoNewPrivs = 18,
    LandlockRestrictSelf = 19,
    /// close_range(3, ~0, CLOSE_RANGE_CLOEXEC): nothing of PID 1 leaks.
    CloseRange = 20,
    /// seccomp(SECCOMP_SET_MODE_FILTER), last before exec.
    Seccomp = 21,
    Execveat = 22,
}

const STEPS: &[Step] = &[
    Step::ResetSignals,
    Step::UnblockSignals,
    Step::Setsid,
    Step::Stdin,
    Step::Stdout,
    Step::Stderr,
    Step::Setrlimit,
    Step::OomScoreAdj,
    Step::BoundingSet,
    Step::Setgroups,
    Step::Setresgid,
    Step::KeepCaps,
    Step::Setresuid,
    Step::Capset,
    Step::AmbientClear,
    Step::AmbientRaise,
    Step::Chdir,
    Step::NoNewPrivs,
    Step::LandlockRestrictSelf,
    Step::CloseRange,
    Step::Seccomp,
    Step::Execveat,
];

impl Step {
    fn from_u32(n: u32) -> Option<Step> {
        STEPS.iter().copied().find(|s| *s as u32 == n)
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::ResetSignals => "reset signal dispositions",
            Step::UnblockSignals => "unblock signals",
            Step::Setsid => "setsid",
            Step::Stdin => "stdin",
            Step::Stdout => "stdout",
            Step::Stderr => "stderr",
            Step::Setrlimit => "setrlimit",
            Step::OomScoreAdj => "oom_score_adj",
            Step::BoundingSet => "drop capability bounding set",
            Step::Setgroups => "setgroups",
            Step::Setresgid => "setresgid",
            Step::KeepCaps => "PR_SET_KEEPCAPS",
            Step::Setresuid => "setresuid",
            Step::Capset => "capset",
            Step::AmbientClear => "clear ambient capabilities",
            Step::AmbientRaise => "raise ambient capability",
            Step::Chdir => "chdir",
            Step::NoNewPrivs => "no_new_privs",
            Step::LandlockRestrictSelf => "landlock restrict_self",
            Step::CloseRange => "close_range",
            Step::Seccomp => "seccomp",
            Step::Execveat => "execveat",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Paths and knobs of the host, injectable for tests.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// procfs (`/proc`): cap_last_cap, /proc/self/oom_score_adj.
    pub proc_root: PathBuf,
    /// Where image files (the seccomp JSON profile) are read (`/`).
    pub image_root: PathBuf,
    /// `/dev/null`.
    pub dev_null: PathBuf,
    /// Give the child a stdin pipe instead of /dev/null (helpers that are
    /// driven over stdin).
    pub stdin_pipe: bool,
    /// (major, minor) for the `minKernel` of OCI profiles; `None`: uname.
    pub kernel: Option<(u32, u32)>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            proc_root: "/proc".into(),
            image_root: "/".into(),
            dev_null: "/dev/null".into(),
            stdin_pipe: false,
            kernel: None,
        }
    }
}

/// A started workload. The integrator's supervise loop polls `stdout` and
/// `stderr` (pipe read ends, blocking until their reader says otherwise) and
/// reaps `pid`.
#[derive(Debug)]
pub struct Launched {
    pub pid: libc::pid_t,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Write end of the child's stdin, with `LaunchOptions::stdin_pipe`.
    pub stdin: Option<OwnedFd>,
}

/// The kernel's `struct sigaction` on x86_64 (not libc's).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const seccompiler::sock_filter,
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 2;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Everything the child needs, allocated before fork.
pub struct LaunchPlan {
    mode: LaunchMode,
    program_path: String,
    exe: OwnedFd,
    // The pointer arrays point into these CStrings; both live as long as the plan.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    workdir: CString,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    rlimits: Vec<(libc::c_uint, libc::rlimit64)>,
    oom_path: CString,
    oom_value: Vec<u8>,
    cap_last: u32,
    keep_caps: u64,
    cap_data: [caps::CapData; 2],
    landlock: Option<OwnedFd>,
    seccomp: Option<Program>,
    dev_null: OwnedFd,
    stdin_pipe: bool,
}

impl fmt::Debug for LaunchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No environment values: they may be sensitive.
        f.debug_struct("LaunchPlan")
            .field("mode", &self.mode)
            .field("program", &self.program_path)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("keep_caps", &format_args!("{:#x}", self.keep_caps))
            .field("landlock", &self.landlock.is_some())
            .field("seccomp", &self.seccomp)
            .finish_non_exhaustive()
    }
}

fn cstring(what: &str, s: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::Nul { what: what.to_string() })
}

fn setup(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Setup { what, source }
}

fn limit(l: Limit) -> libc::rlimit64 {
    let v = if l == Limit::UNLIMITED { libc::RLIM64_INFINITY } else { l.0 };
    libc::rlimit64 { rlim_cur: v, rlim_max: v }
}

/// The running kernel's (major, minor).
fn running_kernel() -> Option<(u32, u32)> {
    let uts = rustix::system::uname();
    seccomp::oci::parse_kernel(&uts.release().to_string_lossy())
}

impl LaunchPlan {
    pub fn new(
        workload: &WorkloadConfig,
        sandbox: &SandboxConfig,
        extra_env: &[(String, String)],
    ) -> Result<Self, SandboxError> {
        Self::with_options(workload, sandbox, extra_env, &LaunchOptions::default())
    }

    pub fn with_options(
        workload: &WorkloadConfig,
        sandbox: &SandboxConfig,
        extra_env: &[(String, String)],
        opts: &LaunchOptions,
    ) -> Result<Self, SandboxError> {
        let path = workload.path.as_str();
        let program_err = |source| SandboxError::Program { path: path.to_string(), source };
        let exe =
            rustix::fs::open(path, rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| program_err(e.into()))?;
        let st = rustix::fs::fstat(&exe).map_err(|e| program_err(e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(program_err(std::io::Error::other("not a regular file")));
        }
        let exe = above_stdio(exe).map_err(setup("duplicate program fd"))?;

        let mut argv = vec![cstring("workload.path", path)?];
        for (i, a) in workload.args.iter().enumerate() {
            argv.push(cstring(&format!("workload.args[{i}]"), a)?);
        }
        let mut env: Vec<(&str, &str)> = workload.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (k, v) in extra_env {
            if env.iter().any(|(e, _)| e == k) {
                return Err(SandboxError::DuplicateEnv(k.clone()));
            }
            env.push((k, v));
        }
        let envp = env
            .iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('=') {
                    return Err(SandboxError::Nul { what: format!("environment name {k:?} (empty or with '=')") });
                }
                cstring(&format!("environment variable {k}"), &format!("{k}={v}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let argv_ptrs = argv.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp_ptrs = envp.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();

        let mut rlimits = vec![
            (libc::RLIMIT_CORE as libc::c_uint, libc::rlimit64 { rlim_cur: 0, rlim_max: 0 }),
            (libc::RLIMIT_NOFILE as libc::c_uint, limit(sandbox.rlimits.nofile)),
            (libc::RLIMIT_MEMLOCK as libc::c_uint, limit(sandbox.rlimits.memlock)),
        ];
        if let Some(n) = sandbox.rlimits.nproc {
            rlimits.push((libc::RLIMIT_NPROC as libc::c_uint, limit(n)));
        }

        let keep_caps = caps::mask(&sandbox.capabilities).map_err(|n| SandboxError::Setup {
            what: format!("capability {n:?}"),
            source: std::io::Error::other("unknown"),
        })?;
        if keep_caps != 0 {
            log::warn!("sandbox: {path} keeps capabilities {:?}", sandbox.capabilities);
        }
        let cap_last = caps::last_cap(&opts.proc_root).map_err(setup("cap_last_cap"))?;

        let seccomp = compile_profile(workload, sandbox, opts, keep_caps)?;
        let landlock = match fs_access::build(sandbox, Path::new(path))? {
            Some(fd) => Some(above_stdio(fd).map_err(setup("duplicate landlock fd"))?),
            None => None,
        };
        let dev_null = rustix::fs::open(
            &opts.dev_null,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| SandboxError::Setup { what: opts.dev_null.display().to_string(), source: e.into() })?;
        let dev_null = above_stdio(dev_null).map_err(setup("duplicate /dev/null fd"))?;

        let oom_path = opts.proc_root.join("self/oom_score_adj");
        let oom_path = cstring("proc root", &oom_path.to_string_lossy())?;
        Ok(LaunchPlan {
            mode: workload.mode,
            program_path: path.to_string(),
            exe,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            workdir: cstring("workload.workdir", &workload.workdir)?,
            uid: workload.user,
            gid: workload.group,
            groups: workload.supplementary_groups.clone(),
            rlimits,
            oom_path,
            oom_value: format!("{}\n", sandbox.oom_score_adj).into_bytes(),
            cap_last,
            keep_caps,
            cap_data: caps::cap_data(keep_caps),
            landlock,
            seccomp,
            dev_null,
            stdin_pipe: opts.stdin_pipe,
        })
    }

    pub fn mode(&self) -> LaunchMode {
        self.mode
    }

    /// Forks and starts the workload (supervise mode).
    pub fn spawn(&self) -> Result<Launched, SandboxError> {
        let (out_r, out_w) = pipe().map_err(setup("stdout pipe"))?;
        let (err_r, err_w) = pipe().map_err(setup("stderr pipe"))?;
        let (rep_r, rep_w) = pipe().map_err(setup("report pipe"))?;
        let stdin = if self.stdin_pipe { Some(pipe().map_err(setup("stdin pipe"))?) } else { None };
        let child_in = stdin.as_ref().map_or(self.dev_null.as_raw_fd(), |(r, _)| r.as_raw_fd());
        let io = ChildIo { stdin: child_in, stdout: Some(out_w.as_raw_fd()), stderr: Some(err_w.as_raw_fd()) };

        // SAFETY: fork in a process whose other threads (in tests) may hold
        // locks; the child only runs `child_main`, which issues raw system
        // calls on memory prepared before the fork and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SandboxError::Setup { what: "fork".into(), source: std::io::Error::last_os_error() });
        }
        if pid == 0 {
            // SAFETY: we are the freshly forked child.
            unsafe { self.child_main(&io, rep_w.as_raw_fd(), Until::Exec) }
        }
        drop((out_w, err_w, rep_w));
        let stdin = stdin.map(|(r, w)| {
            drop(r);
            w
        });
        self.await_report(pid, rep_r)?;
        Ok(Launched { pid, stdout: out_r, stderr: err_r, stdin })
    }

    /// Handoff mode: the same steps in this process (PID 1), then exec. First
    /// a forked rehearsal runs every step up to seccomp, so a configuration
    /// that cannot work is reported while PID 1 still has its privileges.
    /// Returns only on failure; a failure after the rehearsal leaves this
    /// process without privileges (main logs FATAL and exits, which panics
    /// the kernel and stops the VM).
    pub fn exec_in_place(&self) -> Result<Infallible, SandboxError> {
        let (rep_r, rep_w) = pipe().map_err(setup("report pipe"))?;
        let io = ChildIo { stdin: self.dev_null.as_raw_fd(), stdout: None, stderr: None };
        // SAFETY: as in `spawn`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SandboxError::Setup { what: "fork".into(), source: std::io::Error::last_os_error() });
        }
        if pid == 0 {
            // SAFETY: we are the freshly forked child.
            unsafe { self.child_main(&io, rep_w.as_raw_fd(), Until::BeforeSeccomp) }
        }
        drop(rep_w);
        self.await_report(pid, rep_r)?;
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(SandboxError::ChildVanished(describe_status(r, status)));
        }
        // SAFETY: `apply` issues raw system calls on memory owned by `self`.
        match unsafe { self.apply(&io, Until::Exec) } {
            Err((step, detail, errno)) => Err(step_error(step, detail, errno)),
            Ok(()) => unreachable_exec(),
        }
    }

    fn await_report(&self, pid: libc::pid_t, report: OwnedFd) -> Result<(), SandboxError> {
        let mut buf = [0u8; 12];
        let mut got = 0;
        while got < buf.len() {
            match rustix::io::read(&report, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(SandboxError::Setup { what: "read report pipe".into(), source: e.into() });
                }
            }
        }
        if got == 0 {
            return Ok(());
        }
        // The child reported a failure and exits, unless its filter keeps
        // it from exiting (check_launchable refuses such profiles): PID 1
        // must not wait on it forever either way.
        // SAFETY: signalling our own child, not yet reaped, so the pid is its.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if got != buf.len() {
            return Err(SandboxError::ChildVanished(format!("a partial failure report ({got} of 12 bytes)")));
        }
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        match Step::from_u32(word(0)) {
            Some(step) => Err(step_error(step, word(4), word(8) as i32)),
            None => Err(SandboxError::ChildVanished(format!("unknown step {}", word(0)))),
        }
    }

    /// The child: apply every step, report a failure, never return.
    ///
    /// # Safety
    /// Must be called only in a freshly forked child.
    unsafe fn child_main(&self, io: &ChildIo, report: RawFd, until: Until) -> ! {
        // SAFETY: raw system calls on memory prepared before fork.
        let result = unsafe { self.apply(io, until) };
        let code = match result {
            Ok(()) => 0,
            Err((step, detail, errno)) => {
                let mut msg = [0u8; 12];
                msg[0..4].copy_from_slice(&(step as u32).to_ne_bytes());
                msg[4..8].copy_from_slice(&detail.to_ne_bytes());
                msg[8..12].copy_from_slice(&errno.to_ne_bytes());
                // SAFETY: writing a stack buffer to our pipe.
                unsafe { libc::write(report, msg.as_ptr().cast(), msg.len()) };
                127
            }
        };
        // SAFETY: ends the child without running atexit handlers or
        // destructors inherited from the parent.
        unsafe { libc::_exit(code) }
    }

    /// The steps. Async-signal-safe: raw system calls only, no allocation,
    /// no panics (no indexing, no unwrap).
    ///
    /// # Safety
    /// Changes the credentials and state of the calling process.
    unsafe fn apply(&self, io: &ChildIo, until: Until) -> Result<(), (Step, u32, i32)> {
        // SAFETY (whole function): every pointer passed to the kernel points
        // into `self` or the stack and outlives the call.
        unsafe {
            let check = |step: Step, detail: u32, r: libc::c_long| -> Result<(), (Step, u32, i32)> {
                if r < 0 { Err((step, detail, errno())) } else { Ok(()) }
            };
            let handoff = matches!(until, Until::BeforeSeccomp) || self.mode == LaunchMode::Handoff;

            // 1. Signal dispositions back to default (handlers would point
            //    into PID 1's code; SIG_IGN would survive exec).
            let dfl = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
            for sig in 1..=64 {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                let r = libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, 0usize, 8usize);
                if r < 0 && errno() != libc::EINVAL {
                    return Err((Step::ResetSignals, sig as u32, errno()));
                }
            }
            // 2. Empty signal mask.
            let empty: u64 = 0;
            check(
                Step::UnblockSignals,
                0,
                libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &empty as *const u64, 0usize, 8usize),
            )?;
            // 3. setsid. PID 1 in handoff may already lead its session.
            let r = libc::syscall(libc::SYS_setsid);
            if r < 0 && !(handoff && errno() == libc::EPERM) {
                return Err((Step::Setsid, 0, errno()));
            }
            // 4-6. stdio.
            move_fd(io.stdin, 0).map_err(|e| (Step::Stdin, 0, e))?;
            if let Some(fd) = io.stdout {
                move_fd(fd, 1).map_err(|e| (Step::Stdout, 0, e))?;
            }
            if let Some(fd) = io.stderr {
                move_fd(fd, 2).map_err(|e| (Step::Stderr, 0, e))?;
            }
            // 7. rlimits.
            for (resource, lim) in &self.rlimits {
                let r = libc::syscall(libc::SYS_prlimit64, 0, *resource, lim as *const libc::rlimit64, 0usize);
                check(Step::Setrlimit, *resource, r)?;
            }
            // 8. oom_score_adj.
            let fd = libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                self.oom_path.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
                0,
            );
            check(Step::OomScoreAdj, 0, fd)?;
            let r = libc::syscall(libc::SYS_write, fd, self.oom_value.as_ptr(), self.oom_value.len());
            let write_errno = errno();
            libc::syscall(libc::SYS_close, fd);
            if r < 0 {
                return Err((Step::OomScoreAdj, 0, write_errno));
            }
            // 9. Bounding set, while we still hold CAP_SETPCAP.
            for cap in 0..=self.cap_last {
                if cap < 64 && self.keep_caps & (1u64 << cap) != 0 {
                    continue;
                }
                let r = libc::syscall(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                if r < 0 && errno() != libc::EINVAL {
                    return Err((Step::BoundingSet, cap, errno()));
                }
            }
            // 10-13. Groups, gid, uid (raw: this thread only, which is all there is).
            check(Step::Setgroups, 0, libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr()))?;
            check(Step::Setresgid, 0, libc::syscall(libc::SYS_setresgid, self.gid, self.gid, self.gid))?;
            if self.keep_caps != 0 && self.uid != 0 {
                check(Step::KeepCaps, 0, libc::syscall(libc::SYS_prctl, libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
            }
            check(Step::Setresuid, 0, libc::syscall(libc::SYS_setresuid, self.uid, self.uid, self.uid))?;
            // 14. E/P/I = the kept set (empty by default).
            let header = caps::CapHeader { version: caps::LINUX_CAPABILITY_VERSION_3, pid: 0 };
            check(
                Step::Capset,
                0,
                libc::syscall(libc::SYS_capset, &header as *const caps::CapHeader, self.cap_data.as_ptr()),
            )?;
            // 15-16. Ambient: cleared, then the kept set for a non-root user
            //        (root gets them back from the bounding set at exec).
            check(
                Step::AmbientClear,
                0,
                libc::syscall(libc::SYS_prctl, libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
            )?;
            if self.uid != 0 {
                for cap in 0..64u32 {
                    if self.keep_caps & (1u64 << cap) != 0 {
                        let r = libc::syscall(
                            libc::SYS_prctl,
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_RAISE,
                            cap as libc::c_ulong,
                            0,
                            0,
                        );
                        check(Step::AmbientRaise, cap, r)?;
                    }
                }
            }
            // 17. Working directory, as the workload user.
            check(Step::Chdir, 0, libc::syscall(libc::SYS_chdir, self.workdir.as_ptr()))?;
            // 18. no_new_privs: no setuid or file capability gains, and what
            //     lets an unprivileged process install Landlock and seccomp.
            check(Step::NoNewPrivs, 0, libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            // 19. Landlock.
            if let Some(fd) = &self.landlock {
                check(
                    Step::LandlockRestrictSelf,
                    0,
                    libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0),
                )?;
            }
            // 20. Every fd above stdio closes at exec (the report pipe too).
            check(Step::CloseRange, 0, libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC))?;
            if matches!(until, Until::BeforeSeccomp) {
                return Ok(());
            }
            // 21. seccomp, last: from here on only what the profile allows.
            if let Some(prog) = &self.seccomp {
                let insns = prog.instructions();
                let fprog = SockFprog { len: insns.len() as u16, filter: insns.as_ptr() };
                let flags = if prog.log { SECCOMP_FILTER_FLAG_LOG } else { 0 };
                let r = libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog as *const SockFprog);
                check(Step::Seccomp, 0, r)?;
            }
            // 22. exec the program opened before fork.
            let r = libc::syscall(
                libc::SYS_execveat,
                self.exe.as_raw_fd(),
                c"".as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            Err((Step::Execveat, 0, if r < 0 { errno() } else { 0 }))
        }
    }
}

#[derive(Clone, Copy)]
enum Until {
    Exec,
    /// The handoff rehearsal: stop before seccomp and exit 0.
    BeforeSeccomp,
}

struct ChildIo {
    stdin: RawFd,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
}

fn unreachable_exec() -> Result<Infallible, SandboxError> {
    Err(SandboxError::ChildVanished("execveat returned success".into()))
}

fn step_error(step: Step, detail: u32, errno: i32) -> SandboxError {
    SandboxError::Step { step, detail: detail_text(step, detail), errno }
}

// RLIMIT_* are u32 on glibc and c_int on musl.
#[allow(clippy::unnecessary_cast)]
fn detail_text(step: Step, detail: u32) -> String {
    match step {
        Step::Setrlimit => match detail {
            d if d == libc::RLIMIT_CORE as u32 => " RLIMIT_CORE".into(),
            d if d == libc::RLIMIT_NOFILE as u32 => " RLIMIT_NOFILE".into(),
            d if d == libc::RLIMIT_MEMLOCK as u32 => " RLIMIT_MEMLOCK".into(),
            d if d == libc::RLIMIT_NPROC as u32 => " RLIMIT_NPROC".into(),
            d => format!(" resource {d}"),
        },
        Step::BoundingSet | Step::AmbientRaise => {
            format!(" {}", caps::NAMES.get(detail as usize).copied().unwrap_or("unknown capability"))
        }
        Step::ResetSignals => format!(" signal {detail}"),
        _ => String::new(),
    }
}

fn describe_status(r: libc::pid_t, status: i32) -> String {
    if r < 0 {
        format!("waitpid: {}", std::io::Error::last_os_error())
    } else {
        crate::supervise::Exit::from_wait_status(status).describe()
    }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// dup2 that also works when the fd is already in place (dup2 would then
/// leave its close-on-exec flag set).
///
/// # Safety
/// Raw fd manipulation in the child.
unsafe fn move_fd(from: RawFd, to: RawFd) -> Result<(), i32> {
    // SAFETY: plain fd system calls.
    let r = unsafe {
        if from == to {
            libc::syscall(libc::SYS_fcntl, to, libc::F_SETFD, 0)
        } else {
            libc::syscall(libc::SYS_dup2, from, to)
        }
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// Moves an fd to 3 or above, so the child's dup2 onto 0..=2 never clobbers
/// one of its own sources (when PID 1 runs with a closed stdio fd).
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 3)?;
    Ok(dup)
}

fn compile_profile(
    workload: &WorkloadConfig,
    sandbox: &SandboxConfig,
    opts: &LaunchOptions,
    keep_caps: u64,
) -> Result<Option<Program>, SandboxError> {
    let mut profile = match &sandbox.seccomp {
        SeccompChoice::None => {
            log::warn!("sandbox: seccomp = \"none\": the workload runs without a seccomp filter");
            return Ok(None);
        }
        SeccompChoice::WorkloadDefault => seccomp::builtin::workload_default(&sandbox.seccomp_allow),
        SeccompChoice::Strict => seccomp::builtin::strict(&sandbox.seccomp_allow),
        SeccompChoice::File(path) => {
            let full = crate::mount::under(&opts.image_root, path);
            let bytes = crate::config::read_capped(&full, super::config::MAX_PROFILE_BYTES as u64)
                .map_err(|e| SandboxError::ProfileRead { path: path.clone(), reason: e.to_string() })?;
            let ctx =
                seccomp::oci::ImportContext { capabilities: keep_caps, kernel: opts.kernel.or_else(running_kernel) };
            seccomp::oci::import(path, &bytes, ctx)?
        }
    };
    profile.log |= sandbox.seccomp_log;
    seccomp::check_launchable(&profile)?;
    let program = seccomp::compile(&profile)?;
    if workload.mode == LaunchMode::Handoff && program.has_fatal_actions() {
        log::warn!(
            "sandbox: handoff mode: the workload becomes PID 1, whose death panics the kernel; \
             the kill and trap actions of {} answer EPERM instead",
            program.name
        );
        return Ok(Some(program.without_fatal_actions()));
    }
    Ok(Some(program))
}

#[cfg(test)]
mod tests;
