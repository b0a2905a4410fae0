//! PID 1's main loop once the workload runs: one thread, one `poll` over a
//! signalfd and the workload's output pipes.
//!
//! - every child is reaped (`waitpid(-1, WNOHANG | __WALL)`); orphans of the
//!   workload are re-parented to us and reaped the same way;
//! - SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 are forwarded to the
//!   workload's process group;
//! - the workload's stdout/stderr are copied to the console line by line with
//!   a prefix, through a non-blocking console descriptor so a slow console or
//!   a chatty workload can never block PID 1;
//! - helper daemons registered with [`Supervisor::watch`] must outlive the
//!   workload: if one dies, the workload is stopped and the boot ends FATAL;
//! - when the workload ends: its status is logged, the remaining processes
//!   get SIGTERM, then SIGKILL after the deadline, and the loop returns the
//!   outcome for [`crate::power::end`].

pub mod output;

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::kmsg;
use crate::names::signal_name;
use crate::power::Outcome;
use output::{LineForwarder, Pumped};

/// Signals forwarded to the workload's process group.
pub const FORWARDED: &[i32] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// Synchronous fault signals: never blocked, so a bug in PID 1 surfaces
/// instead of spinning.
const FAULTS: &[i32] =
    &[libc::SIGFPE, libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT, libc::SIGTRAP, libc::SIGSYS];

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("block signals: {0}")]
    Mask(#[source] std::io::Error),
    #[error("signalfd: {0}")]
    SignalFd(#[source] std::io::Error),
}

/// The set of signals PID 1 handles through its signalfd: everything but
/// the fault signals (and SIGKILL/SIGSTOP, which cannot be blocked).
pub fn handled_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigfillset/sigdelset initialise and
    // modify it in place with valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for &s in FAULTS {
            libc::sigdelset(&mut set, s);
        }
        set
    }
}

/// True while our child `pid` has not exited. WNOWAIT leaves the zombie for
/// the supervisor to reap and report.
pub fn still_running(pid: libc::pid_t) -> bool {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let Some(pid) = Pid::from_raw(pid) else { return false };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    matches!(waitid(WaitId::Pid(pid), options), Ok(None))
}

/// Blocks the handled signals in the calling thread. Call this first, before
/// any thread or child starts: both inherit the mask, so no signal is
/// delivered the classic way and lost to a default disposition (ztinit's
/// helper threads, which verify volumes, compile seccomp and make the KBS
/// key, start later and never take signals).
pub fn block_signals() -> Result<(), SuperviseError> {
    let set = handled_set();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(SuperviseError::Mask(std::io::Error::from_raw_os_error(rc)));
    }
    Ok(())
}

/// Which processes the shutdown sweep signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every process but PID 1 (`kill(-1, sig)`): the real guest.
    System,
    /// The workload's process group only: tests running as a subreaper.
    WorkloadGroup,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Status(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_wait_status(status: i32) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Status(libc::WEXITSTATUS(status))
        }
    }

    /// `status=N` / `signal=NAME`.
    pub fn describe(self) -> String {
        match self {
            Exit::Status(n) => format!("status={n}"),
            Exit::Signal(s) => format!("signal={}", signal_name(s)),
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Exit::Status(n) => Outcome::Exited(n),
            Exit::Signal(s) => Outcome::Signaled(s),
        }
    }
}

struct OutputPipe {
    fd: OwnedFd,
    lines: LineForwarder,
}

/// The supervisor of one workload.
pub struct Supervisor {
    signals: OwnedFd,
    workload: libc::pid_t,
    workload_exit: Option<Exit>,
    outputs: Vec<OutputPipe>,
    console: Box<dyn Write>,
    watched: HashMap<libc::pid_t, String>,
    failed_helper: Option<(String, Exit)>,
    scope: Scope,
    shutdown_timeout: Duration,
    reaped_others: usize,
}

impl Supervisor {
    /// `workload` must be a session leader (its pgid is its pid). Signals
    /// must already be blocked ([`block_signals`]).
    pub fn new(
        workload: libc::pid_t,
        scope: Scope,
        shutdown_timeout: Duration,
        console: Box<dyn Write>,
    ) -> Result<Self, SuperviseError> {
        let set = handled_set();
        // SAFETY: `set` is initialised; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(SuperviseError::SignalFd(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a new descriptor owned by nothing else.
        let signals = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            signals,
            workload,
            workload_exit: None,
            outputs: Vec::new(),
            console,
            watched: HashMap::new(),
            failed_helper: None,
            scope,
            shutdown_timeout,
            reaped_others: 0,
        })
    }

    /// Copies `fd` (a pipe's read end) to the console with `prefix`.
    pub fn add_output(&mut self, fd: OwnedFd, prefix: &str) {
        set_nonblocking(&fd);
        self.outputs.push(OutputPipe { fd, lines: LineForwarder::for_workload(prefix) });
    }

    /// A helper daemon that must stay alive while the workload runs.
    pub fn watch(&mut self, pid: libc::pid_t, name: &str) {
        self.watched.insert(pid, name.to_string());
    }

    /// Processes other than the workload reaped so far (orphans, helpers).
    pub fn reaped_others(&self) -> usize {
        self.reaped_others
    }

    /// Runs until the workload has ended and the rest has been stopped.
    pub fn run(&mut self) -> Outcome {
        while self.workload_exit.is_none() && self.failed_helper.is_none() {
            self.wait_and_dispatch(None);
        }
        self.drain_outputs();
        let outcome = match (self.workload_exit, &self.failed_helper) {
            (Some(exit), _) => {
                let rss = crate::timeline::peak_rss_kib().map(|k| format!(" (ztinit VmHWM {k} KiB)"));
                kmsg::notice(&format!("workload exited {}{}", exit.describe(), rss.unwrap_or_default()));
                exit.outcome()
            }
            (None, Some((name, exit))) => {
                kmsg::always(
                    2,
                    &format!(
                        "ztinit: FATAL: supervise: helper {name} exited {} while the workload was running",
                        exit.describe()
                    ),
                );
                Outcome::Fatal
            }
            (None, None) => Outcome::Fatal,
        };
        self.stop_everything();
        outcome
    }

    fn wait_and_dispatch(&mut self, timeout: Option<Duration>) {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = Vec::with_capacity(1 + self.outputs.len());
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        fds.extend(self.outputs.iter().map(|o| PollFd::new(&o.fd, PollFlags::IN)));
        // A timeout too large for a timespec waits without one.
        let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) | Err(_) => return, // timeout or EINTR: the caller re-checks its state
            Ok(_) => {}
        }
        let signals = fds[0].revents().contains(PollFlags::IN);
        let ready: Vec<usize> =
            fds[1..].iter().enumerate().filter(|(_, p)| !p.revents().is_empty()).map(|(i, _)| i).collect();
        drop(fds);
        if signals {
            self.read_signals();
        }
        let mut closed = Vec::new();
        for i in ready {
            if !self.copy_output(i) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            self.outputs.remove(i);
        }
    }

    fn read_signals(&mut self) {
        loop {
            // One struct signalfd_siginfo; its first field is ssi_signo (u32).
            let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
            match rustix::io::read(&self.signals, &mut info) {
                Ok(n) if n == info.len() => {}
                _ => return, // EAGAIN: nothing pending
            }
            let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
            // Signal numbers are 1..=64; anything else matches nothing below.
            let sig = i32::try_from(signo).unwrap_or(0);
            if sig == libc::SIGCHLD {
                self.reap();
            } else if FORWARDED.contains(&sig) {
                self.forward(sig);
            } else {
                log::debug!("ignoring {}", signal_name(sig));
            }
        }
    }

    fn forward(&mut self, sig: i32) {
        if self.workload_exit.is_some() {
            return;
        }
        log::info!("forwarding {} to the workload", signal_name(sig));
        if let Err(e) = kill_group(self.workload, sig) {
            log::warn!("forward {}: {e}", signal_name(sig));
        }
    }

    /// Reaps every child that has exited. Returns false once none is left.
    fn reap(&mut self) -> bool {
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
            if pid == 0 {
                return true;
            }
            if pid < 0 {
                return false; // ECHILD: nothing left
            }
            let exit = Exit::from_wait_status(status);
            if pid == self.workload {
                self.workload_exit = Some(exit);
            } else {
                self.reaped_others += 1;
                if let Some(name) = self.watched.remove(&pid)
                    && self.workload_exit.is_none()
                    && self.failed_helper.is_none()
                {
                    self.failed_helper = Some((name, exit));
                }
            }
        }
    }

    /// Copies what is available (bounded per call); false at EOF or error.
    fn copy_output(&mut self, i: usize) -> bool {
        let out = &mut self.outputs[i];
        // A full console drops lines rather than blocking PID 1: the console
        // descriptor is non-blocking and write errors are ignored.
        let mut console = IgnoreErrors(&mut *self.console);
        matches!(out.lines.pump(out.fd.as_fd(), &mut console, Instant::now()), Ok(Pumped::Drained))
    }

    fn drain_outputs(&mut self) {
        for i in 0..self.outputs.len() {
            self.copy_output(i);
        }
    }

    fn signal_rest(&self, sig: i32) {
        let target = match self.scope {
            Scope::System => -1,
            Scope::WorkloadGroup => -self.workload,
        };
        // SAFETY: kill(2); -1 means every process but PID 1 itself.
        unsafe { libc::kill(target, sig) };
    }

    /// SIGTERM what is left, wait up to the deadline, SIGKILL, reap all.
    fn stop_everything(&mut self) {
        if self.workload_exit.is_none() {
            // A helper failed: the workload must not keep running.
            let _ = kill_group(self.workload, libc::SIGKILL);
        }
        if !self.reap() {
            return;
        }
        self.signal_rest(libc::SIGTERM);
        if self.wait_for_children(self.shutdown_timeout) {
            return;
        }
        log::warn!("processes left after {} ms: sending SIGKILL", self.shutdown_timeout.as_millis());
        self.signal_rest(libc::SIGKILL);
        self.wait_for_children(Duration::from_secs(2));
    }

    /// True once no child is left.
    fn wait_for_children(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.reap() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.wait_and_dispatch(Some((deadline - now).min(Duration::from_millis(100))));
        }
    }
}

/// A writer that reports success whatever happens underneath, so one
/// congested console write does not end the copy of a stream.
struct IgnoreErrors<'a>(&'a mut dyn Write);

impl Write for IgnoreErrors<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `sig` to the process group led by `leader` (the workload, which
/// started its own session).
fn kill_group(leader: libc::pid_t, sig: i32) -> std::io::Result<()> {
    use rustix::process::{Pid, Signal, kill_process_group};
    let pid = Pid::from_raw(leader).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let sig = Signal::from_named_raw(sig).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    Ok(kill_process_group(pid, sig)?)
}

fn set_nonblocking(fd: impl AsFd) {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    if let Ok(flags) = fcntl_getfl(&fd) {
        let _ = fcntl_setfl(&fd, flags | OFlags::NONBLOCK);
    }
}

/// A console writer for workload output: its own open file description of
/// /dev/console in non-blocking mode, so PID 1's own log lines keep
/// blocking semantics while workload lines are dropped when the console is
/// congested.
pub fn nonblocking_console(dev_root: &std::path::Path) -> Box<dyn Write> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(dev_root.join("console"))
    {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stderr()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn still_running_leaves_the_zombie_for_the_reaper() {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        assert!(still_running(pid));
        let deadline = Instant::now() + Duration::from_secs(10);
        while still_running(pid) {
            assert!(Instant::now() < deadline, "sleep 0.2 still running after 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // WNOWAIT: the exit status is still there for the supervisor.
        assert!(child.wait().unwrap().success());
        assert!(!still_running(pid), "no such child any more");
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(Exit::Status(3).describe(), "status=3");
        assert_eq!(Exit::Signal(libc::SIGKILL).describe(), "signal=SIGKILL");
        assert_eq!(Exit::Signal(42).describe(), "signal=42");
        assert_eq!(Exit::Status(3).outcome(), Outcome::Exited(3));
        assert_eq!(Exit::Signal(9).outcome(), Outcome::Signaled(9));
    }

    #[test]
    fn wait_statuses_decode() {
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Status(3));
        assert_eq!(Exit::from_wait_status(libc::SIGTERM), Exit::Signal(libc::SIGTERM));
    }

    #[test]
    fn fault_signals_are_never_blocked() {
        let set = handled_set();
        for &s in FAULTS {
            // SAFETY: querying an initialised set.
            assert_eq!(unsafe { libc::sigismember(&set, s) }, 0);
        }
        for &s in FORWARDED.iter().chain([libc::SIGCHLD].iter()) {
            // SAFETY: querying an initialised set.
            assert_eq!(unsafe { libc::sigismember(&set, s) }, 1);
        }
    }
}
