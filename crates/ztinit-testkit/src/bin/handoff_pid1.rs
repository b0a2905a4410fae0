//! handoff-pid1: the workload of the `handoff` scenario. ztinit execs it as
//! PID 1 (`[workload] mode = "handoff"`) under the default profile, as uid
//! and gid 1000, keeping only CAP_SYS_RAWIO. It prints one verdict line per
//! check and then ends the VM itself through isa-debug-exit, because ztinit,
//! which would report the exit, no longer exists:
//!
//! - value 42 when every check passed, 43 when one failed (QEMU exits 85 or
//!   87): values that only this program writes, so the harness can tell a
//!   deliberate end from anything else;
//! - the port: ztinit raises the kernel lockdown before the handoff, and
//!   lockdown refuses ioperm(2), so ztinit grants its main thread the port
//!   just before (test images only) and this program inherits it across
//!   execve. Its own ioperm is still tried and must be refused by lockdown
//!   (EPERM), which the scenario checks; without the inherited permission
//!   the write faults, PID 1 dies, the kernel panics and QEMU exits 0,
//!   which the harness never counts as a debug-exit value.
//!
//! Why ioperm: it needs CAP_SYS_RAWIO (kept with `[sandbox] capabilities`)
//! and is answered EPERM by the default profile unless `seccomp_allow` lists
//! it, so only lockdown can be the one refusing it here. The alternative,
//! reboot(2), is on the kill list and cannot be allowed without dropping the
//! built-in profile, which is what this scenario tests.
//!
//! Its first call is `setsid()`, as kata-agent's PID-1 init does: it fails
//! with EPERM if ztinit left PID 1 leading a process group (a regression
//! that kills the real agent), and that is a failed check here.
//!
//! Usage: handoff-pid1 [UID GID] (expected ids, default 1000 1000).

use ztinit_testkit::say;

const DEBUG_EXIT_PORT: u16 = 0xf4;
const PASS_VALUE: u8 = 42;
const FAIL_VALUE: u8 = 43;
/// CAP_SYS_RAWIO (17), the only capability the scenario keeps.
const KEPT_CAPS: &str = "0000000000020000";

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(failed: &mut u32, name: &str, result: Result<String, String>) {
    match result {
        Ok(detail) => say(&format!("testkit: handoff: PASS {name}: {detail}")),
        Err(why) => {
            *failed += 1;
            say(&format!("testkit: handoff: FAIL {name}: {why}"));
        }
    }
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".to_string(),
        libc::ENOSYS => "ENOSYS".to_string(),
        0 => "success".to_string(),
        e => format!("errno {e}"),
    }
}

/// `r` is a raw syscall result; the expected outcome is failure with `want`.
fn expect_errno(call: &str, want: i32, r: libc::c_long) -> Result<String, String> {
    let got = if r < 0 { errno() } else { 0 };
    let name = errno_name;
    if r < 0 && got == want {
        Ok(format!("{call} -> {}", name(got)))
    } else if r < 0 {
        Err(format!("{call} -> {}, expected {}", name(got), name(want)))
    } else {
        Err(format!("{call} succeeded ({r}), expected {}", name(want)))
    }
}

fn status_field(status: &str, field: &str) -> Option<String> {
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

fn main() {
    let args: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (uid, gid) = match args.as_slice() {
        [u, g] => (*u, *g),
        _ => (1000, 1000),
    };
    let mut failed = 0;

    // What kata-agent's PID-1 init does first: a session of its own. The
    // kernel starts init in session 0, so this succeeds unless ztinit left
    // PID 1 leading a process group (the agent then gives up on EPERM).
    // SAFETY: setsid takes no arguments.
    let r = unsafe { libc::syscall(libc::SYS_setsid) };
    check(
        &mut failed,
        "setsid",
        if r == 1 {
            Ok("new session 1".into())
        } else if r < 0 {
            Err(format!("failed: {}, as kata-agent would (PID 1 already leads a process group)", errno_name(errno())))
        } else {
            Err(format!("session {r}, expected 1"))
        },
    );

    // SAFETY: this block and the raw calls below are system calls with
    // integer arguments or NULL pointers the kernel does not dereference.
    let (pid, ppid, ruid, rgid) = unsafe {
        (
            libc::syscall(libc::SYS_getpid),
            libc::syscall(libc::SYS_getppid),
            u32::try_from(libc::syscall(libc::SYS_getuid)).unwrap_or(u32::MAX),
            u32::try_from(libc::syscall(libc::SYS_getgid)).unwrap_or(u32::MAX),
        )
    };
    check(&mut failed, "pid", if pid == 1 { Ok("1".into()) } else { Err(format!("{pid}, expected 1")) });
    check(&mut failed, "ppid", if ppid == 0 { Ok("0".into()) } else { Err(format!("{ppid}, expected 0")) });
    check(&mut failed, "uid", if ruid == uid { Ok(uid.to_string()) } else { Err(format!("{ruid}, expected {uid}")) });
    check(&mut failed, "gid", if rgid == gid { Ok(gid.to_string()) } else { Err(format!("{rgid}, expected {gid}")) });

    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (field, want) in [
        ("CapEff", KEPT_CAPS),
        ("CapPrm", KEPT_CAPS),
        ("CapInh", KEPT_CAPS),
        ("CapBnd", KEPT_CAPS),
        ("CapAmb", KEPT_CAPS),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ] {
        check(
            &mut failed,
            &format!("status {field}"),
            match status_field(&status, field) {
                Some(g) if g == want => Ok(g),
                Some(g) => Err(format!("{g}, expected {want}")),
                None => Err("missing from /proc/self/status".into()),
            },
        );
    }

    // Kill-listed calls answer EPERM in handoff mode (a kill would panic the
    // kernel: reaching the next line is the first proof). The kernel itself
    // would answer differently, so EPERM comes from the filter:
    // process_vm_readv with no iovecs returns 0, bpf is not built (ENOSYS).
    // SAFETY: no iovecs, NULL attributes.
    let r = unsafe { libc::syscall(libc::SYS_process_vm_readv, 1, 0, 0, 0, 0, 0) };
    check(&mut failed, "no-kill process_vm_readv", expect_errno("process_vm_readv", libc::EPERM, r));
    // SAFETY: as above.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) };
    check(&mut failed, "no-kill bpf", expect_errno("bpf", libc::EPERM, r));
    // Unknown to the profile: ENOSYS as in supervise mode.
    // SAFETY: lsm_get_self_attr (459) with NULL buffers.
    let r = unsafe { libc::syscall(459, 0, 0, 0, 0) };
    check(&mut failed, "seccomp-enosys", expect_errno("lsm_get_self_attr", libc::ENOSYS, r));

    let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown").unwrap_or_default();
    check(
        &mut failed,
        "kernel lockdown",
        if lockdown.contains("[confidentiality]") {
            Ok("confidentiality".into())
        } else {
            Err(format!("{:?}, expected [confidentiality]", lockdown.trim()))
        },
    );
    // SAFETY: ioperm only changes this thread's I/O permission bitmap.
    let r = unsafe { libc::ioperm(libc::c_ulong::from(DEBUG_EXIT_PORT), 1, 1) };
    check(
        &mut failed,
        "lockdown-ioperm",
        if r == 0 {
            Err("ioperm(0xf4) succeeded under lockdown".into())
        } else {
            expect_errno("ioperm", libc::EPERM, -1)
        },
    );
    let value = if failed == 0 { PASS_VALUE } else { FAIL_VALUE };
    say(&format!("testkit: handoff: {failed} checks failed; writing {value} to isa-debug-exit"));
    // The console must have sent everything before the VM ends.
    // SAFETY: TCSBRK with a non-zero argument is tcdrain on fd 1.
    unsafe { libc::ioctl(1, libc::TCSBRK, 1) };
    // SAFETY: the port was granted to ztinit's main thread before lockdown
    // and kept across execve (without it: SIGSEGV, see the module comment);
    // QEMU's isa-debug-exit device at this port ends the VM.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") DEBUG_EXIT_PORT, in("al") value, options(nomem, nostack, preserves_flags));
    }
    // QEMU 10 ends the VM from its main loop after the write, not in it:
    // this vCPU runs on meanwhile, so wait before calling it a failure.
    std::thread::sleep(std::time::Duration::from_secs(10));
    say("testkit: handoff: FAIL isa-debug-exit did not end the VM");
    std::process::exit(1);
}
