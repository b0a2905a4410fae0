//! The end of every boot: sync, then power off (or reboot, or, in test
//! images, report the outcome through QEMU's isa-debug-exit device).
//!
//! PID 1 must never exit (the kernel panics), so everything here ends in
//! `reboot(2)` and, should that return, an endless pause.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU16, Ordering};
use std::time::Duration;

use crate::kmsg;

/// isa-debug-exit I/O port used by our test images (`iobase=0xf4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Debug-exit values (QEMU exits with `(value << 1) | 1`).
pub const EXIT_VALUE_FATAL: u8 = 126;
pub const EXIT_VALUE_PANIC: u8 = 127;
const EXIT_VALUE_SIGNAL_BASE: u8 = 64;
const EXIT_VALUE_STATUS_MAX: u8 = 63;

static DEBUG_EXIT: AtomicBool = AtomicBool::new(false);
static ON_EXIT_REBOOT: AtomicBool = AtomicBool::new(false);
static IS_PID1: AtomicBool = AtomicBool::new(false);
static ENDING: AtomicU8 = AtomicU8::new(0);
/// The thread that holds the isa-debug-exit port once lockdown is raised.
static PORT_THREAD: OnceLock<std::thread::Thread> = OnceLock::new();
/// The value for that thread to write, plus one (0: nothing yet).
static PORT_VALUE: AtomicU16 = AtomicU16::new(0);
/// Its ioperm result: `PORT_PENDING` until known, then 0 or an errno.
static PORT_RESULT: AtomicI32 = AtomicI32::new(PORT_PENDING);
const PORT_PENDING: i32 = i32::MIN;

/// How the workload (or the boot) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    Fatal,
    Panic,
}

impl Outcome {
    /// The value written to isa-debug-exit.
    pub fn debug_exit_value(self) -> u8 {
        match self {
            Outcome::Exited(code) => {
                u8::try_from(code.clamp(0, i32::from(EXIT_VALUE_STATUS_MAX))).unwrap_or(EXIT_VALUE_STATUS_MAX)
            }
            Outcome::Signaled(sig) => EXIT_VALUE_SIGNAL_BASE + u8::try_from(sig.clamp(0, 61)).unwrap_or(61),
            Outcome::Fatal => EXIT_VALUE_FATAL,
            Outcome::Panic => EXIT_VALUE_PANIC,
        }
    }
}

/// What ends the VM when the workload exits (`[boot] on_exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    #[default]
    Poweroff,
    Reboot,
}

/// Records how the boot must end, once the configuration is known.
pub fn configure(on_exit: OnExit, debug_exit: bool) {
    ON_EXIT_REBOOT.store(on_exit == OnExit::Reboot, Ordering::SeqCst);
    DEBUG_EXIT.store(debug_exit, Ordering::SeqCst);
}

/// Marks this process as PID 1 before the configuration is read, so an early
/// failure still powers off.
pub fn set_pid1(is_pid1: bool) {
    IS_PID1.store(is_pid1, Ordering::SeqCst);
}

/// Logs the FATAL line and ends the boot. Never returns.
pub fn fatal(stage: crate::timeline::Stage, reason: &dyn std::fmt::Display) -> ! {
    kmsg::always(2, &format!("ztinit: FATAL: {stage}: {reason}"));
    end(Outcome::Fatal)
}

/// Syncs and ends the boot with `outcome`. Never returns.
pub fn end(outcome: Outcome) -> ! {
    // A second failure while ending (e.g. a panic inside end) must not loop.
    if ENDING.fetch_add(1, Ordering::SeqCst) > 0 {
        halt_forever();
    }
    if !IS_PID1.load(Ordering::SeqCst) {
        // Not PID 1 (tests, a mistaken manual run): nothing to power off.
        std::process::exit(match outcome {
            Outcome::Exited(c) => c,
            _ => 1,
        });
    }
    // Console writes only queue bytes in the tty; wait until the UART has
    // sent them, or the last lines (the workload's exit) die with the VM.
    let _ = rustix::termios::tcdrain(std::io::stderr());
    rustix::fs::sync();
    if DEBUG_EXIT.load(Ordering::SeqCst) {
        match PORT_THREAD.get() {
            Some(t) => {
                PORT_VALUE.store(u16::from(outcome.debug_exit_value()) + 1, Ordering::SeqCst);
                t.unpark();
            }
            None => debug_exit(outcome.debug_exit_value()),
        }
        // QEMU exits while this thread sleeps: the port thread may not have
        // run yet, and QEMU 10 ends the VM from its main loop after the
        // write, not in it, so the guest runs on meanwhile.
        std::thread::sleep(Duration::from_secs(2));
        kmsg::always(3, "ztinit: error: isa-debug-exit did not end the VM; powering off");
    }
    let cmd = if ON_EXIT_REBOOT.load(Ordering::SeqCst) && outcome != Outcome::Panic {
        rustix::system::RebootCommand::Restart
    } else {
        rustix::system::RebootCommand::PowerOff
    };
    if let Err(e) = rustix::system::reboot(cmd) {
        kmsg::always(2, &format!("ztinit: FATAL: power: reboot({cmd:?}) failed: {e}"));
    }
    halt_forever()
}

fn halt_forever() -> ! {
    loop {
        // SAFETY: pause(2) has no preconditions; it only sleeps until a signal.
        unsafe { libc::pause() };
    }
}

/// Test images (`boot.isa_debug_exit`): keeps access to the isa-debug-exit
/// port past the kernel lockdown, which refuses `ioperm(2)`. Called just
/// before lockdown is raised.
///
/// The permission is per thread and every thread or process the holder
/// creates inherits it, so PID 1's main thread, which forks the workload,
/// must not hold it: a dedicated thread takes it and waits for `end` to
/// hand it the value. With `for_exec` (handoff mode) the main thread takes
/// it as well, because its successor keeps it across `execve` and ends the
/// VM itself (the `handoff` scenario's workload); no workload is forked then.
pub fn keep_debug_exit_port(for_exec: bool) -> std::io::Result<()> {
    if !DEBUG_EXIT.load(Ordering::SeqCst) || PORT_THREAD.get().is_some() {
        return Ok(());
    }
    if for_exec {
        ioperm()?;
    }
    let main = std::thread::current();
    let holder = std::thread::spawn(move || {
        let r = ioperm();
        PORT_RESULT.store(r.as_ref().map_or_else(|e| e.raw_os_error().unwrap_or(libc::EIO), |_| 0), Ordering::SeqCst);
        main.unpark();
        if r.is_err() {
            return;
        }
        loop {
            std::thread::park();
            if let Some(v) = PORT_VALUE.load(Ordering::SeqCst).checked_sub(1).and_then(|v| u8::try_from(v).ok()) {
                write_port(v);
            }
        }
    });
    // park() may return spuriously: wait for the result itself.
    let rc = loop {
        match PORT_RESULT.load(Ordering::SeqCst) {
            PORT_PENDING => std::thread::park(),
            rc => break rc,
        }
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    let _ = PORT_THREAD.set(holder.thread().clone());
    Ok(())
}

/// Grants the calling thread the isa-debug-exit port.
#[cfg(target_arch = "x86_64")]
fn ioperm() -> std::io::Result<()> {
    // SAFETY: ioperm only changes the calling thread's I/O permission bitmap.
    if unsafe { libc::ioperm(libc::c_ulong::from(DEBUG_EXIT_PORT), 4, 1) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
fn ioperm() -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Writes `value` to isa-debug-exit. Only test images enable this; it needs
/// CAP_SYS_RAWIO and a kernel without lockdown (or the port kept by
/// `keep_debug_exit_port`), and fails harmlessly otherwise.
fn debug_exit(value: u8) {
    if let Err(e) = ioperm() {
        kmsg::always(3, &format!("ztinit: error: ioperm(isa-debug-exit): {e}"));
        return;
    }
    write_port(value);
}

#[cfg(target_arch = "x86_64")]
fn write_port(value: u8) {
    // SAFETY: only called by a thread granted the port (ioperm); QEMU's
    // isa-debug-exit device at this port terminates the VM; on real
    // hardware test images are not used.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") DEBUG_EXIT_PORT, in("al") value, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn write_port(_value: u8) {}

/// Panics must never reach the user as a backtrace, and PID 1 must not die:
/// log one FATAL line to kmsg and the console, sync, power off.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        kmsg::always(2, &format!("ztinit: FATAL: panic: {msg}{location}"));
        end(Outcome::Panic);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_values_are_distinct_and_bounded() {
        assert_eq!(Outcome::Exited(0).debug_exit_value(), 0);
        assert_eq!(Outcome::Exited(3).debug_exit_value(), 3);
        assert_eq!(Outcome::Exited(200).debug_exit_value(), 63);
        assert_eq!(Outcome::Exited(-1).debug_exit_value(), 0);
        assert_eq!(Outcome::Signaled(9).debug_exit_value(), 73);
        assert_eq!(Outcome::Fatal.debug_exit_value(), 126);
        assert_eq!(Outcome::Panic.debug_exit_value(), 127);
        // All fit in 7 bits so QEMU's (v << 1) | 1 stays within an exit code.
        for o in [Outcome::Exited(63), Outcome::Signaled(61), Outcome::Fatal, Outcome::Panic] {
            assert!(o.debug_exit_value() < 128);
        }
    }
}
