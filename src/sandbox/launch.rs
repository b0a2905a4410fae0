//! The launch path: everything is prepared in PID 1 ([`LaunchPlan::new`]),
//! then [`LaunchPlan::spawn`] starts a child (vfork-style) that applies the sandbox with
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
use super::{LaunchMode, Process, WorkloadConfig};
use super::{SandboxError, caps, fs_access};
use sys::{Kernel, Sys, int};

/// The steps of the child, in order. The number is what the child reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Every signal back to SIG_DFL (PID 1 ignores or handles some).
    ResetSignals = 1,
    /// Empty signal mask (PID 1 blocks signals for its signalfd).
    UnblockSignals = 2,
    /// New session and process group, so the supervisor can signal the
    /// group. Forked children only: never PID 1 itself in handoff mode.
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
    /// A container image only: a mount namespace of the workload's own.
    Unshare = 23,
    /// Nothing mounted in it propagates back to PID 1's.
    MountsPrivate = 24,
    /// chroot into the image tmpfs, so the root is a mount with a parent
    /// (the initramfs root cannot be pivoted away from).
    ChrootBase = 25,
    /// chdir into the image root, pivot_root(".", "."), detach the old root.
    PivotRoot = 26,
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
    Step::Unshare,
    Step::MountsPrivate,
    Step::ChrootBase,
    Step::PivotRoot,
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
            Step::Unshare => "unshare mount namespace",
            Step::MountsPrivate => "make mounts private",
            Step::ChrootBase => "chroot into the image tmpfs",
            Step::PivotRoot => "pivot_root into the image",
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
    /// Run in this root (a container image, `crate::image`): a directory
    /// that is a mount point, directly in a directory that is one too. The
    /// program, its interpreters and the Landlock paths are resolved
    /// inside it, and the child pivots into it in a mount namespace of its
    /// own before it drops its capabilities.
    pub new_root: Option<PathBuf>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            proc_root: "/proc".into(),
            image_root: "/".into(),
            dev_null: "/dev/null".into(),
            stdin_pipe: false,
            kernel: None,
            new_root: None,
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

const SECCOMP_SET_MODE_FILTER: usize = 1;
const SECCOMP_FILTER_FLAG_LOG: usize = 2;
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
// 0x44000: fits any usize.
#[allow(clippy::cast_possible_truncation)]
const MS_REC_PRIVATE: usize = (libc::MS_REC | libc::MS_PRIVATE) as usize;
// libc's are c_int; the loop counts in u32, as the report does.
const SIGKILL: u32 = libc::SIGKILL.unsigned_abs();
const SIGSTOP: u32 = libc::SIGSTOP.unsigned_abs();

/// A workload's seccomp program compiled ahead of its plan; holds `None`
/// when the configuration runs the workload without seccomp.
#[derive(Debug)]
pub struct CompiledSeccomp(pub(crate) Option<Program>);

/// Everything the child needs, allocated before it starts.
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
    no_new_privs: bool,
    landlock: Option<OwnedFd>,
    seccomp: Option<Program>,
    dev_null: OwnedFd,
    stdin_pipe: bool,
    /// With `LaunchOptions::new_root`.
    pivot: Option<Pivot>,
}

/// Where the child pivots: the image tmpfs (chrooted into first) and the
/// root's name in it; the program is then executed by its path in the root.
struct Pivot {
    base: CString,
    root_name: CString,
    exec_path: CString,
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
        Self::for_process(&workload.process(), sandbox, extra_env, opts)
    }

    /// The `[sandbox]` seccomp program for `workload`, compiled as
    /// [`LaunchPlan::new`] would: at boot this runs in a thread while the
    /// guest attests, and [`LaunchPlan::with_seccomp`] takes the result.
    pub fn compile_seccomp(
        workload: &WorkloadConfig,
        sandbox: &SandboxConfig,
    ) -> Result<CompiledSeccomp, SandboxError> {
        let keep_caps = caps::mask(&sandbox.kept_capabilities())?;
        Ok(CompiledSeccomp(compile_profile(&workload.process(), sandbox, &LaunchOptions::default(), keep_caps)?))
    }

    /// [`LaunchPlan::new`] with the seccomp program compiled beforehand by
    /// [`LaunchPlan::compile_seccomp`] from the same configuration.
    pub fn with_seccomp(
        workload: &WorkloadConfig,
        sandbox: &SandboxConfig,
        extra_env: &[(String, String)],
        seccomp: CompiledSeccomp,
    ) -> Result<Self, SandboxError> {
        Self::build(&workload.process(), sandbox, extra_env, &LaunchOptions::default(), Some(seccomp))
    }

    /// [`LaunchPlan::for_process`] with a program compiled beforehand.
    pub fn for_process_with_seccomp(
        workload: &Process<'_>,
        sandbox: &SandboxConfig,
        extra_env: &[(String, String)],
        opts: &LaunchOptions,
        seccomp: CompiledSeccomp,
    ) -> Result<Self, SandboxError> {
        Self::build(workload, sandbox, extra_env, opts, Some(seccomp))
    }

    /// A plan for any process, not only the `[workload]` section's (the GPU
    /// helper builds its own).
    pub fn for_process(
        workload: &Process<'_>,
        sandbox: &SandboxConfig,
        extra_env: &[(String, String)],
        opts: &LaunchOptions,
    ) -> Result<Self, SandboxError> {
        Self::build(workload, sandbox, extra_env, opts, None)
    }

    fn build(
        workload: &Process<'_>,
        sandbox: &SandboxConfig,
        extra_env: &[(String, String)],
        opts: &LaunchOptions,
        compiled: Option<CompiledSeccomp>,
    ) -> Result<Self, SandboxError> {
        let path = workload.path;
        let program_err = |source| SandboxError::Program { path: path.to_string(), source };
        let exe = open_program(path, opts.new_root.as_deref()).map_err(program_err)?;
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

        // Kept capabilities are a weakening, reported at boot with the others.
        let keep_caps = caps::mask(&sandbox.kept_capabilities())?;
        let cap_last = caps::last_cap(&opts.proc_root).map_err(setup("cap_last_cap"))?;

        let seccomp = match compiled {
            Some(CompiledSeccomp(program)) => program,
            None => {
                let _part = crate::timeline::part("seccomp-compile");
                compile_profile(workload, sandbox, opts, keep_caps)?
            }
        };
        let part = crate::timeline::part("landlock-ruleset");
        let ruleset = match &opts.new_root {
            None => fs_access::build(sandbox, Path::new(path))?,
            Some(root) => fs_access::build_in_root(sandbox, Path::new(path), root)?,
        };
        let landlock = match ruleset {
            Some(fd) => Some(above_stdio(fd).map_err(setup("duplicate landlock fd"))?),
            None => None,
        };
        drop(part);
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
            workdir: cstring("workload.workdir", workload.workdir)?,
            uid: workload.user,
            gid: workload.group,
            groups: workload.supplementary_groups.to_vec(),
            rlimits,
            oom_path,
            oom_value: format!("{}\n", sandbox.oom_score_adj).into_bytes(),
            cap_last,
            keep_caps,
            cap_data: caps::cap_data(keep_caps),
            no_new_privs: sandbox.no_new_privs,
            landlock,
            seccomp,
            dev_null,
            stdin_pipe: opts.stdin_pipe,
            pivot: opts.new_root.as_deref().map(|root| pivot(root, path)).transpose()?,
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

        let pid = self.start_child(&io, rep_w.as_raw_fd(), Until::Exec)?;
        drop((out_w, err_w, rep_w));
        let stdin = stdin.map(|(r, w)| {
            drop(r);
            w
        });
        self.await_report(pid, rep_r)?;
        Ok(Launched { pid, stdout: out_r, stderr: err_r, stdin })
    }

    /// Handoff mode: the same steps in this process (PID 1), then exec,
    /// except `setsid`: PID 1 keeps init's session and process group (0),
    /// which an init such as kata-agent needs for its own `setsid()`. First
    /// a child rehearsal runs every step up to seccomp, so a configuration
    /// that cannot work is reported while PID 1 still has its privileges.
    /// Returns only on failure; a failure after the rehearsal leaves this
    /// process without privileges (main logs FATAL and exits, which panics
    /// the kernel and stops the VM).
    pub fn exec_in_place(&self) -> Result<Infallible, SandboxError> {
        let (rep_r, rep_w) = pipe().map_err(setup("report pipe"))?;
        let io = ChildIo { stdin: self.dev_null.as_raw_fd(), stdout: None, stderr: None };
        let pid = self.start_child(&io, rep_w.as_raw_fd(), Until::BeforeSeccomp)?;
        drop(rep_w);
        self.await_report(pid, rep_r)?;
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(SandboxError::ChildVanished(describe_status(r, status)));
        }
        // SAFETY: `apply` issues raw system calls on memory owned by `self`.
        match unsafe { self.apply(&mut Kernel, &io, Until::ExecInPlace) } {
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
            Some(step) => Err(step_error(step, word(4), word(8).cast_signed())),
            None => Err(SandboxError::ChildVanished(format!("unknown step {}", word(0)))),
        }
    }

    /// Starts the child in PID 1's memory (`clone` with `CLONE_VM |
    /// CLONE_VFORK`, as posix_spawn does) on a stack of its own: no copy
    /// of PID 1's page tables and no copy-on-write faults in either
    /// process, which under TCG cost more than every sandbox step together.
    /// This thread is suspended until the child has exec'd or exited.
    /// Signals stay blocked across the clone, so no handler of this
    /// process runs on the child's stack; the child resets every
    /// disposition before it unblocks them (steps 1-2).
    fn start_child(&self, io: &ChildIo, report: RawFd, until: Until) -> Result<libc::pid_t, SandboxError> {
        let failed = |what: &str| SandboxError::Setup { what: what.into(), source: std::io::Error::last_os_error() };
        let stack = ChildStack::new().ok_or_else(|| failed("child stack"))?;
        let args = ChildArgs { plan: self, io, report, until };
        // SAFETY: sigset_t is plain data, initialised by sigfillset.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to local sigsets.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: `child_entry` runs on `stack`, which outlives the child's
        // use of it (CLONE_VFORK returns only once the child has exec'd or
        // exited), and reads `args`, which lives in this frame as long.
        // The child shares this memory: it writes only to its own stack
        // (and, through the C library, this thread's errno).
        let pid = unsafe {
            libc::clone(
                child_entry,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw const args).cast_mut().cast(),
            )
        };
        let clone_error = std::io::Error::last_os_error();
        // SAFETY: restores this thread's mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(stack);
        if pid < 0 {
            return Err(SandboxError::Setup { what: "clone".into(), source: clone_error });
        }
        Ok(pid)
    }

    /// The child: apply every step, report a failure, never return.
    ///
    /// # Safety
    /// Must be called only in a freshly started child.
    unsafe fn child_main(&self, io: &ChildIo, report: RawFd, until: Until) -> ! {
        // SAFETY: raw system calls on memory prepared before the child started.
        let result = unsafe { self.apply(&mut Kernel, io, until) };
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
    /// no panics (no indexing, no unwrap). Every call goes through `sys`
    /// (the kernel, or the recorder of the unit tests).
    ///
    /// # Safety
    /// With [`Kernel`], changes the credentials and state of the calling
    /// process.
    unsafe fn apply<S: Sys>(&self, sys: &mut S, io: &ChildIo, until: Until) -> Result<(), (Step, u32, i32)> {
        // Every pointer passed below points into `self` or this stack frame
        // and outlives the call.
        let mut call = |nr: libc::c_long, a: [usize; 6]| -> Result<(), i32> {
            // SAFETY: see above; the arguments are those of `nr`.
            let r = unsafe { sys.syscall(nr, a) };
            if r < 0 { Err(sys.errno()) } else { Ok(()) }
        };
        let at = |step: Step, detail: u32| move |errno: i32| (step, detail, errno);
        // 1. Signal dispositions back to default (handlers would point
        //    into PID 1's code; SIG_IGN would survive exec).
        let dfl = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
        let dfl_ptr = (&raw const dfl).expose_provenance();
        for sig in 1..=64u32 {
            if sig == SIGKILL || sig == SIGSTOP {
                continue;
            }
            match call(libc::SYS_rt_sigaction, [sig as usize, dfl_ptr, 0, 8, 0, 0]) {
                Err(e) if e != libc::EINVAL => return Err((Step::ResetSignals, sig, e)),
                _ => {}
            }
        }
        // 2. Empty signal mask.
        let empty: u64 = 0;
        let empty_ptr = (&raw const empty).expose_provenance();
        call(libc::SYS_rt_sigprocmask, [int(libc::SIG_SETMASK), empty_ptr, 0, 8, 0, 0])
            .map_err(at(Step::UnblockSignals, 0))?;
        // 3. setsid, in children only (supervise, and the
        //    handoff rehearsal, which must not share PID 1's group).
        //    PID 1 itself keeps the session and group the kernel gave
        //    init (0): an init such as kata-agent calls setsid() first
        //    and gives up on EPERM, which it gets once its caller
        //    leads a process group.
        if !matches!(until, Until::ExecInPlace) {
            call(libc::SYS_setsid, [0; 6]).map_err(at(Step::Setsid, 0))?;
        }
        // 4-6. stdio. dup2 onto the fd it already is would leave its
        //      close-on-exec flag set: clear the flag instead.
        let mut move_fd = |from: RawFd, to: RawFd| {
            if from == to {
                call(libc::SYS_fcntl, [int(to), int(libc::F_SETFD), 0, 0, 0, 0])
            } else {
                call(libc::SYS_dup2, [int(from), int(to), 0, 0, 0, 0])
            }
        };
        move_fd(io.stdin, 0).map_err(at(Step::Stdin, 0))?;
        if let Some(fd) = io.stdout {
            move_fd(fd, 1).map_err(at(Step::Stdout, 0))?;
        }
        if let Some(fd) = io.stderr {
            move_fd(fd, 2).map_err(at(Step::Stderr, 0))?;
        }
        // 7. rlimits.
        for (resource, lim) in &self.rlimits {
            let lim_ptr = std::ptr::from_ref(lim).expose_provenance();
            call(libc::SYS_prlimit64, [0, *resource as usize, lim_ptr, 0, 0, 0])
                .map_err(at(Step::Setrlimit, *resource))?;
        }
        // 8. oom_score_adj.
        let path = self.oom_path.as_ptr().expose_provenance();
        // SAFETY: `path` is NUL-terminated and lives in `self`.
        let fd = unsafe {
            sys.syscall(libc::SYS_openat, [int(libc::AT_FDCWD), path, int(libc::O_WRONLY | libc::O_CLOEXEC), 0, 0, 0])
        };
        if fd < 0 {
            return Err((Step::OomScoreAdj, 0, sys.errno()));
        }
        let fd = usize::try_from(fd).map_err(|_| (Step::OomScoreAdj, 0, libc::EBADF))?;
        let value = (self.oom_value.as_ptr().expose_provenance(), self.oom_value.len());
        // SAFETY: writes `oom_value`, which lives in `self`, to the fd just opened.
        let r = unsafe { sys.syscall(libc::SYS_write, [fd, value.0, value.1, 0, 0, 0]) };
        let write_errno = sys.errno();
        // SAFETY: closes the fd just opened, which nothing else holds.
        unsafe { sys.syscall(libc::SYS_close, [fd, 0, 0, 0, 0, 0]) };
        if r < 0 {
            return Err((Step::OomScoreAdj, 0, write_errno));
        }
        let mut call = |nr: libc::c_long, a: [usize; 6]| -> Result<(), i32> {
            // SAFETY: as for the `call` above.
            let r = unsafe { sys.syscall(nr, a) };
            if r < 0 { Err(sys.errno()) } else { Ok(()) }
        };
        // 8a-d. A container image: its own mount namespace, pivoted into
        //       the image root while CAP_SYS_ADMIN is still held. The root
        //       must be a mount whose parent is one too: the initramfs
        //       itself cannot be pivoted away from, so first chroot into
        //       the image tmpfs (a mount on the initramfs), then pivot from
        //       there into the root and detach everything above it.
        if let Some(p) = &self.pivot {
            call(libc::SYS_unshare, [int(libc::CLONE_NEWNS), 0, 0, 0, 0, 0]).map_err(at(Step::Unshare, 0))?;
            let slash = c"/".as_ptr().expose_provenance();
            call(libc::SYS_mount, [0, slash, 0, MS_REC_PRIVATE, 0, 0]).map_err(at(Step::MountsPrivate, 0))?;
            let base = p.base.as_ptr().expose_provenance();
            call(libc::SYS_chroot, [base, 0, 0, 0, 0, 0]).map_err(at(Step::ChrootBase, 0))?;
            let name = p.root_name.as_ptr().expose_provenance();
            call(libc::SYS_chdir, [name, 0, 0, 0, 0, 0]).map_err(at(Step::PivotRoot, 1))?;
            let dot = c".".as_ptr().expose_provenance();
            call(libc::SYS_pivot_root, [dot, dot, 0, 0, 0, 0]).map_err(at(Step::PivotRoot, 2))?;
            call(libc::SYS_umount2, [dot, int(libc::MNT_DETACH), 0, 0, 0, 0]).map_err(at(Step::PivotRoot, 3))?;
            call(libc::SYS_chdir, [slash, 0, 0, 0, 0, 0]).map_err(at(Step::PivotRoot, 4))?;
        }
        // 9. Bounding set, while we still hold CAP_SETPCAP.
        for cap in 0..=self.cap_last {
            if cap < 64 && self.keep_caps & (1u64 << cap) != 0 {
                continue;
            }
            match call(libc::SYS_prctl, [int(libc::PR_CAPBSET_DROP), cap as usize, 0, 0, 0, 0]) {
                Err(e) if e != libc::EINVAL => return Err((Step::BoundingSet, cap, e)),
                _ => {}
            }
        }
        // 10-13. Groups, gid, uid (raw: this thread only, which is all there is).
        let groups = self.groups.as_ptr().expose_provenance();
        call(libc::SYS_setgroups, [self.groups.len(), groups, 0, 0, 0, 0]).map_err(at(Step::Setgroups, 0))?;
        let (uid, gid) = (self.uid as usize, self.gid as usize);
        call(libc::SYS_setresgid, [gid, gid, gid, 0, 0, 0]).map_err(at(Step::Setresgid, 0))?;
        if self.keep_caps != 0 && self.uid != 0 {
            call(libc::SYS_prctl, [int(libc::PR_SET_KEEPCAPS), 1, 0, 0, 0, 0]).map_err(at(Step::KeepCaps, 0))?;
        }
        call(libc::SYS_setresuid, [uid, uid, uid, 0, 0, 0]).map_err(at(Step::Setresuid, 0))?;
        // 14. E/P/I = the kept set (empty by default).
        let header = caps::CapHeader { version: caps::LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let header_ptr = (&raw const header).expose_provenance();
        call(libc::SYS_capset, [header_ptr, self.cap_data.as_ptr().expose_provenance(), 0, 0, 0, 0])
            .map_err(at(Step::Capset, 0))?;
        // 15-16. Ambient: cleared, then the kept set for a non-root user
        //        (root gets them back from the bounding set at exec).
        call(libc::SYS_prctl, [int(libc::PR_CAP_AMBIENT), int(libc::PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0, 0])
            .map_err(at(Step::AmbientClear, 0))?;
        if self.uid != 0 {
            for cap in 0..64u32 {
                if self.keep_caps & (1u64 << cap) != 0 {
                    let raise = int(libc::PR_CAP_AMBIENT_RAISE);
                    call(libc::SYS_prctl, [int(libc::PR_CAP_AMBIENT), raise, cap as usize, 0, 0, 0])
                        .map_err(at(Step::AmbientRaise, cap))?;
                }
            }
        }
        // 17. Working directory, as the workload user.
        call(libc::SYS_chdir, [self.workdir.as_ptr().expose_provenance(), 0, 0, 0, 0, 0])
            .map_err(at(Step::Chdir, 0))?;
        // 18. no_new_privs: no setuid or file capability gains, and what
        //     lets an unprivileged process install Landlock and seccomp
        //     (`no_new_privs = false` is refused by the config unless
        //     CAP_SYS_ADMIN is kept, which lets the kernel install them).
        if self.no_new_privs {
            call(libc::SYS_prctl, [int(libc::PR_SET_NO_NEW_PRIVS), 1, 0, 0, 0, 0]).map_err(at(Step::NoNewPrivs, 0))?;
        }
        // 19. Landlock.
        if let Some(fd) = &self.landlock {
            call(libc::SYS_landlock_restrict_self, [int(fd.as_raw_fd()), 0, 0, 0, 0, 0])
                .map_err(at(Step::LandlockRestrictSelf, 0))?;
        }
        // 20. Every fd above stdio closes at exec (the report pipe too).
        call(libc::SYS_close_range, [3, u32::MAX as usize, CLOSE_RANGE_CLOEXEC as usize, 0, 0, 0])
            .map_err(at(Step::CloseRange, 0))?;
        if matches!(until, Until::BeforeSeccomp) {
            return Ok(());
        }
        // 21. seccomp, last: from here on only what the profile allows.
        if let Some(prog) = &self.seccomp {
            let insns = prog.instructions();
            // compile() refuses programs over 4096 instructions.
            let len = u16::try_from(insns.len()).map_err(|_| (Step::Seccomp, 0, libc::E2BIG))?;
            let fprog = SockFprog { len, filter: insns.as_ptr() };
            let flags = if prog.log { SECCOMP_FILTER_FLAG_LOG } else { 0 };
            let fprog_ptr = (&raw const fprog).expose_provenance();
            call(libc::SYS_seccomp, [SECCOMP_SET_MODE_FILTER, flags, fprog_ptr, 0, 0, 0])
                .map_err(at(Step::Seccomp, 0))?;
        }
        // 22. exec the program opened beforehand; in an image by its path
        //     there (a `#!` script cannot run from a close-on-exec fd).
        if let Some(p) = &self.pivot {
            let (argv, envp) =
                (self.argv_ptrs.as_ptr().expose_provenance(), self.envp_ptrs.as_ptr().expose_provenance());
            let path = p.exec_path.as_ptr().expose_provenance();
            let errno = call(libc::SYS_execve, [path, argv, envp, 0, 0, 0]).err().unwrap_or(0);
            return Err((Step::Execveat, 1, errno));
        }
        let exe = int(self.exe.as_raw_fd());
        let (argv, envp) = (self.argv_ptrs.as_ptr().expose_provenance(), self.envp_ptrs.as_ptr().expose_provenance());
        let empty = c"".as_ptr().expose_provenance();
        let errno = call(libc::SYS_execveat, [exe, empty, argv, envp, int(libc::AT_EMPTY_PATH), 0]).err().unwrap_or(0);
        Err((Step::Execveat, 0, errno))
    }
}

/// What `child_entry` needs; lives in the parent's frame, which stays
/// put while the child runs (CLONE_VFORK).
struct ChildArgs<'a> {
    plan: &'a LaunchPlan,
    io: &'a ChildIo,
    report: RawFd,
    until: Until,
}

extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `start_child` passes a pointer to its `ChildArgs`, valid
    // until this child has exec'd or exited.
    let args = unsafe { &*arg.cast_const().cast::<ChildArgs<'_>>() };
    // SAFETY: we are the freshly started child.
    unsafe { args.plan.child_main(args.io, args.report, args.until) }
}

/// The child's stack: its own mapping with a guard page below, so an
/// overflow faults instead of writing into PID 1's memory.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

/// The steps use a few KiB; debug builds more.
const CHILD_STACK_BYTES: usize = 256 * 1024;
const GUARD_BYTES: usize = 4096;

impl ChildStack {
    fn new() -> Option<ChildStack> {
        let len = CHILD_STACK_BYTES + GUARD_BYTES;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping made above.
        if unsafe { libc::mprotect(base, GUARD_BYTES, libc::PROT_NONE) } != 0 {
            return None;
        }
        Some(stack)
    }

    /// The initial stack pointer: the end of the mapping (page-aligned,
    /// so 16-byte aligned as the ABI wants).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, not dereferenced.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; the child no longer runs on it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[derive(Clone, Copy)]
enum Until {
    /// A child: every step, then exec.
    Exec,
    /// The handoff rehearsal: stop before seccomp and exit 0.
    BeforeSeccomp,
    /// PID 1 itself in handoff mode: every step but `setsid`, then exec.
    ExecInPlace,
}

struct ChildIo {
    stdin: RawFd,
    stdout: Option<RawFd>,
    stderr: Option<RawFd>,
}

/// The program, O_PATH: in the host's view, or inside `root` as the
/// workload will see it (symlinks resolved there, never out of it).
fn open_program(path: &str, root: Option<&Path>) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let exe = match root {
        None => rustix::fs::open(path, flags, Mode::empty())?,
        Some(root) => {
            let dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
            rustix::fs::openat2(&dir, path, flags, Mode::empty(), ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS)?
        }
    };
    let st = rustix::fs::fstat(&exe)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(exe)
}

fn pivot(root: &Path, program: &str) -> Result<Pivot, SandboxError> {
    let bad = || SandboxError::Setup {
        what: format!("image root {}", root.display()),
        source: std::io::Error::other("must be a directory below another, both mount points"),
    };
    let base = root.parent().ok_or_else(bad)?;
    let name = root.file_name().ok_or_else(bad)?;
    Ok(Pivot {
        base: cstring("image root", &base.to_string_lossy())?,
        // Absolute: after the chroot "/" is the tmpfs, and the cwd is still
        // the old root's.
        root_name: cstring("image root", &format!("/{}", name.to_string_lossy()))?,
        exec_path: cstring("workload path", program)?,
    })
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
    workload: &Process<'_>,
    sandbox: &SandboxConfig,
    opts: &LaunchOptions,
    keep_caps: u64,
) -> Result<Option<Program>, SandboxError> {
    let mut profile = match &sandbox.seccomp {
        // A weakening, reported at boot with the others.
        SeccompChoice::None => return Ok(None),
        SeccompChoice::WorkloadDefault => seccomp::builtin::workload_default(&sandbox.seccomp_allow),
        SeccompChoice::Strict => seccomp::builtin::strict(&sandbox.seccomp_allow),
        SeccompChoice::Agent => seccomp::builtin::agent(&sandbox.seccomp_allow, sandbox.keeps_sys_module()),
        SeccompChoice::File(path) => {
            let bytes = crate::files::read_image_file(&opts.image_root, path, super::config::MAX_PROFILE_BYTES as u64)
                .map_err(|source| SandboxError::ProfileRead { path: path.clone(), source })?;
            let ctx =
                seccomp::oci::ImportContext { capabilities: keep_caps, kernel: opts.kernel.or_else(running_kernel) };
            seccomp::oci::import(path, &bytes, ctx)?
        }
    };
    profile.log |= sandbox.seccomp_log;
    seccomp::check_launchable(&profile)?;
    let program = seccomp::compile(&profile)?;
    if workload.mode == LaunchMode::Handoff && program.has_fatal_actions() {
        warn_no_kills_in_handoff(&program.name);
        return Ok(Some(program.without_fatal_actions()));
    }
    Ok(Some(program))
}

/// Said whenever a handoff workload's program has had its kill and trap
/// actions replaced, at boot also when the image's precompiled program did.
pub(crate) fn warn_no_kills_in_handoff(profile: &str) {
    log::warn!(
        "sandbox: handoff mode: the workload becomes PID 1, whose death panics the kernel; \
         the kill and trap actions of {profile} answer EPERM instead"
    );
}

mod sys;

#[cfg(test)]
mod tests;
