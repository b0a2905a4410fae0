//! ztinit's side of the `ztinit-gpu` helper: spawn it with a clean
//! environment, send one request line at a time, and wait for one response
//! line within a deadline. A crash, a timeout, an oversized or malformed
//! line, or a version mismatch is an error; the caller treats every error as
//! fatal for the boot.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;

use super::protocol::{self, CcSettings, EvidenceReply, Inventory, Op, ReadyReply, Request, Response, TuneReply};

/// Bytes of the helper's stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start GPU helper {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
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
}

pub struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buf: Vec<u8>,
    timeout: Duration,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
}

impl Helper {
    pub fn spawn(cmd: &HelperCommand) -> Result<Helper, HelperError> {
        let mut c = Command::new(&cmd.program);
        if let Some(lib) = &cmd.nvml_library {
            c.arg("--nvml").arg(lib);
        }
        c.env_clear().envs(cmd.env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            c.spawn().map_err(|source| HelperError::Spawn { path: cmd.program.display().to_string(), source })?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperError::Io(std::io::Error::other("helper pipes missing")));
        };
        // Drain stderr so the helper cannot block on it; keep only a tail.
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
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
        });
        Ok(Helper { child, stdin: Some(stdin), stdout, buf: Vec::new(), timeout: cmd.timeout, stderr_tail })
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
        let mut status = "status unknown".to_string();
        let until = Instant::now() + Duration::from_millis(500);
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    status = s.to_string();
                    break;
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    self.kill();
                    break;
                }
                // Reaped by PID 1's reaper already: the status is gone.
                Err(_) => break,
            }
        }
        let tail = self.stderr_tail.lock().map(|t| printable(&String::from_utf8_lossy(&t))).unwrap_or_default();
        let stderr = if tail.trim().is_empty() { String::new() } else { format!(": {}", tail.trim()) };
        HelperError::Crashed { op, status, stderr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin (the helper exits at EOF) and waits briefly for it.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stdin.take().is_none() {
            return;
        }
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => return self.kill(),
            }
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

fn wait_readable(fd: &ChildStdout, timeout: Duration) -> Result<bool, HelperError> {
    use rustix::event::{PollFd, PollFlags, poll};
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
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
        HelperCommand { program: p, nvml_library: None, env: Vec::new(), timeout: Duration::from_secs(10) }
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
