//! sandbox-probe: the workload of the sandbox end-to-end scenario. Runs
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
//! `--denied-dir DIR` (a directory writable by DAC but outside the Landlock
//! read-write paths, default /var/tmp), `--module NAME` (a module that must
//! appear in /proc/modules).
//!
//! Raw system calls only (no libc wrappers that could substitute another
//! call); each kill-listed call runs in a forked child so the probe itself
//! survives to report.

use std::collections::BTreeMap;

/// A raw system call issued by a forked child.
type RawCall = fn() -> libc::c_long;

struct Probe {
    passed: u32,
    failed: u32,
}

impl Probe {
    fn check(&mut self, name: &str, result: Result<String, String>) {
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
fn expect_sigsys(name: &str, f: RawCall) -> Result<String, String> {
    // SAFETY: the child only issues raw system calls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", errno_name(errno())));
    }
    if pid == 0 {
        let r = f();
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

fn status_field(status: &str, field: &str) -> Option<String> {
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut uid: u32 = 1000;
    let mut gid: u32 = 1000;
    let mut rw_dir = "/tmp".to_string();
    let mut denied_dir = "/var/tmp".to_string();
    let mut modules = Vec::new();
    let mut sysctls: BTreeMap<String, String> = [
        ("kernel/kptr_restrict", "2"),
        ("kernel/dmesg_restrict", "1"),
        ("kernel/unprivileged_bpf_disabled", "1"),
        ("kernel/kexec_load_disabled", "1"),
        ("kernel/io_uring_disabled", "2"),
        ("kernel/perf_event_paranoid", "3"),
        ("kernel/yama/ptrace_scope", "2"),
        ("fs/suid_dumpable", "0"),
        ("kernel/modules_disabled", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--uid" => uid = value().parse().unwrap_or(u32::MAX),
            "--gid" => gid = value().parse().unwrap_or(u32::MAX),
            "--rw-dir" => rw_dir = value(),
            "--denied-dir" => denied_dir = value(),
            "--module" => modules.push(value()),
            "--sysctl" => {
                let v = value();
                if let Some((k, val)) = v.split_once('=') {
                    sysctls.insert(k.replace('.', "/"), val.to_string());
                }
            }
            other => println!("probe: ignoring unknown argument {other:?}"),
        }
    }

    let mut p = Probe { passed: 0, failed: 0 };

    // Identity.
    // SAFETY: getters without arguments.
    let (ruid, rgid) = unsafe { (libc::syscall(libc::SYS_getuid) as u32, libc::syscall(libc::SYS_getgid) as u32) };
    p.check("uid", if ruid == uid { Ok(ruid.to_string()) } else { Err(format!("{ruid}, expected {uid}")) });
    p.check("gid", if rgid == gid { Ok(rgid.to_string()) } else { Err(format!("{rgid}, expected {gid}")) });

    // /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (field, want) in [
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
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

    // Seccomp: unknown and privileged calls fail as the profile says.
    // SAFETY (closures): raw system calls with harmless arguments.
    p.check(
        "seccomp-enosys",
        expect_errno("lsm_get_self_attr", libc::ENOSYS, || unsafe { libc::syscall(459, 0, 0, 0, 0) }),
    );
    p.check(
        "seccomp-eperm",
        expect_errno("settimeofday", libc::EPERM, || unsafe { libc::syscall(libc::SYS_settimeofday, 0, 0) }),
    );
    p.check(
        "seccomp-vsock",
        expect_errno("socket(AF_VSOCK)", libc::EAFNOSUPPORT, || unsafe {
            libc::syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0)
        }),
    );
    // Kill list: each in a forked child.
    let kills: [(&str, RawCall); 7] = [
        ("mount", || unsafe { libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0) }),
        ("ptrace", || unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0) }),
        ("bpf", || unsafe { libc::syscall(libc::SYS_bpf, 0, 0, 0) }),
        ("kexec_load", || unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0) }),
        ("keyctl", || unsafe { libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0) }),
        ("unshare(CLONE_NEWUSER)", || unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) }),
        ("io_uring_setup", || unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, 0) }),
    ];
    for (name, f) in kills {
        p.check(&format!("seccomp-kill {name}"), expect_sigsys(name, f));
    }
    // Loading a module: killed by seccomp before the kernel sees it.
    p.check(
        "module-load",
        expect_sigsys("finit_module", || unsafe { libc::syscall(libc::SYS_finit_module, 0, c"".as_ptr(), 0) }),
    );

    // Landlock: writes outside the read-write paths fail with EACCES.
    let denied = format!("{denied_dir}/probe-landlock-{}\0", std::process::id());
    p.check(
        "landlock-deny",
        expect_errno(&format!("create in {denied_dir}"), libc::EACCES, || unsafe {
            libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                denied.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            )
        }),
    );
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
                let r = expect_errno("execve from the read-write dir", libc::EACCES, || unsafe {
                    libc::syscall(libc::SYS_execve, path.as_ptr(), argv.as_ptr(), envp.as_ptr())
                });
                let _ = std::fs::remove_file(&allowed);
                r
            }
        },
    );

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
