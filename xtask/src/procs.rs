//! Nothing left behind: every long-lived process xtask starts (QEMU, the
//! dev KBS and other scenario services) dies with it.
//!
//! - [`own`] puts the child in a process group of its own (so the group,
//!   with whatever the child started in it, can be killed at once) and asks
//!   the kernel for SIGKILL when xtask dies (`PR_SET_PDEATHSIG`), which also
//!   covers `kill -9` of xtask.
//! - [`install_signal_handlers`]: SIGINT, SIGTERM and SIGHUP kill every
//!   registered group and exit 128+signal. Ctrl-C only reaches the
//!   terminal's foreground group, which QEMU and the services are not in.
//! - [`tie`] gives short-lived helpers (cargo, make, mkfs...) only
//!   `PR_SET_PDEATHSIG` (SIGTERM): they stay in xtask's group so Ctrl-C
//!   reaches them directly.
//!
//! Every child is spawned from the main thread: PDEATHSIG fires when the
//! *thread* that forked exits.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// Process groups to kill on a signal (0: free slot). A fixed array of
/// atomics, because the signal handler may only do async-signal-safe work.
static GROUPS: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];

/// A new process group and SIGKILL when xtask dies; register the child
/// with [`register`] once spawned.
pub fn own(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    death_signal(cmd, libc::SIGKILL)
}

/// SIGKILL when xtask dies, in xtask's own process group (an interactive
/// child that needs the terminal).
pub fn tie_hard(cmd: &mut Command) -> &mut Command {
    death_signal(cmd, libc::SIGKILL)
}

/// SIGTERM when xtask dies (short-lived build and tool commands).
pub fn tie(cmd: &mut Command) -> &mut Command {
    death_signal(cmd, libc::SIGTERM)
}

fn death_signal(cmd: &mut Command, sig: libc::c_int) -> &mut Command {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, kill).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::c_ulong::from(sig.unsigned_abs()), 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // xtask died before the prctl: the signal would never come.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), sig);
            }
            Ok(())
        })
    };
    cmd
}

/// Kills `pgid`'s group if xtask is interrupted, until [`release`].
pub fn register(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else { return };
    for slot in &GROUPS {
        if slot.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
    // All slots taken: PDEATHSIG still ends the child itself.
}

/// The group was reaped: forget it (its id may be reused).
pub fn release(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else { return };
    for slot in &GROUPS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Kills every registered group now.
pub fn kill_all() {
    for slot in &GROUPS {
        let pgid = slot.swap(0, Ordering::SeqCst);
        if pgid > 1 {
            // SAFETY: kill is async-signal-safe; pgid is a group xtask created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    kill_all();
    const MSG: &[u8] = b"\nxtask: interrupted: stopped QEMU and the services\n";
    // SAFETY: write and _exit are async-signal-safe; MSG is a static buffer.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(128 + sig);
    }
}

/// SIGINT, SIGTERM, SIGHUP: kill the registered groups, exit 128+signal.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler only does async-signal-safe work.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_children_get_their_own_group_and_are_killed_with_it() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let mut child = own(&mut c).spawn().unwrap();
        let pid = child.id();
        // SAFETY: getpgid on our own child.
        assert_eq!(unsafe { libc::getpgid(pid.cast_signed()) }, pid.cast_signed(), "not a group leader");
        register(pid);
        assert!(GROUPS.iter().any(|s| s.load(Ordering::SeqCst) == pid.cast_signed()));
        kill_all();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        release(pid);
        assert!(!GROUPS.iter().any(|s| s.load(Ordering::SeqCst) == pid.cast_signed()));
    }
}
