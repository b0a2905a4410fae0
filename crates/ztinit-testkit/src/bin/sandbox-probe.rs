//! sandbox-probe: the workload of the sandbox end-to-end scenarios. Runs
//! under ztinit's default profile as an unprivileged user and prints one
//! verdict line per check, then a summary line:
//!
//! ```text
//! probe: PASS uid: 1000
//! probe: FAIL seccomp-kill mount: child exited with status 1, expected SIGSYS
//! probe: SUMMARY passed=17 failed=1
//! ```
//!
//! Exit status 0 when every check passed, 1 otherwise. Options (all
//! optional): `--uid N --gid N` (expected ids, default 1000), `--sysctl
//! NAME=VALUE` (expected lockdown value, overriding the defaults; `absent`
//! when the kernel is built without the feature),
//! `--rw-dir DIR` (a Landlock read-write directory, default /tmp),
//! `--denied-dir DIR` (a world-writable directory on a writable mount but
//! outside the Landlock read-write paths, default /var/tmp: only Landlock
//! can refuse a write there), `--root-read-only` (the root mount must be
//! read-only), `--module NAME` (a module that must appear in
//! /proc/modules), `--kernel-lockdown LEVEL` (the level
//! /sys/kernel/security/lockdown must mark, default confidentiality;
//! `absent` when the file may not exist),
//! `--only PREFIX` (report only the checks whose name starts with PREFIX;
//! repeatable), `--seccomp-profile podman` (the
//! workload runs under containers/common's default profile, the one of
//! Podman and CRI-O, instead of ztinit's: see `PODMAN_DENIED`).
//!
//! Raw system calls only (no libc wrappers that could substitute another
//! call); each kill-listed call runs in a forked child so the probe itself
//! survives to report. Every call of ztinit's kill list is tried (the list
//! is written out here, not taken from ztinit, so a call dropped from the
//! product's list fails the probe).

use std::collections::BTreeMap;

/// A raw system call: number and arguments.
type RawCall = (libc::c_long, [libc::c_long; 6]);

fn call((nr, a): RawCall) -> libc::c_long {
    // SAFETY: raw system calls with NULL pointers or harmless values; every
    // caller expects the kernel or the filter to refuse them.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// x86_64 numbers the libc crate does not name yet.
const SYS_LSM_GET_SELF_ATTR: libc::c_long = 459;
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

/// ztinit's kill list (docs/sandbox.md), by family: each must kill the
/// calling process with SIGSYS before the kernel sees it.
const KILL_LIST: &[(&str, RawCall)] = &[
    // kexec
    ("kexec_load", (libc::SYS_kexec_load, [0; 6])),
    ("kexec_file_load", (libc::SYS_kexec_file_load, [-1, -1, 0, 0, 0, 0])),
    // modules
    ("init_module", (libc::SYS_init_module, [0; 6])),
    ("finit_module", (libc::SYS_finit_module, [-1, 0, 0, 0, 0, 0])),
    ("delete_module", (libc::SYS_delete_module, [0; 6])),
    // kernel introspection
    ("bpf", (libc::SYS_bpf, [0; 6])),
    ("perf_event_open", (libc::SYS_perf_event_open, [0, 0, -1, -1, 0, 0])),
    // other processes' memory
    ("ptrace", (libc::SYS_ptrace, [libc::PTRACE_TRACEME as libc::c_long, 0, 0, 0, 0, 0])),
    ("process_vm_readv", (libc::SYS_process_vm_readv, [0; 6])),
    ("process_vm_writev", (libc::SYS_process_vm_writev, [0; 6])),
    ("userfaultfd", (libc::SYS_userfaultfd, [0; 6])),
    // kernel keyrings
    ("keyctl", (libc::SYS_keyctl, [0; 6])),
    ("add_key", (libc::SYS_add_key, [0; 6])),
    ("request_key", (libc::SYS_request_key, [0; 6])),
    // mounts, classic and new API
    ("mount", (libc::SYS_mount, [0; 6])),
    ("umount2", (libc::SYS_umount2, [0; 6])),
    ("pivot_root", (libc::SYS_pivot_root, [0; 6])),
    ("fsopen", (libc::SYS_fsopen, [0; 6])),
    ("fsconfig", (libc::SYS_fsconfig, [-1, 0, 0, 0, 0, 0])),
    ("fsmount", (libc::SYS_fsmount, [-1, 0, 0, 0, 0, 0])),
    ("fspick", (libc::SYS_fspick, [-1, 0, 0, 0, 0, 0])),
    ("move_mount", (libc::SYS_move_mount, [-1, 0, -1, 0, 0, 0])),
    ("open_tree", (libc::SYS_open_tree, [-1, 0, 0, 0, 0, 0])),
    ("open_tree_attr", (SYS_OPEN_TREE_ATTR, [-1, 0, 0, 0, 0, 0])),
    ("mount_setattr", (libc::SYS_mount_setattr, [-1, 0, 0, 0, 0, 0])),
    // swap, reboot
    ("swapon", (libc::SYS_swapon, [0; 6])),
    ("swapoff", (libc::SYS_swapoff, [0; 6])),
    ("reboot", (libc::SYS_reboot, [0; 6])),
    // file handles, namespaces
    ("open_by_handle_at", (libc::SYS_open_by_handle_at, [-1, 0, 0, 0, 0, 0])),
    ("setns", (libc::SYS_setns, [-1, 0, 0, 0, 0, 0])),
    ("unshare(CLONE_NEWUSER)", (libc::SYS_unshare, [libc::CLONE_NEWUSER as libc::c_long, 0, 0, 0, 0, 0])),
    ("unshare(CLONE_NEWNS)", (libc::SYS_unshare, [libc::CLONE_NEWNS as libc::c_long, 0, 0, 0, 0, 0])),
    ("clone(CLONE_NEWUSER)", (libc::SYS_clone, [(libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long, 0, 0, 0, 0, 0])),
    // io_uring
    ("io_uring_setup", (libc::SYS_io_uring_setup, [1, 0, 0, 0, 0, 0])),
    ("io_uring_enter", (libc::SYS_io_uring_enter, [-1, 0, 0, 0, 0, 0])),
    ("io_uring_register", (libc::SYS_io_uring_register, [-1, 0, 0, 0, 0, 0])),
];

/// Calls the profile denies without killing: (check, call, expected errno).
const DENIED: &[(&str, &str, RawCall, i32)] = &[
    // Unknown to the profile: ENOSYS, so libraries fall back.
    ("seccomp-enosys", "lsm_get_self_attr", (SYS_LSM_GET_SELF_ATTR, [0; 6]), libc::ENOSYS),
    // clone3's flags are out of the filter's reach: ENOSYS, libc falls back to clone.
    ("seccomp-enosys-clone3", "clone3", (libc::SYS_clone3, [0; 6]), libc::ENOSYS),
    // Privileged calls a capability-less program may probe: EPERM.
    ("seccomp-eperm", "settimeofday", (libc::SYS_settimeofday, [0; 6]), libc::EPERM),
    ("seccomp-eperm-chroot", "chroot", (libc::SYS_chroot, [0; 6]), libc::EPERM),
    ("seccomp-eperm-pidfd_getfd", "pidfd_getfd", (libc::SYS_pidfd_getfd, [-1, -1, 0, 0, 0, 0]), libc::EPERM),
    // Socket families other than unix, inet, inet6, netlink.
    (
        "seccomp-vsock",
        "socket(AF_VSOCK)",
        (libc::SYS_socket, [libc::AF_VSOCK as libc::c_long, libc::SOCK_STREAM as libc::c_long, 0, 0, 0, 0]),
        libc::EAFNOSUPPORT,
    ),
];

/// Under containers/common's default profile (`--seccomp-profile podman`,
/// tests/data/seccomp/podman-default.json) with no capabilities: its
/// explicit `"errno": "EPERM"` rules and the `excludes.caps` ones answer
/// EPERM where ztinit's profile kills, and what it does not list answers its
/// `defaultErrno` ENOSYS. Without a filter the test kernel answers most of
/// them differently (lsm_get_self_attr EINVAL, chroot(NULL) EFAULT,
/// setns(-1) EBADF, kexec_load, swapon, userfaultfd, bpf and
/// open_by_handle_at ENOSYS: not built); under ztinit's own profile
/// kexec_load kills the probe.
const PODMAN_DENIED: &[(&str, &str, RawCall, i32)] = &[
    ("seccomp-enosys", "lsm_get_self_attr", (SYS_LSM_GET_SELF_ATTR, [0; 6]), libc::ENOSYS),
    ("seccomp-eperm", "settimeofday", (libc::SYS_settimeofday, [0; 6]), libc::EPERM),
    ("seccomp-eperm-chroot", "chroot", (libc::SYS_chroot, [0; 6]), libc::EPERM),
    ("seccomp-eperm-kexec_load", "kexec_load", (libc::SYS_kexec_load, [0; 6]), libc::EPERM),
    ("seccomp-eperm-swapon", "swapon", (libc::SYS_swapon, [0; 6]), libc::EPERM),
    ("seccomp-eperm-userfaultfd", "userfaultfd", (libc::SYS_userfaultfd, [0; 6]), libc::EPERM),
    ("seccomp-eperm-bpf", "bpf", (libc::SYS_bpf, [0; 6]), libc::EPERM),
    ("seccomp-eperm-setns", "setns", (libc::SYS_setns, [-1, 0, 0, 0, 0, 0]), libc::EPERM),
    (
        "seccomp-eperm-open_by_handle_at",
        "open_by_handle_at",
        (libc::SYS_open_by_handle_at, [-1, 0, 0, 0, 0, 0]),
        libc::EPERM,
    ),
    ("seccomp-eperm-finit_module", "finit_module", (libc::SYS_finit_module, [-1, 0, 0, 0, 0, 0]), libc::EPERM),
];

/// Calls Podman's profile lets through where ztinit's refuses them: the
/// kernel's own answer proves the filter passed them on.
const PODMAN_ALLOWED: &[(&str, &str, RawCall, i32)] = &[
    // ztinit: ENOSYS. The kernel: a NULL, zero-sized clone_args is EINVAL.
    ("seccomp-allow-clone3", "clone3", (libc::SYS_clone3, [0; 6]), libc::EINVAL),
    // ztinit: EPERM. The kernel: fd -1 is EBADF.
    ("seccomp-allow-pidfd_getfd", "pidfd_getfd", (libc::SYS_pidfd_getfd, [-1, -1, 0, 0, 0, 0]), libc::EBADF),
];

struct Probe {
    passed: u32,
    failed: u32,
    /// `--only` prefixes: other checks still run but are neither printed
    /// nor counted.
    only: Vec<String>,
}

impl Probe {
    fn check(&mut self, name: &str, result: Result<String, String>) {
        if !self.only.is_empty() && !self.only.iter().any(|o| name.starts_with(o.as_str())) {
            return;
        }
        match result {
            Ok(detail) => {
                self.passed += 1;
                println!("probe: PASS {name}: {detail}");
            }
            Err(why) => {
                self.failed += 1;
                println!("probe: FAIL {name}: {why}");
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errno_name(e: i32) -> String {
    match e {
        0 => "success".into(),
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EROFS => "EROFS".into(),
        libc::EAFNOSUPPORT => "EAFNOSUPPORT".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EBADF => "EBADF".into(),
        libc::EFAULT => "EFAULT".into(),
        other => format!("errno {other}"),
    }
}

/// Runs a raw syscall; Ok(ret) or Err(errno).
fn raw(f: impl FnOnce() -> libc::c_long) -> Result<libc::c_long, i32> {
    let r = f();
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn expect_errno(name: &str, want: i32, f: impl FnOnce() -> libc::c_long) -> Result<String, String> {
    match raw(f) {
        Err(e) if e == want => Ok(format!("{name} -> {}", errno_name(e))),
        Err(e) => Err(format!("{name} -> {}, expected {}", errno_name(e), errno_name(want))),
        Ok(r) => Err(format!("{name} succeeded ({r}), expected {}", errno_name(want))),
    }
}

/// Forks; the child issues `f` and exits 0 if it returned. The parent
/// expects the child to die of SIGSYS.
fn expect_sigsys(name: &str, raw_call: RawCall) -> Result<String, String> {
    // SAFETY: the child only issues raw system calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", errno_name(errno())));
    }
    if pid == 0 {
        let r = call(raw_call);
        // SAFETY: leaving the child.
        unsafe { libc::_exit(if r < 0 { 100 } else { 0 }) };
    }
    let mut status = 0;
    // SAFETY: our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err("waitpid failed".into());
    }
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS {
        Ok(format!("{name} killed the child with SIGSYS"))
    } else if libc::WIFSIGNALED(status) {
        Err(format!("{name}: child killed by signal {}, expected SIGSYS", libc::WTERMSIG(status)))
    } else {
        Err(format!(
            "{name}: child exited with status {} (the call {}), expected SIGSYS",
            libc::WEXITSTATUS(status),
            if libc::WEXITSTATUS(status) == 100 { "failed" } else { "succeeded" }
        ))
    }
}

/// Reading I/O port 0xf4 (isa-debug-exit; a read has no effect) in a
/// forked child faults with SIGSEGV unless the process was granted it.
fn expect_no_port_access() -> Result<String, String> {
    // SAFETY: the child only reads a port and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", errno_name(errno())));
    }
    if pid == 0 {
        let _value: u8;
        // SAFETY: without the port's permission the CPU faults (SIGSEGV),
        // which is the expected outcome; with it, the read has no effect.
        unsafe {
            std::arch::asm!("in al, dx", in("dx") 0xf4u16, out("al") _value, options(nomem, nostack, preserves_flags));
            libc::_exit(0)
        };
    }
    let mut status = 0;
    // SAFETY: our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err("waitpid failed".into());
    }
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV {
        Ok("in from 0xf4 -> SIGSEGV".into())
    } else if libc::WIFSIGNALED(status) {
        Err(format!("in from 0xf4: child killed by signal {}, expected SIGSEGV", libc::WTERMSIG(status)))
    } else {
        Err(format!("in from 0xf4 succeeded (exit {}): the workload holds the port", libc::WEXITSTATUS(status)))
    }
}

fn status_field(status: &str, field: &str) -> Option<String> {
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut uid: u32 = 1000;
    let mut gid: u32 = 1000;
    let mut rw_dir = "/tmp".to_string();
    let mut denied_dir = "/var/tmp".to_string();
    let mut root_read_only = false;
    let mut modules = Vec::new();
    let mut only = Vec::new();
    let mut kernel_lockdown = "confidentiality".to_string();
    let mut podman = false;
    // The lockdown's own table at its defaults (the scenario's markers list
    // the values independently); `--sysctl` overrides one.
    let mut sysctls: BTreeMap<String, String> = ztinit::lockdown::knobs(&ztinit::lockdown::LockdownConfig::default())
        .into_iter()
        .map(|k| (k.path.to_string(), k.value))
        .collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--uid" => uid = value().parse().unwrap_or(u32::MAX),
            "--gid" => gid = value().parse().unwrap_or(u32::MAX),
            "--rw-dir" => rw_dir = value(),
            "--denied-dir" => denied_dir = value(),
            "--root-read-only" => root_read_only = true,
            "--module" => modules.push(value()),
            "--only" => only.push(value()),
            "--kernel-lockdown" => kernel_lockdown = value(),
            "--seccomp-profile" => match value().as_str() {
                "podman" => podman = true,
                other => println!("probe: ignoring unknown profile {other:?}"),
            },
            "--sysctl" => {
                let v = value();
                if let Some((k, val)) = v.split_once('=') {
                    sysctls.insert(k.replace('.', "/"), val.to_string());
                }
            }
            other => println!("probe: ignoring unknown argument {other:?}"),
        }
    }

    let mut p = Probe { passed: 0, failed: 0, only };

    // Identity.
    // SAFETY: getters; getgroups with size 0 only counts.
    let (ruid, rgid, ngroups) = unsafe {
        (
            u32::try_from(libc::syscall(libc::SYS_getuid)).unwrap_or(u32::MAX),
            u32::try_from(libc::syscall(libc::SYS_getgid)).unwrap_or(u32::MAX),
            libc::syscall(libc::SYS_getgroups, 0, 0),
        )
    };
    p.check("uid", if ruid == uid { Ok(ruid.to_string()) } else { Err(format!("{ruid}, expected {uid}")) });
    p.check("gid", if rgid == gid { Ok(rgid.to_string()) } else { Err(format!("{rgid}, expected {gid}")) });
    p.check(
        "groups",
        if ngroups == 0 { Ok("none".into()) } else { Err(format!("{ngroups} supplementary groups, expected none")) },
    );

    // /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (field, want) in [
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapInh", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ] {
        let got = status_field(&status, field);
        p.check(
            &format!("status {field}"),
            match got {
                Some(g) if g == want => Ok(g),
                Some(g) => Err(format!("{g}, expected {want}")),
                None => Err("field missing from /proc/self/status".into()),
            },
        );
    }

    if podman {
        // Podman's profile: nothing is killed; denials are errnos.
        for (check, name, raw_call, want) in PODMAN_DENIED.iter().chain(PODMAN_ALLOWED) {
            p.check(check, expect_errno(name, *want, || call(*raw_call)));
        }
    } else {
        // Seccomp: unknown and privileged calls fail as the profile says.
        for (check, name, raw_call, want) in DENIED {
            p.check(check, expect_errno(name, *want, || call(*raw_call)));
        }
        // Kill list: each in a forked child.
        for (name, raw_call) in KILL_LIST {
            p.check(&format!("seccomp-kill {name}"), expect_sigsys(name, *raw_call));
        }
        // Loading a module: killed by seccomp before the kernel sees it (and
        // kernel.modules_disabled is checked with the sysctls below).
        p.check("module-load", expect_sigsys("finit_module", (libc::SYS_finit_module, [-1, 0, 0, 0, 0, 0])));
    }

    // Landlock: writes outside the read-write paths fail with EACCES. The
    // directory must be world-writable on a writable mount, so that only
    // Landlock can be the one refusing.
    p.check("landlock-deny", landlock_deny(&denied_dir));
    let allowed = format!("{rw_dir}/probe-landlock-{}", std::process::id());
    p.check(
        "landlock-allow",
        match std::fs::write(&allowed, b"ok") {
            Ok(()) => {
                let _ = std::fs::remove_file(&allowed);
                Ok(format!("created a file in {rw_dir}"))
            }
            Err(e) => Err(format!("cannot write in {rw_dir}: {e}")),
        },
    );
    p.check(
        "landlock-no-exec-in-rw",
        match std::fs::copy("/proc/self/exe", &allowed) {
            Err(e) => Err(format!("cannot copy self to {rw_dir}: {e}")),
            Ok(_) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&allowed, std::fs::Permissions::from_mode(0o755));
                let path = format!("{allowed}\0");
                let argv = [path.as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null::<u8>()];
                // SAFETY: NUL-terminated path, NULL-terminated argv and envp that outlive the call.
                let r = expect_errno("execve from the read-write dir", libc::EACCES, || unsafe {
                    libc::syscall(libc::SYS_execve, path.as_ptr(), argv.as_ptr(), envp.as_ptr())
                });
                let _ = std::fs::remove_file(&allowed);
                r
            }
        },
    );
    if root_read_only {
        p.check("root-read-only", root_is_read_only());
    }

    // Lockdown sysctls.
    for (knob, want) in &sysctls {
        let path = format!("/proc/sys/{knob}");
        let name = format!("sysctl {}", knob.replace('/', "."));
        p.check(
            &name,
            match std::fs::read_to_string(&path) {
                Err(e) if want == "absent" && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok("absent (feature not built)".into())
                }
                Ok(v) if v.trim() == want => Ok(want.clone()),
                Ok(v) => Err(format!("{}, expected {want}", v.trim())),
                Err(e) => Err(format!("cannot read {path}: {e}")),
            },
        );
    }

    // The lockdown LSM, raised by ztinit after the sysctls.
    p.check(
        "kernel-lockdown",
        match std::fs::read_to_string("/sys/kernel/security/lockdown") {
            Ok(v) if v.split_whitespace().any(|w| w == format!("[{kernel_lockdown}]")) => Ok(v.trim().to_string()),
            Ok(v) => Err(format!("{:?}, expected [{kernel_lockdown}]", v.trim())),
            Err(e) if kernel_lockdown == "absent" && e.kind() == std::io::ErrorKind::NotFound => {
                Ok("absent (no lockdown LSM or no securityfs)".into())
            }
            Err(e) => Err(format!("cannot read /sys/kernel/security/lockdown: {e}")),
        },
    );
    // PID 1 of a test image keeps the isa-debug-exit port past lockdown in
    // a thread of its own: the workload it forks must not inherit it.
    p.check("io-port", expect_no_port_access());

    // Modules the scenario loaded.
    let loaded = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    for m in &modules {
        let norm = m.replace('-', "_");
        p.check(
            &format!("module {norm}"),
            if loaded.lines().any(|l| l.split_whitespace().next() == Some(norm.as_str())) {
                Ok("listed in /proc/modules".into())
            } else {
                Err("not in /proc/modules".into())
            },
        );
    }

    println!("probe: SUMMARY passed={} failed={}", p.passed, p.failed);
    std::process::exit(if p.failed == 0 { 0 } else { 1 });
}

/// Creating a file in `dir` fails with EACCES although the mode bits and
/// the mount would allow it.
fn landlock_deny(dir: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).map_err(|e| format!("{dir}: {e}"))?.permissions().mode();
    if mode & 0o002 == 0 {
        return Err(format!("{dir} (mode {:o}) is not world-writable: EACCES would not prove Landlock", mode & 0o7777));
    }
    if statvfs_read_only(dir)? {
        return Err(format!("{dir} is on a read-only mount: EROFS would come before Landlock"));
    }
    let denied = format!("{dir}/probe-landlock-{}\0", std::process::id());
    // SAFETY: a NUL-terminated path that outlives the call.
    expect_errno(&format!("create in {dir} (mode {:o})", mode & 0o7777), libc::EACCES, || unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            denied.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o600,
        )
    })
}

fn statvfs_read_only(path: &str) -> Result<bool, String> {
    let c = std::ffi::CString::new(path).map_err(|_| format!("{path:?}: NUL"))?;
    // SAFETY: statvfs is plain data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable local.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {path}: {}", errno_name(errno())));
    }
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}

/// The root mount is read-only: statvfs says so and creating a file fails
/// with EROFS (before Landlock is asked).
fn root_is_read_only() -> Result<String, String> {
    if !statvfs_read_only("/")? {
        return Err("statvfs(/) does not report ST_RDONLY".into());
    }
    let path = format!("/probe-ro-{}\0", std::process::id());
    // SAFETY: a NUL-terminated path that outlives the call.
    expect_errno("create in /", libc::EROFS, || unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o600,
        )
    })
}
