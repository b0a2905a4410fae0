//! The end of every boot: sync, then power off (or reboot, or, in test
//! images, report the outcome through QEMU's isa-debug-exit device).
//!
//! PID 1 must never exit (the kernel panics), so everything here ends in
//! `reboot(2)` and, should that return, an endless pause.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::config::OnExit;
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
            Outcome::Exited(code) => code.clamp(0, i32::from(EXIT_VALUE_STATUS_MAX)) as u8,
            Outcome::Signaled(sig) => EXIT_VALUE_SIGNAL_BASE + sig.clamp(0, 61) as u8,
            Outcome::Fatal => EXIT_VALUE_FATAL,
            Outcome::Panic => EXIT_VALUE_PANIC,
        }
    }
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
pub fn fatal(stage: &str, reason: &dyn std::fmt::Display) -> ! {
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
        debug_exit(outcome.debug_exit_value());
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

/// Writes `value` to isa-debug-exit. Only test images enable this; it needs
/// CAP_SYS_RAWIO and a kernel without lockdown, and fails harmlessly otherwise.
#[cfg(target_arch = "x86_64")]
fn debug_exit(value: u8) {
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    let rc = unsafe { libc::ioperm(libc::c_ulong::from(DEBUG_EXIT_PORT), 4, 1) };
    if rc != 0 {
        kmsg::always(3, &format!("ztinit: error: ioperm(isa-debug-exit): {}", std::io::Error::last_os_error()));
        return;
    }
    // SAFETY: the port was granted above; QEMU's isa-debug-exit device at
    // this port terminates the VM; on real hardware test images are not used.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") DEBUG_EXIT_PORT, in("al") value, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn debug_exit(_value: u8) {}

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
