//! ztinit's side of the `ztinit-gpu` helper: start it confined (the
//! workload sandbox's launch path with the `strict` seccomp profile, Landlock
//! and only `CAP_SYS_ADMIN`) with a clean environment, send one request line
//! at a time, and wait for one response line within a deadline. A crash, a
//! timeout, an oversized or malformed line, or a version mismatch is an
//! error; the caller treats every error as fatal for the boot.
//!
//! The helper is waited for by its pid only (never `waitpid(-1)`), and
//! always reaped before `Helper` is gone, so the supervisor's reaper never
//! sees it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;

use super::protocol::{self, CcSettings, EvidenceReply, Inventory, Op, ReadyReply, Request, Response, TuneReply};
use crate::sandbox::{
    LandlockMode, LaunchOptions, LaunchPlan, Limit, RlimitConfig, SandboxConfig, SandboxError, SeccompChoice,
};
use crate::sandbox::{LaunchMode, Process as LaunchProcess};

/// Bytes of the helper's stderr kept for error messages.
const STDERR_TAIL: usize = 2048;
/// How long a killed helper may take to be reaped before ztinit gives up
/// waiting (a process stuck in a driver call dies only when it returns).
const REAP_AFTER_KILL: Duration = Duration::from_secs(5);

/// NVIDIA device nodes the helper may open read-write with ioctls.
pub const HELPER_DEVICES: &[&str] = &["/dev/nvidia*", "/dev/nvidia-caps/*"];
/// The one capability the helper keeps: the driver's privileged controls
/// (setting the CC ready state, clocks, power) require `CAP_SYS_ADMIN`
/// (`RMCTRL_FLAGS_PRIVILEGED` → `osIsAdministrator`).
pub const HELPER_CAPABILITIES: &[&str] = &["CAP_SYS_ADMIN"];
/// System calls a glibc program loading NVML needs beyond `strict`.
pub const HELPER_SYSCALLS: &[&str] = &["sysinfo", "flock", "getppid", "sched_getparam", "sched_getscheduler"];

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start GPU helper {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start GPU helper {path} in its sandbox: {source}")]
    Sandbox {
        path: String,
        #[source]
        source: SandboxError,
    },
    #[error("GPU helper did not answer {op} within {secs} s")]
    Timeout { op: &'static str, secs: u64 },
    #[error("GPU helper exited during {op} ({status}){stderr}")]
    Crashed { op: &'static str, status: String, stderr: String },
    #[error("GPU helper sent a line longer than {} bytes during {op}", protocol::MAX_LINE)]
    TooLong { op: &'static str },
    #[error("GPU helper sent a malformed response to {op}: {reason}")]
    Malformed { op: &'static str, reason: String },
    #[error("GPU helper speaks protocol version {got}, expected {}", protocol::VERSION)]
    Version { got: u32 },
    #[error("GPU helper: {op} failed: {message}")]
    Refused { op: &'static str, message: String },
    #[error("GPU helper pipe: {0}")]
    Io(#[from] std::io::Error),
}

/// How the helper runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// The workload launch path: own session, signals reset, `strict`
    /// seccomp (kill on anything else) plus `HELPER_SYSCALLS` and
    /// `seccomp_allow`, Landlock (read everywhere; read-write only the NVIDIA
    /// device nodes and `read_write`), every capability dropped but
    /// `HELPER_CAPABILITIES`, no_new_privs, oom_score_adj 0, same uid/gid as
    /// ztinit (root).
    Sandboxed { read_write: Vec<String>, seccomp_allow: Vec<String> },
    /// A plain child with only the clean environment (tests run as an
    /// ordinary user, who cannot set up the sandbox).
    Unconfined,
}

/// How to start the helper.
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    /// Passed as `--nvml PATH` (the library the helper loads).
    pub nvml_library: Option<String>,
    /// The helper's complete environment (empty at boot; tests point the fake
    /// library at its configuration).
    pub env: Vec<(OsString, OsString)>,
    /// Deadline for each request.
    pub timeout: Duration,
    pub confinement: Confinement,
}

impl HelperCommand {
    /// The sandbox the helper runs in (`Confinement::Sandboxed`).
    pub fn sandbox(read_write: &[String], seccomp_allow: &[String]) -> SandboxConfig {
        SandboxConfig {
            seccomp: SeccompChoice::Strict,
            seccomp_allow: HELPER_SYSCALLS.iter().map(|s| s.to_string()).chain(seccomp_allow.iter().cloned()).collect(),
            seccomp_log: true,
            landlock: LandlockMode::Required,
            read_only: vec!["/".into()],
            read_write: read_write.to_vec(),
            executable: Vec::new(),
            devices: HELPER_DEVICES.iter().map(|s| s.to_string()).collect(),
            capabilities: HELPER_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            // Lower than the workload's: NVML needs a few descriptors and no
            // pinned memory to speak of (8 MiB is the kernel's default).
            rlimits: RlimitConfig { nofile: Limit(1024), memlock: Limit(8 << 20), nproc: None },
            ..SandboxConfig::default()
        }
    }

    fn args(&self) -> Vec<OsString> {
        match &self.nvml_library {
            Some(lib) => vec!["--nvml".into(), lib.into()],
            None => Vec::new(),
        }
    }
}

/// The helper process, known by pid; reaped by `waitpid(pid)` only.
struct Process {
    pid: libc::pid_t,
    /// The exit status, once reaped.
    status: Option<String>,
}

impl Process {
    /// The status if the process has ended (reaping it), `None` while it runs.
    fn try_reap(&mut self) -> Option<String> {
        if self.status.is_none() {
            let mut raw = 0;
            // SAFETY: waitpid on our own child's pid with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
            if r == self.pid {
                self.status = Some(describe_wait_status(raw));
            } else if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                // ECHILD: not our child any more; nothing left to reap.
                self.status = Some("status unknown".into());
            }
        }
        self.status.clone()
    }

    /// Waits up to `limit` for the process to end.
    fn reap_within(&mut self, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_reap() {
                return Some(s);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if self.try_reap().is_some() {
            return;
        }
        // SAFETY: signals our own, not yet reaped, child by pid.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if self.reap_within(REAP_AFTER_KILL).is_none() {
            log::warn!("gpu: helper (pid {}) did not end after SIGKILL; leaving it to the reaper", self.pid);
        }
    }
}

/// "exit status 3", "killed by signal 31 (SIGSYS: a system call outside its seccomp profile)".
fn describe_wait_status(raw: i32) -> String {
    match crate::supervise::Exit::from_wait_status(raw) {
        crate::supervise::Exit::Status(n) => format!("exit status {n}"),
        crate::supervise::Exit::Signal(libc::SIGSYS) => format!(
            "killed by signal {} (SIGSYS: a system call outside its seccomp profile; see [gpu] helper_seccomp_allow)",
            libc::SIGSYS
        ),
        crate::supervise::Exit::Signal(sig) => {
            format!("killed by signal {sig} ({})", crate::names::signal_name(sig))
        }
    }
}

pub struct Helper {
    process: Process,
    stdin: Option<File>,
    stdout: File,
    buf: Vec<u8>,
    timeout: Duration,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    /// Set when the stderr drain reaches EOF.
    stderr_eof: Arc<std::sync::atomic::AtomicBool>,
}

/// The started helper's pid and pipe ends (stdin write, stdout and stderr
/// read), before any request.
struct Started {
    pid: libc::pid_t,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn spawn_unconfined(cmd: &HelperCommand) -> Result<Started, HelperError> {
    let mut c = Command::new(&cmd.program);
    c.args(cmd.args());
    c.env_clear().envs(cmd.env.iter().map(|(k, v)| (k, v)));
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child =
        c.spawn().map_err(|source| HelperError::Spawn { path: cmd.program.display().to_string(), source })?;
    // pid_max is at most 2^22: a pid is a positive pid_t.
    let pid = child.id().cast_signed();
    match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        // Dropping `Child` neither kills nor waits: `Process` reaps by pid.
        (Some(stdin), Some(stdout), Some(stderr)) => {
            Ok(Started { pid, stdin: stdin.into(), stdout: stdout.into(), stderr: stderr.into() })
        }
        _ => {
            let mut p = Process { pid, status: None };
            p.kill();
            Err(HelperError::Io(std::io::Error::other("helper pipes missing")))
        }
    }
}

fn spawn_sandboxed(cmd: &HelperCommand, read_write: &[String], allow: &[String]) -> Result<Started, HelperError> {
    let path = cmd.program.display().to_string();
    let not_utf8 = |what: &str| HelperError::Spawn {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what} is not UTF-8")),
    };
    let program = cmd.program.to_str().ok_or_else(|| not_utf8("the program path"))?;
    let args: Vec<String> = cmd
        .args()
        .into_iter()
        .map(|a| a.into_string().map_err(|_| not_utf8("an argument")))
        .collect::<Result<_, _>>()?;
    let mut env = BTreeMap::new();
    for (k, v) in &cmd.env {
        let k = k.to_str().ok_or_else(|| not_utf8("an environment name"))?;
        env.insert(k.to_string(), v.to_str().ok_or_else(|| not_utf8("an environment value"))?.to_string());
    }
    let process = LaunchProcess {
        path: program,
        args: &args,
        env: &env,
        user: rustix::process::geteuid().as_raw(),
        group: rustix::process::getegid().as_raw(),
        supplementary_groups: &[],
        workdir: "/",
        mode: LaunchMode::Supervise,
    };
    let sandbox = HelperCommand::sandbox(read_write, allow);
    let opts = LaunchOptions { stdin_pipe: true, ..LaunchOptions::default() };
    let sandbox_err = |source| HelperError::Sandbox { path: path.clone(), source };
    let launched =
        LaunchPlan::for_process(&process, &sandbox, &[], &opts).and_then(|plan| plan.spawn()).map_err(sandbox_err)?;
    // Blocking read ends: this side polls stdout itself and drains stderr
    // on a thread.
    let Some(stdin) = launched.stdin else {
        let mut p = Process { pid: launched.pid, status: None };
        p.kill();
        return Err(HelperError::Io(std::io::Error::other("helper stdin pipe missing")));
    };
    Ok(Started { pid: launched.pid, stdin, stdout: launched.stdout, stderr: launched.stderr })
}

impl Helper {
    pub fn spawn(cmd: &HelperCommand) -> Result<Helper, HelperError> {
        let started = match &cmd.confinement {
            Confinement::Sandboxed { read_write, seccomp_allow } => spawn_sandboxed(cmd, read_write, seccomp_allow)?,
            Confinement::Unconfined => spawn_unconfined(cmd)?,
        };
        let mut stderr = File::from(started.stderr);
        // Drain stderr so the helper cannot block on it; keep only a tail.
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        let stderr_eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let eof = Arc::clone(&stderr_eof);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 512];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut t) = tail.lock() {
                    t.extend_from_slice(&chunk[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL);
                    t.drain(..excess);
                }
            }
            eof.store(true, std::sync::atomic::Ordering::Release);
        });
        Ok(Helper {
            process: Process { pid: started.pid, status: None },
            stdin: Some(File::from(started.stdin)),
            stdout: File::from(started.stdout),
            buf: Vec::new(),
            timeout: cmd.timeout,
            stderr_tail,
            stderr_eof,
        })
    }

    /// The helper's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.process.pid
    }

    /// Sends one request and returns the `ok` value.
    pub fn call(&mut self, op: Op) -> Result<serde_json::Value, HelperError> {
        let name = op_name(&op);
        let mut line = serde_json::to_vec(&Request::new(op)).map_err(|e| HelperError::Io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&line).and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("helper stdin closed")),
        };
        if written.is_err() {
            return Err(self.crashed(name));
        }
        let line = self.read_line(name)?;
        let resp: Response =
            serde_json::from_slice(&line).map_err(|e| HelperError::Malformed { op: name, reason: e.to_string() })?;
        if resp.v != protocol::VERSION {
            return Err(HelperError::Version { got: resp.v });
        }
        match (resp.ok, resp.error) {
            (Some(v), None) => Ok(v),
            (None, Some(message)) => Err(HelperError::Refused { op: name, message: printable(&message) }),
            _ => Err(HelperError::Malformed { op: name, reason: "neither exactly one of ok and error".into() }),
        }
    }

    fn typed<T: DeserializeOwned>(&mut self, op: Op) -> Result<T, HelperError> {
        let name = op_name(&op);
        let v = self.call(op)?;
        serde_json::from_value(v).map_err(|e| HelperError::Malformed { op: name, reason: e.to_string() })
    }

    pub fn inventory(&mut self) -> Result<Inventory, HelperError> {
        self.typed(Op::Inventory)
    }

    pub fn cc_settings(&mut self) -> Result<CcSettings, HelperError> {
        self.typed(Op::CcSettings)
    }

    /// Report and PEM chain of GPU `gpu` over `nonce`.
    pub fn evidence(&mut self, gpu: u32, nonce: &[u8; 32]) -> Result<(Vec<u8>, Vec<u8>), HelperError> {
        let reply: EvidenceReply = self.typed(Op::Evidence { gpu, nonce: hex::encode(nonce) })?;
        let malformed = |what: &str| HelperError::Malformed { op: "evidence", reason: format!("{what} is not base64") };
        if reply.gpu != gpu {
            return Err(HelperError::Malformed {
                op: "evidence",
                reason: format!("answer for GPU {} not {gpu}", reply.gpu),
            });
        }
        let report = B64.decode(&reply.report).map_err(|_| malformed("report"))?;
        let chain = B64.decode(&reply.cert_chain).map_err(|_| malformed("cert_chain"))?;
        Ok((report, chain))
    }

    pub fn tune(
        &mut self,
        gpu: u32,
        locked_clocks_mhz: Option<(u32, u32)>,
        power_limit_mw: Option<u32>,
    ) -> Result<(), HelperError> {
        let _: TuneReply = self.typed(Op::Tune { gpu, locked_clocks_mhz, power_limit_mw })?;
        Ok(())
    }

    /// Sets the ready state to 1; returns the state read back.
    pub fn set_ready(&mut self) -> Result<bool, HelperError> {
        self.typed::<ReadyReply>(Op::SetReady).map(|r| r.ready)
    }

    pub fn get_ready(&mut self) -> Result<bool, HelperError> {
        self.typed::<ReadyReply>(Op::GetReady).map(|r| r.ready)
    }

    fn read_line(&mut self, op: &'static str) -> Result<Vec<u8>, HelperError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(nl + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(line);
            }
            if self.buf.len() > protocol::MAX_LINE {
                self.kill();
                return Err(HelperError::TooLong { op });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wait_readable(&self.stdout, left)? {
                self.kill();
                return Err(HelperError::Timeout { op, secs: self.timeout.as_secs() });
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match self.stdout.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(self.crashed(op));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn crashed(&mut self, op: &'static str) -> HelperError {
        // The helper closed its end: collect its status (bounded wait).
        self.stdin = None;
        let status = match self.process.reap_within(Duration::from_millis(500)) {
            Some(s) => s,
            None => {
                self.process.kill();
                "still running; killed".to_string()
            }
        };
        // Its last words may still be in the pipe: let the drain finish.
        let drained_by = Instant::now() + Duration::from_millis(500);
        while !self.stderr_eof.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < drained_by {
            std::thread::sleep(Duration::from_millis(5));
        }
        let tail = self.stderr_tail.lock().map(|t| printable(&String::from_utf8_lossy(&t))).unwrap_or_default();
        let stderr = if tail.trim().is_empty() { String::new() } else { format!(": {}", tail.trim()) };
        HelperError::Crashed { op, status, stderr }
    }

    fn kill(&mut self) {
        self.stdin = None;
        self.process.kill();
    }

    /// Closes stdin (the helper exits at EOF) and waits briefly for it; a
    /// helper that does not end is killed. Either way it is reaped here.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stdin = None;
        if self.process.reap_within(Duration::from_secs(2)).is_none() {
            self.process.kill();
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Inventory => "inventory",
        Op::CcSettings => "cc-settings",
        Op::Evidence { .. } => "evidence",
        Op::Tune { .. } => "tune",
        Op::SetReady => "set-ready",
        Op::GetReady => "get-ready",
    }
}

/// One line of printable text at most 300 characters long (helper output
/// ends up in console messages).
fn printable(s: &str) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect();
    one
}

fn wait_readable(fd: &impl AsFd, timeout: Duration) -> Result<bool, HelperError> {
    use rustix::event::{PollFd, PollFlags, poll};
    let ts = rustix::time::Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(HelperError::Io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in helper: a shell script (the real helper is tested against
    /// the fake NVML in `crates/ztinit-gpu/tests`).
    fn script(dir: &Path, body: &str) -> HelperCommand {
        let p = dir.join(format!("helper-{}", body.len()));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Generous: the test machine may be loaded; `silence_times_out` uses its own.
        HelperCommand {
            program: p,
            nvml_library: None,
            env: Vec::new(),
            timeout: Duration::from_secs(10),
            confinement: Confinement::Unconfined,
        }
    }

    use std::path::Path;

    fn inventory_err(body: &str) -> HelperError {
        let t = tempfile::tempdir().unwrap();
        let mut h = Helper::spawn(&script(t.path(), body)).unwrap();
        h.inventory().unwrap_err()
    }

    #[test]
    fn crash_is_reported_with_status_and_stderr() {
        match inventory_err("read line; echo 'nvml: boom' >&2; exit 3") {
            HelperError::Crashed { op: "inventory", status, stderr } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, ": nvml: boom");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_signal_is_named_in_the_crash() {
        match inventory_err("read line; kill -SYS $$") {
            HelperError::Crashed { status, .. } => {
                assert_eq!(
                    status,
                    "killed by signal 31 (SIGSYS: a system call outside its seccomp profile; see [gpu] \
                     helper_seccomp_allow)"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// After `close` the pid is gone: reaped by pid, not left for PID 1's
    /// `waitpid(-1)` to find and report.
    fn assert_reaped(pid: libc::pid_t) {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ECHILD)));
    }

    #[test]
    fn close_reaps_the_helper() {
        let t = tempfile::tempdir().unwrap();
        let h = Helper::spawn(&script(t.path(), "read line")).unwrap();
        let pid = h.pid();
        h.close();
        assert_reaped(pid);
    }

    #[test]
    fn a_helper_that_ignores_end_of_input_is_killed_and_reaped() {
        let t = tempfile::tempdir().unwrap();
        let h = Helper::spawn(&script(t.path(), "exec sleep 30")).unwrap();
        let pid = h.pid();
        let started = Instant::now();
        drop(h);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_reaped(pid);
    }

    #[test]
    fn the_sandbox_is_strict_with_only_the_driver_capability() {
        let s = HelperCommand::sandbox(&["/run/x".into()], &["socket".into()]);
        assert_eq!(s.seccomp, SeccompChoice::Strict);
        assert_eq!(s.landlock, LandlockMode::Required);
        assert_eq!(s.capabilities, ["CAP_SYS_ADMIN"]);
        assert_eq!(s.read_only, ["/"]);
        assert_eq!(s.read_write, ["/run/x"]);
        assert_eq!(s.devices, ["/dev/nvidia*", "/dev/nvidia-caps/*"]);
        assert!(s.seccomp_allow.iter().any(|c| c == "sysinfo") && s.seccomp_allow.ends_with(&["socket".into()]));
        assert_eq!(s.oom_score_adj, 0);
        assert_eq!((s.rlimits.nofile, s.rlimits.memlock), (Limit(1024), Limit(8 << 20)));
    }

    #[test]
    fn silence_times_out() {
        let t = tempfile::tempdir().unwrap();
        let mut cmd = script(t.path(), "read line; sleep 5");
        cmd.timeout = Duration::from_millis(700);
        let e = Helper::spawn(&cmd).unwrap().inventory().unwrap_err();
        assert!(matches!(e, HelperError::Timeout { op: "inventory", .. }), "{e:?}");
    }

    #[test]
    fn malformed_wrong_version_and_refusals() {
        assert!(matches!(inventory_err("read line; echo garbage"), HelperError::Malformed { op: "inventory", .. }));
        assert!(matches!(inventory_err(r#"read line; echo '{"v":2,"ok":{}}'"#), HelperError::Version { got: 2 }));
        assert!(matches!(
            inventory_err(r#"read line; echo '{"v":1,"ok":{},"error":"x"}'"#),
            HelperError::Malformed { .. }
        ));
        assert!(matches!(inventory_err(r#"read line; echo '{"v":1,"ok":{"gpus":1}}'"#), HelperError::Malformed { .. }));
        match inventory_err(r#"read line; echo '{"v":1,"error":"no\u001b[2Jdriver"}'"#) {
            HelperError::Refused { message, .. } => assert_eq!(message, "no [2Jdriver"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn endless_line_is_cut() {
        let e = inventory_err("read line; head -c 400000 /dev/zero | tr '\\0' a; sleep 2");
        assert!(matches!(e, HelperError::TooLong { op: "inventory" }), "{e:?}");
    }

    #[test]
    fn missing_program_fails_to_spawn() {
        let cmd = HelperCommand {
            program: "/nonexistent/ztinit-gpu".into(),
            nvml_library: None,
            env: Vec::new(),
            timeout: Duration::from_secs(1),
            confinement: Confinement::Unconfined,
        };
        assert!(matches!(Helper::spawn(&cmd), Err(HelperError::Spawn { .. })));
    }

    #[test]
    fn environment_is_clean_and_requests_are_versioned_lines() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("seen");
        let body = format!(
            r#"read line; echo "$line" > {0}; env | grep -v '^PWD=\|^SHLVL=\|^_=' >> {0}; echo '{{"v":1,"ok":{{"ready":true}}}}'"#,
            out.display()
        );
        let mut h = Helper::spawn(&script(t.path(), &body)).unwrap();
        assert!(h.get_ready().unwrap());
        let seen = std::fs::read_to_string(&out).unwrap();
        assert_eq!(seen, "{\"v\":1,\"op\":\"get-ready\"}\n");
    }
}
