//! Leaves orphaned grandchildren for PID 1 to reap, then counts zombies.
//!
//! Each child forks a grandchild and exits at once; the workload reaps the
//! child, so the grandchild is re-parented to PID 1. The grandchild then
//! exits and stays a zombie until PID 1 reaps it. After a pause the
//! workload counts zombies in /proc and exits 0 only if there are none.

use std::time::Duration;

use ztinit_testkit::say;

const ORPHANS: usize = 4;

fn main() {
    for _ in 0..ORPHANS {
        // SAFETY: fork in a single-threaded program; the child only calls
        // async-signal-safe functions (fork, nanosleep, getppid, write, _exit).
        match unsafe { libc::fork() } {
            -1 => fail("fork failed"),
            0 => {
                // SAFETY: as above.
                if unsafe { libc::fork() } == 0 {
                    grandchild();
                }
                // SAFETY: leaving the child without running destructors.
                unsafe { libc::_exit(0) };
            }
            child => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
    }
    say(&format!("testkit: orphans: left {ORPHANS} orphaned grandchildren"));
    std::thread::sleep(Duration::from_millis(1500));
    match count_zombies() {
        Ok(n) => {
            say(&format!("testkit: orphans: zombies={n}"));
            std::process::exit(if n == 0 { 0 } else { 1 });
        }
        Err(e) => fail(&format!("cannot read /proc: {e}")),
    }
}

fn grandchild() -> ! {
    // Wait until our parent has exited and we belong to PID 1.
    for _ in 0..100 {
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    say(&format!("testkit: orphans: grandchild re-parented to pid {ppid}"));
    // SAFETY: exit without running the parent's atexit handlers.
    unsafe { libc::_exit(0) }
}

fn count_zombies() -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // The state follows the last ')' (the command name may hold any byte).
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some((_, rest)) = stat.rsplit_once(')')
            && rest.trim_start().starts_with('Z')
        {
            n += 1;
        }
    }
    Ok(n)
}

fn fail(msg: &str) -> ! {
    say(&format!("testkit: orphans: FAILED: {msg}"));
    std::process::exit(2);
}
