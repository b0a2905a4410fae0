//! Starting the `ztinit-image` helper confined and taking its answer.
//!
//! Registry answers, layer tarballs, gzip and zstd streams and the JWE
//! layer keys are parsed there, not in PID 1: the helper runs with the
//! `strict` seccomp profile plus the network and file calls unpacking
//! needs, Landlock (read everywhere, write only the image tmpfs), every
//! capability dropped but those that keep the image's ownership and modes,
//! and no_new_privs (docs/image.md). It gets one JSON request on stdin and
//! writes one JSON answer on stdout; its log lines (stderr) are relayed.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::protocol::{self, Answer, Request};
use crate::sandbox::{LandlockMode, LaunchMode, LaunchOptions, LaunchPlan, Limit, Process, RlimitConfig};
use crate::sandbox::{SandboxConfig, SandboxError, SeccompChoice};

/// What unpacking needs beyond `strict`: sockets for the registry, and the
/// calls that create a tree with its owners, modes and links.
pub const HELPER_SYSCALLS: &[&str] = &[
    "socket",
    "connect",
    "setsockopt",
    "getsockopt",
    "getpeername",
    "getsockname",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "openat2",
    "mkdirat",
    "unlinkat",
    "symlinkat",
    "linkat",
    "fchownat",
    "fchown",
    "fchmodat",
    "fchmod",
    "utimensat",
    "renameat",
    "renameat2",
    "ftruncate",
    "fsync",
    "fstatfs",
    "statfs",
    "umask",
    "fchdir",
    "chdir",
    "mknodat",
    // musl's std::fs still calls the legacy forms for File::create and
    // remove_file (the work directory's blobs).
    "open",
    "unlink",
    "mkdir",
    "rmdir",
    "rename",
    "stat",
    "lstat",
];
/// Ownership and modes of the image's files: chown to the image's owners,
/// write into directories whatever their mode, keep set-id bits.
pub const HELPER_CAPABILITIES: &[&str] = &["CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE", "CAP_FSETID"];
/// PID 1 waits this much past the request's own deadline before it kills
/// the helper.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start {path} in its sandbox: {source}")]
    Sandbox {
        path: String,
        #[source]
        source: SandboxError,
    },
    #[error("cannot start {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the image helper: {0}")]
    Io(#[source] std::io::Error),
    #[error("the image helper failed ({status}): {last}")]
    Failed { status: String, last: String },
    #[error("the image helper did not finish within {0} s")]
    Timeout(u64),
    #[error("the image helper's answer is larger than {} bytes", protocol::MAX_ANSWER_BYTES)]
    AnswerTooLarge,
    #[error("the image helper's answer is not valid: {0}")]
    Answer(#[source] serde_json::Error),
    #[error("the image helper speaks protocol version {0}, ztinit {v}", v = protocol::VERSION)]
    Version(u32),
}

/// How the helper is started.
#[derive(Debug, Clone)]
pub enum Confinement {
    /// The boot's: see the module documentation. `write` are the only
    /// trees it may write (the image tmpfs).
    Sandboxed { write: Vec<String> },
    /// A plain child (unit tests run as an ordinary user).
    Unconfined,
}

/// The helper's sandbox.
pub fn sandbox(write: &[String]) -> SandboxConfig {
    SandboxConfig {
        seccomp: SeccompChoice::Strict,
        seccomp_allow: HELPER_SYSCALLS.iter().map(|s| s.to_string()).collect(),
        seccomp_log: true,
        landlock: LandlockMode::Required,
        read_only: vec!["/".into()],
        read_write: write.to_vec(),
        executable: Vec::new(),
        devices: Vec::new(),
        capabilities: HELPER_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
        rlimits: RlimitConfig { nofile: Limit(1024), memlock: Limit(8 << 20), nproc: None },
        ..SandboxConfig::default()
    }
}

struct Started {
    pid: libc::pid_t,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn spawn(program: &str, confinement: &Confinement) -> Result<Started, HelperError> {
    match confinement {
        Confinement::Sandboxed { write } => {
            let env = BTreeMap::new();
            let process = Process {
                path: program,
                args: &[],
                env: &env,
                user: 0,
                group: 0,
                supplementary_groups: &[],
                workdir: "/",
                mode: LaunchMode::Supervise,
            };
            let opts = LaunchOptions { stdin_pipe: true, ..LaunchOptions::default() };
            let plan = LaunchPlan::for_process(&process, &sandbox(write), &[], &opts)
                .map_err(|source| HelperError::Sandbox { path: program.into(), source })?;
            let launched = plan.spawn().map_err(|source| HelperError::Sandbox { path: program.into(), source })?;
            let stdin = launched.stdin.ok_or_else(|| HelperError::Io(std::io::Error::other("no stdin pipe")))?;
            Ok(Started { pid: launched.pid, stdin, stdout: launched.stdout, stderr: launched.stderr })
        }
        Confinement::Unconfined => {
            use std::process::{Command, Stdio};
            let mut child = Command::new(program)
                .env_clear()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| HelperError::Spawn { path: program.into(), source })?;
            let pid = child.id().cast_signed();
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => Ok(Started { pid, stdin: i.into(), stdout: o.into(), stderr: e.into() }),
                _ => {
                    kill_and_reap(pid);
                    Err(HelperError::Io(std::io::Error::other("helper pipes missing")))
                }
            }
        }
    }
}

/// Runs the helper on `request` and returns its answer. Every line it logs
/// is passed to `log_line` (the boot logs them as `image: ...`).
pub fn run(
    program: &str,
    confinement: &Confinement,
    request: &Request,
    log_line: &(dyn Fn(&str) + Sync),
) -> Result<Answer, HelperError> {
    let started = spawn(program, confinement)?;
    let pid = started.pid;
    let result = talk(started, request, log_line);
    // Both pipes are closed: the helper has ended or is about to.
    let status = reap(pid, Duration::from_secs(5));
    match (result, status) {
        (Ok(answer), Some(0)) => Ok(answer),
        (Ok(_), status) => Err(HelperError::Failed { status: describe(status), last: "no answer".into() }),
        (Err(Talk::Failed(last)), status) => Err(HelperError::Failed { status: describe(status), last }),
        (Err(Talk::Error(e)), _) => Err(e),
    }
}

enum Talk {
    /// The helper ended without an answer; its last log line says why.
    Failed(String),
    Error(HelperError),
}

fn talk(started: Started, request: &Request, log_line: &(dyn Fn(&str) + Sync)) -> Result<Answer, Talk> {
    let limit = Duration::from_millis(request.deadline_ms) + GRACE;
    let deadline = Instant::now() + limit;
    let body = Zeroizing::new(serde_json::to_vec(request).map_err(|e| Talk::Error(HelperError::Io(e.into())))?);
    let mut stdin = std::fs::File::from(started.stdin);
    // The request is far below the pipe buffer; a helper that does not read
    // it fails with EPIPE here.
    let written = stdin.write_all(&body).and_then(|()| stdin.write_all(b"\n"));
    drop(stdin);
    let mut last = String::new();
    let mut out = Vec::new();
    let mut err_buf = Vec::new();
    let mut stdout = Some(started.stdout);
    let mut stderr = Some(started.stderr);
    while stdout.is_some() || stderr.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            kill_and_reap(started.pid);
            return Err(Talk::Error(HelperError::Timeout(limit.as_secs())));
        }
        // Only a pipe poll calls ready is read: the reads block.
        let (out_ready, err_ready) = {
            let mut fds: Vec<rustix::event::PollFd<'_>> = Vec::new();
            for fd in [&stdout, &stderr].into_iter().flatten() {
                fds.push(rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN));
            }
            let timeout = rustix::event::Timespec::try_from(left.min(Duration::from_secs(1))).unwrap_or_default();
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Talk::Error(HelperError::Io(e.into()))),
            }
            let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
            match (stdout.is_some(), stderr.is_some()) {
                (true, true) => (ready[0], ready[1]),
                (true, false) => (ready[0], false),
                (false, true) => (false, ready[0]),
                (false, false) => (false, false),
            }
        };
        let mut chunk = [0u8; 8192];
        if let Some(fd) = stdout.as_ref().filter(|_| out_ready) {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => stdout = None,
                Ok(n) => {
                    out.extend_from_slice(&chunk[..n]);
                    if out.len() > protocol::MAX_ANSWER_BYTES {
                        kill_and_reap(started.pid);
                        return Err(Talk::Error(HelperError::AnswerTooLarge));
                    }
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Talk::Error(HelperError::Io(e.into()))),
            }
        }
        if let Some(fd) = stderr.as_ref().filter(|_| err_ready) {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => {
                    flush_lines(&mut err_buf, true, &mut last, log_line);
                    stderr = None;
                }
                Ok(n) => {
                    err_buf.extend_from_slice(&chunk[..n]);
                    flush_lines(&mut err_buf, false, &mut last, log_line);
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Talk::Error(HelperError::Io(e.into()))),
            }
        }
    }
    if let Err(e) = written
        && out.is_empty()
    {
        return Err(Talk::Failed(if last.is_empty() { format!("it did not read its request: {e}") } else { last }));
    }
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(Talk::Failed(if last.is_empty() { "no answer and no message".into() } else { last }));
    }
    let answer: Answer = serde_json::from_slice(&out).map_err(|e| Talk::Error(HelperError::Answer(e)))?;
    if answer.version != protocol::VERSION {
        return Err(Talk::Error(HelperError::Version(answer.version)));
    }
    Ok(answer)
}

/// Complete lines out of `buf` to `log_line`; a line over 4 KiB is cut.
fn flush_lines(buf: &mut Vec<u8>, eof: bool, last: &mut String, log_line: &(dyn Fn(&str) + Sync)) {
    const MAX_LINE: usize = 4096;
    loop {
        let end = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => i,
            None if eof && !buf.is_empty() => buf.len(),
            None if buf.len() > MAX_LINE => MAX_LINE,
            None => return,
        };
        let line: Vec<u8> = buf.drain(..end.min(buf.len())).collect();
        if buf.first() == Some(&b'\n') {
            buf.remove(0);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            log_line(text);
            *last = text.to_string();
        }
        if buf.is_empty() {
            return;
        }
    }
}

/// The exit status, waiting at most `wait` (then SIGKILL).
fn reap(pid: libc::pid_t, wait: Duration) -> Option<i32> {
    let until = Instant::now() + wait;
    loop {
        let mut raw = 0;
        // SAFETY: waitpid on our own child's pid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) };
        if r == pid {
            return Some(raw);
        }
        if r < 0 {
            return None;
        }
        if Instant::now() >= until {
            kill_and_reap(pid);
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill_and_reap(pid: libc::pid_t) {
    // SAFETY: signals our own, not yet reaped, child by pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut raw = 0;
    // SAFETY: reaps that child.
    unsafe { libc::waitpid(pid, &mut raw, 0) };
}

fn describe(status: Option<i32>) -> String {
    match status.map(crate::supervise::Exit::from_wait_status) {
        None => "killed".into(),
        Some(crate::supervise::Exit::Status(n)) => format!("exit status {n}"),
        Some(crate::supervise::Exit::Signal(libc::SIGSYS)) => {
            format!("killed by signal {} (SIGSYS: a system call outside its seccomp profile)", libc::SIGSYS)
        }
        Some(crate::supervise::Exit::Signal(sig)) => {
            format!("killed by signal {sig} ({})", crate::names::signal_name(sig))
        }
    }
}
