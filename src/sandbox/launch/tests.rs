//! The launch path against the real kernel, in forked children (the test
//! process itself never installs a filter or drops anything). Needs root,
//! which CI and the development machines have; skipped otherwise.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsFd;

use super::*;
use crate::sandbox::config::{LandlockMode, RlimitConfig};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn workload(path: &str, args: &[&str]) -> WorkloadConfig {
    WorkloadConfig {
        path: path.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
        user: 65534,
        group: 65534,
        supplementary_groups: vec![65533],
        workdir: "/".into(),
        mode: LaunchMode::Supervise,
    }
}

/// The test process may lack CAP_SYS_RESOURCE: stay within its hard limits.
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit64 into a local.
    assert_eq!(unsafe { libc::getrlimit64(resource, &mut lim) }, 0);
    lim.rlim_max
}

fn sandbox() -> SandboxConfig {
    let rlimits = RlimitConfig {
        nofile: Limit(hard_limit(libc::RLIMIT_NOFILE).min(65536)),
        memlock: Limit(hard_limit(libc::RLIMIT_MEMLOCK).min(64 << 20)),
        nproc: None,
    };
    SandboxConfig { executable: vec!["/usr".into(), "/bin".into()], rlimits, ..SandboxConfig::default() }
}

fn read_all(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd.try_clone().unwrap()), &mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn wait(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    status
}

#[test]
fn plan_rejects_bad_input_before_fork() {
    let s = sandbox();
    let err = LaunchPlan::new(&workload("/nonexistent/prog", &[]), &s, &[]).unwrap_err();
    assert_eq!(err.to_string(), "workload program /nonexistent/prog: No such file or directory (os error 2)");
    let err = LaunchPlan::new(&workload("/usr", &[]), &s, &[]).unwrap_err();
    assert_eq!(err.to_string(), "workload program /usr: not a regular file");
    let err = LaunchPlan::new(&workload("/bin/sh", &["a\0b"]), &s, &[]).unwrap_err();
    assert_eq!(err.to_string(), "workload.args[0] contains a NUL byte");
    let err = LaunchPlan::new(&workload("/bin/sh", &[]), &s, &[("PATH".into(), "/x".into())]).unwrap_err();
    assert_eq!(err.to_string(), "environment variable PATH is set twice");
    let missing = SandboxConfig { seccomp: SeccompChoice::File("/nope.json".into()), ..sandbox() };
    let err = LaunchPlan::new(&workload("/bin/sh", &[]), &missing, &[]).unwrap_err();
    assert!(err.to_string().starts_with("seccomp profile /nope.json: "), "{err}");
}

#[test]
fn plan_refuses_a_profile_that_cannot_launch() {
    // Valid JSON and valid names, but no execveat and no exit: the child
    // would fail after installing the filter and spin in _exit, and PID 1
    // would wait for it forever. Refused before anything is forked.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let s = SandboxConfig { seccomp: SeccompChoice::File("/p.json".into()), ..sandbox() };
    let opts = LaunchOptions { image_root: dir.path().into(), ..LaunchOptions::default() };
    let err = LaunchPlan::with_options(&workload("/bin/sh", &[]), &s, &[], &opts).unwrap_err();
    assert!(err.to_string().starts_with("seccomp: /p.json: execveat is not allowed (Errno(1)): "), "{err}");
}

#[test]
fn plan_debug_hides_environment() {
    let mut w = workload("/bin/sh", &[]);
    w.env.insert("API_TOKEN".into(), "s3cr3t".into());
    let plan = LaunchPlan::new(&w, &sandbox(), &[]).unwrap();
    let dbg = format!("{plan:?}");
    assert!(!dbg.contains("s3cr3t") && dbg.contains("workload-default"), "{dbg}");
}

#[test]
fn workload_runs_confined() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let script = "id -u; id -g; id -G; \
        grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
        cat /proc/self/oom_score_adj; ulimit -n; ulimit -c; \
        (echo x > /var/tmp/ztinit-landlock-probe) 2>/dev/null && echo var-tmp-writable || echo var-tmp-denied; \
        f=$(mktemp) && echo tmp-writable && rm -f $f; \
        echo to-stderr >&2; pwd";
    let mut w = workload("/bin/sh", &["-c", script]);
    w.workdir = "/tmp".into();
    let s = SandboxConfig { oom_score_adj: 300, ..sandbox() };
    let plan =
        LaunchPlan::new(&w, &s, &[("CREDENTIALS_DIRECTORY".into(), "/run/credentials/workload".into())]).unwrap();
    let launched = plan.spawn().unwrap();
    let out = read_all(&launched.stdout);
    let err = read_all(&launched.stderr);
    let status = wait(launched.pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let nofile = s.rlimits.nofile.0.to_string();
    let want = [
        "65534",
        "65534",
        "65534 65533",
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "300",
        &nofile,
        "0",
        "var-tmp-denied",
        "tmp-writable",
        "/tmp",
    ];
    assert_eq!(lines, want, "stderr: {err}");
    assert_eq!(err, "to-stderr\n");
    // The session and process group are the child's own.
    assert!(!std::path::Path::new("/var/tmp/ztinit-landlock-probe").exists());
}

#[test]
fn workload_is_session_leader_and_gets_only_its_env() {
    if !is_root() {
        return;
    }
    let w = workload("/bin/sh", &["-c", "ps -o pid=,pgid=,sid= -p $$ 2>/dev/null || cat /proc/self/stat; env | sort"]);
    let plan = LaunchPlan::new(&w, &sandbox(), &[("EXTRA".into(), "1".into())]).unwrap();
    let launched = plan.spawn().unwrap();
    let out = read_all(&launched.stdout);
    wait(launched.pid);
    let stat_line = out.lines().next().unwrap_or_default().to_string();
    let pid = launched.pid.to_string();
    // Either ps (pid pgid sid) or /proc/self/stat (pid comm state ppid pgrp session ...).
    let fields: Vec<&str> = stat_line.split_whitespace().collect();
    let (pgid, sid) = if fields.len() == 3 { (fields[1], fields[2]) } else { (fields[4], fields[5]) };
    assert_eq!((pgid, sid), (pid.as_str(), pid.as_str()), "{out}");
    let env: Vec<&str> = out
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert_eq!(env, ["EXTRA=1", "PATH=/usr/bin:/bin"]);
}

#[test]
fn failing_steps_are_named() {
    if !is_root() {
        return;
    }
    let s = sandbox();
    let mut w = workload("/bin/sh", &["-c", "true"]);
    w.workdir = "/nonexistent-workdir".into();
    let err = LaunchPlan::new(&w, &s, &[]).unwrap().spawn().unwrap_err();
    assert_eq!(err.step(), Some(Step::Chdir));
    assert_eq!(err.to_string(), "chdir failed: ENOENT (No such file or directory)");

    let big = SandboxConfig { rlimits: RlimitConfig { nofile: Limit(1 << 30), ..sandbox().rlimits }, ..sandbox() };
    let err = LaunchPlan::new(&workload("/bin/sh", &[]), &big, &[]).unwrap().spawn().unwrap_err();
    assert_eq!(err.to_string(), "setrlimit RLIMIT_NOFILE failed: EPERM (Operation not permitted)");

    // Root-only program: the unprivileged workload user may not exec it.
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = LaunchPlan::new(&workload(prog.to_str().unwrap(), &[]), &s, &[]).unwrap().spawn().unwrap_err();
    assert_eq!(err.to_string(), "execveat failed: EACCES (Permission denied)");
}

#[test]
fn seccomp_kill_list_kills_the_workload_not_us() {
    if !is_root() {
        return;
    }
    // perl/python may not exist; the shell's `ulimit`/builtins cannot make
    // raw syscalls, so use a program that mounts: util-linux `mount` calls
    // mount(2) -> KILL_PROCESS -> SIGSYS.
    let Some(mount) = ["/usr/bin/mount", "/bin/mount"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        return;
    };
    let w = workload(mount, &["-t", "tmpfs", "none", "/tmp"]);
    let launched = LaunchPlan::new(&w, &sandbox(), &[]).unwrap().spawn().unwrap();
    let _ = read_all(&launched.stdout);
    let status = wait(launched.pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS, "status {status:#x}");
}

#[test]
fn keeping_a_capability_for_a_non_root_user() {
    if !is_root() {
        return;
    }
    let w = workload("/bin/sh", &["-c", "grep -E '^Cap(Eff|Prm|Inh|Bnd|Amb):' /proc/self/status"]);
    let s = SandboxConfig { capabilities: vec!["CAP_NET_BIND_SERVICE".into()], ..sandbox() };
    let launched = LaunchPlan::new(&w, &s, &[]).unwrap().spawn().unwrap();
    let out = read_all(&launched.stdout);
    wait(launched.pid);
    let bit = "0000000000000400";
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("CapInh:\t{bit}"),
            format!("CapPrm:\t{bit}"),
            format!("CapEff:\t{bit}"),
            format!("CapBnd:\t{bit}"),
            format!("CapAmb:\t{bit}")
        ]
    );
}

#[test]
fn stdin_pipe_for_helpers() {
    if !is_root() {
        return;
    }
    let w = workload("/bin/sh", &["-c", "read line; echo got:$line"]);
    let opts = LaunchOptions { stdin_pipe: true, ..LaunchOptions::default() };
    let s = SandboxConfig {
        seccomp: SeccompChoice::Strict,
        seccomp_allow: strict_extra_for_sh(),
        landlock: LandlockMode::BestEffort,
        ..sandbox()
    };
    let launched = LaunchPlan::with_options(&w, &s, &[], &opts).unwrap().spawn().unwrap();
    let stdin = launched.stdin.as_ref().unwrap();
    rustix::io::write(stdin, b"hello\n").unwrap();
    let out = read_all(&launched.stdout);
    let status = wait(launched.pid);
    assert_eq!(out, "got:hello\n", "status {status:#x}");
    let _ = launched.stderr.as_fd();
}

/// What dash needs beyond `strict`.
fn strict_extra_for_sh() -> Vec<String> {
    ["getppid", "stat", "wait4", "fork", "vfork", "getpgrp", "geteuid", "open", "pipe", "dup2", "fstatfs"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn handoff_rehearsal_reports_failures_without_touching_us() {
    if !is_root() {
        return;
    }
    let mut w = workload("/bin/sh", &["-c", "true"]);
    w.mode = LaunchMode::Handoff;
    w.workdir = "/nonexistent-workdir".into();
    let plan = LaunchPlan::new(&w, &sandbox(), &[]).unwrap();
    let err = plan.exec_in_place().unwrap_err();
    assert_eq!(err.to_string(), "chdir failed: ENOENT (No such file or directory)");
    // We are still root with our capabilities.
    assert!(is_root());
    let mut status = String::new();
    std::fs::File::open("/proc/self/status").unwrap().read_to_string(&mut status).unwrap();
    assert!(status.contains("NoNewPrivs:\t0"), "the test process was changed");
}

#[test]
fn handoff_programs_cannot_kill() {
    let mut w = workload("/bin/sh", &[]);
    w.mode = LaunchMode::Handoff;
    let plan = LaunchPlan::new(&w, &sandbox(), &[]).unwrap();
    let prog = plan.seccomp.as_ref().unwrap();
    assert!(!prog.has_fatal_actions());
    let supervised = LaunchPlan::new(&workload("/bin/sh", &[]), &sandbox(), &[]).unwrap();
    assert!(supervised.seccomp.as_ref().unwrap().has_fatal_actions());
}
