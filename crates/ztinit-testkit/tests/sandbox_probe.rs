//! The sandbox probe launched through ztinit's real launch path on the
//! host (as root, which CI and the development machines are): every
//! sandbox verdict must pass. The host is not locked down, so the expected
//! sysctls are the host's current values; the QEMU scenario checks the real
//! lockdown.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use ztinit::config::{LaunchMode, WorkloadConfig};
use ztinit::sandbox::{LaunchPlan, Limit, RlimitConfig, SandboxConfig};

fn read_all(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd.try_clone().unwrap()), &mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a local.
    unsafe { libc::getrlimit(resource, &mut lim) };
    lim.rlim_max
}

#[test]
#[ignore = "needs root: the launch changes uid, gid and capabilities"]
fn probe_passes_under_the_default_sandbox() {
    // SAFETY: plain getter.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: run it as root or leave out --ignored");
    let mut args: Vec<String> = vec!["--uid".into(), "65534".into(), "--gid".into(), "65534".into()];
    for knob in [
        "kernel/kptr_restrict",
        "kernel/dmesg_restrict",
        "kernel/unprivileged_bpf_disabled",
        "kernel/kexec_load_disabled",
        "kernel/io_uring_disabled",
        "kernel/perf_event_paranoid",
        "kernel/yama/ptrace_scope",
        "fs/suid_dumpable",
        "kernel/core_pattern",
        "kernel/randomize_va_space",
        "kernel/modules_disabled",
    ] {
        match std::fs::read_to_string(format!("/proc/sys/{knob}")) {
            Ok(v) => args.extend(["--sysctl".to_string(), format!("{knob}={}", v.trim())]),
            // Not built into this host kernel.
            Err(_) => args.extend(["--sysctl".to_string(), format!("{knob}=absent")]),
        }
    }
    // Likewise the host's lockdown LSM level, if it has one.
    let level = std::fs::read_to_string("/sys/kernel/security/lockdown")
        .ok()
        .and_then(|t| t.split_whitespace().find_map(|w| Some(w.strip_prefix('[')?.strip_suffix(']')?.to_string())));
    args.extend(["--kernel-lockdown".to_string(), level.unwrap_or_else(|| "absent".into())]);
    let workload = WorkloadConfig {
        path: env!("CARGO_BIN_EXE_sandbox-probe").into(),
        args,
        env: BTreeMap::new(),
        user: 65534,
        group: 65534,
        supplementary_groups: vec![],
        workdir: "/".into(),
        mode: LaunchMode::Supervise,
    };
    let sandbox = SandboxConfig {
        rlimits: RlimitConfig {
            nofile: Limit(hard_limit(libc::RLIMIT_NOFILE).min(65536)),
            memlock: Limit(hard_limit(libc::RLIMIT_MEMLOCK)),
            nproc: None,
        },
        ..SandboxConfig::default()
    };
    let launched = LaunchPlan::new(&workload, &sandbox, &[]).unwrap().spawn().unwrap();
    let out = read_all(&launched.stdout);
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(launched.pid, &mut status, 0) };
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("probe: FAIL")).collect();
    assert!(failed.is_empty(), "{out}");
    assert!(out.contains("probe: PASS seccomp-kill mount"), "{out}");
    assert!(out.contains("probe: PASS landlock-deny"), "{out}");
    assert!(out.contains("probe: PASS status Seccomp: 2"), "{out}");
    assert!(out.lines().last().unwrap_or_default().starts_with("probe: SUMMARY passed="), "{out}");
}
