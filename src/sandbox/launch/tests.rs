//! The launch path: the order of its steps through a recording double (no
//! root, nothing changes), then against the real kernel in forked children
//! (the test process itself never installs a filter or drops anything).
//! Those need root and are `#[ignore = "needs root: ..."]`: `cargo xtask
//! test` runs them when it is root and names them as skipped otherwise.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsFd;

use super::sys::Recorder;
use super::*;
use crate::sandbox::config::{LandlockMode, RlimitConfig};

/// The tests marked `#[ignore = "needs root: ..."]` run with `--ignored`
/// (`cargo xtask test` does so as root and lists them as skipped
/// otherwise); run without root they fail rather than pass unchecked.
fn require_root() {
    assert!(rustix::process::geteuid().is_root(), "this test needs root: run it as root or leave out --ignored");
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

/// The calls `apply` makes, each named by its system call (and prctl by
/// its option), runs of the same call collapsed to one.
type Applied = Result<(), (Step, u32, i32)>;

fn recorded(plan: &LaunchPlan, until: Until, fail: Option<(&'static str, i32)>) -> (Vec<&'static str>, Applied) {
    let mut sys = Recorder::failing(fail);
    let io = ChildIo { stdin: 10, stdout: Some(11), stderr: Some(12) };
    // SAFETY: the recorder makes no system call.
    let result = unsafe { plan.apply(&mut sys, &io, until) };
    let mut names = sys.calls;
    names.dedup();
    (names, result)
}

const PRIVILEGED: &[&str] = &[
    "setgroups",
    "setresgid",
    "setresuid",
    "capset",
    "PR_CAP_AMBIENT",
    "chdir",
    "PR_SET_NO_NEW_PRIVS",
    "landlock_restrict_self",
    "close_range",
    "seccomp",
    "execveat",
];

#[test]
fn steps_run_in_order() {
    let plan = LaunchPlan::new(&workload("/bin/sh", &[]), &sandbox(), &[]).unwrap();
    assert!(plan.landlock.is_some() && plan.seccomp.is_some(), "{plan:?}");
    let (calls, result) = recorded(&plan, Until::Exec, None);
    let mut want = vec![
        "rt_sigaction",
        "rt_sigprocmask",
        "setsid",
        "dup2",
        "prlimit64",
        "openat",
        "write",
        "close",
        "PR_CAPBSET_DROP",
    ];
    want.extend(PRIVILEGED);
    assert_eq!(calls, want);
    // The recorder's execveat "returns": reported as the exec step failing.
    assert_eq!(result, Err((Step::Execveat, 0, 0)));
}

#[test]
fn handoff_keeps_the_session_and_the_rehearsal_stops_before_seccomp() {
    let mut w = workload("/bin/sh", &[]);
    w.mode = LaunchMode::Handoff;
    let plan = LaunchPlan::new(&w, &sandbox(), &[]).unwrap();
    let (calls, _) = recorded(&plan, Until::ExecInPlace, None);
    assert!(!calls.contains(&"setsid"), "{calls:?}");
    assert_eq!(calls[calls.len() - PRIVILEGED.len()..], *PRIVILEGED);
    let (calls, result) = recorded(&plan, Until::BeforeSeccomp, None);
    assert_eq!(result, Ok(()));
    assert_eq!(calls.last(), Some(&"close_range"));
    assert!(calls.contains(&"setsid"));
}

#[test]
fn kept_capabilities_survive_the_uid_change() {
    // PR_SET_KEEPCAPS before setresuid, ambient raise after the clear.
    let s = SandboxConfig { capabilities: vec!["CAP_NET_BIND_SERVICE".into()], ..sandbox() };
    let plan = LaunchPlan::new(&workload("/bin/sh", &[]), &s, &[]).unwrap();
    let (calls, _) = recorded(&plan, Until::Exec, None);
    let from = calls.iter().position(|c| *c == "setgroups").unwrap();
    assert_eq!(
        calls[from..from + 7],
        ["setgroups", "setresgid", "PR_SET_KEEPCAPS", "setresuid", "capset", "PR_CAP_AMBIENT", "chdir"]
    );
}

#[test]
fn a_failing_step_stops_the_launch_and_is_named() {
    let plan = LaunchPlan::new(&workload("/bin/sh", &[]), &sandbox(), &[]).unwrap();
    let (calls, result) = recorded(&plan, Until::Exec, Some(("setresuid", libc::EPERM)));
    assert_eq!(result, Err((Step::Setresuid, 0, libc::EPERM)));
    assert_eq!(calls.last(), Some(&"setresuid"), "nothing runs after the failure");
    assert_eq!(
        step_error(Step::Setresuid, 0, libc::EPERM).to_string(),
        "setresuid failed: EPERM (Operation not permitted)"
    );
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn workload_runs_confined() {
    require_root();
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn workload_is_session_leader_and_gets_only_its_env() {
    require_root();
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn failing_steps_are_named() {
    require_root();
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn seccomp_kill_list_kills_the_workload_not_us() {
    require_root();
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn keeping_a_capability_for_a_non_root_user() {
    require_root();
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn stdin_pipe_for_helpers() {
    require_root();
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
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn handoff_rehearsal_reports_failures_without_touching_us() {
    require_root();
    let mut w = workload("/bin/sh", &["-c", "true"]);
    w.mode = LaunchMode::Handoff;
    w.workdir = "/nonexistent-workdir".into();
    let plan = LaunchPlan::new(&w, &sandbox(), &[]).unwrap();
    let err = plan.exec_in_place().unwrap_err();
    assert_eq!(err.to_string(), "chdir failed: ENOENT (No such file or directory)");
    // We are still root with our capabilities.
    assert!(rustix::process::geteuid().is_root());
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

/// The handoff path in a forked child standing in for PID 1: the program
/// it execs must keep the caller's session and process group (the kernel's
/// init has session 0; kata-agent's own `setsid()` fails with EPERM once
/// its caller leads a group).
#[test]
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn handoff_does_not_make_the_caller_a_session_leader() {
    require_root();
    let mut w = workload("/bin/cat", &["/proc/self/stat"]);
    w.mode = LaunchMode::Handoff;
    let plan = LaunchPlan::new(&w, &sandbox(), &[]).unwrap();
    let (r, wr) = pipe().unwrap();
    // SAFETY: the child only dup2s, runs the handoff (raw system calls on
    // memory prepared before the fork) and execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: fd manipulation in the child.
        unsafe { libc::dup2(wr.as_raw_fd(), 1) };
        let _ = plan.exec_in_place();
        // SAFETY: ends the child without unwinding into the test harness.
        unsafe { libc::_exit(99) }
    }
    drop(wr);
    let out = read_all(&r);
    let status = wait(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}, output {out:?}");
    // pid (comm) state ppid pgrp session ...
    let fields: Vec<&str> = out.rsplit(") ").next().unwrap().split(' ').collect();
    let (pgrp, session) = (fields[2].parse::<i32>().unwrap(), fields[3].parse::<i32>().unwrap());
    // SAFETY: plain queries of our own ids.
    let (our_pgrp, our_sid) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
    assert_eq!((pgrp, session), (our_pgrp, our_sid), "the handed-off program got a session of its own");
    assert_ne!(session, pid, "the handed-off program leads a session");
}

#[test]
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn no_new_privs_can_be_left_off_with_cap_sys_admin() {
    require_root();
    let w = workload("/bin/sh", &["-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"]);
    let s = SandboxConfig { no_new_privs: false, capabilities: vec!["CAP_SYS_ADMIN".into()], ..sandbox() };
    let launched = LaunchPlan::new(&w, &s, &[]).unwrap().spawn().unwrap();
    let out = read_all(&launched.stdout);
    wait(launched.pid);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["NoNewPrivs:\t0", "Seccomp:\t2"]);
}

/// The `agent` filter as a forked child (root, CAP_SYS_ADMIN, no
/// Landlock): mounting in a new mount namespace works, where
/// `workload-default` kills both calls. (The full agent capability set is
/// checked in the guest by kata-agent-handoff: a test container may lack
/// some of it.)
#[test]
#[ignore = "needs root: forks a child that changes its uid, gid and capabilities"]
fn the_agent_filter_lets_a_process_mount_in_a_new_namespace() {
    require_root();
    let unshare = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("unshare(1) (util-linux) is installed");
    let mut w = workload(
        "/bin/sh",
        &[
            "-c",
            &format!(
                "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
                 {unshare} -m sh -c 'mount -t tmpfs none /tmp && echo mounted'"
            ),
        ],
    );
    (w.user, w.group, w.supplementary_groups) = (0, 0, Vec::new());
    let s = SandboxConfig {
        seccomp: SeccompChoice::Agent,
        landlock: LandlockMode::Off,
        capabilities: vec!["CAP_SYS_ADMIN".into()],
        ..sandbox()
    };
    let launched = LaunchPlan::new(&w, &s, &[]).unwrap().spawn().unwrap();
    let out = read_all(&launched.stdout);
    let err = read_all(&launched.stderr);
    let status = wait(launched.pid);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["CapEff:\t0000000000200000", "NoNewPrivs:\t1", "Seccomp:\t2", "mounted"],
        "status {status:#x}, stderr {err}"
    );
}

#[test]
fn an_image_workload_pivots_into_its_root_before_dropping_privileges() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/app"), b"\x7fELF").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("bin/escape")).unwrap();
    let opts = LaunchOptions { new_root: Some(root.clone()), ..LaunchOptions::default() };
    let s = SandboxConfig { landlock: LandlockMode::Off, ..sandbox() };
    let plan = LaunchPlan::with_options(&workload("/bin/app", &[]), &s, &[], &opts).unwrap();
    let (calls, result) = recorded(&plan, Until::Exec, None);
    let from = calls.iter().position(|c| *c == "unshare").expect("unshare");
    assert_eq!(calls[from..from + 7], ["unshare", "mount", "chroot", "chdir", "pivot_root", "umount2", "chdir"]);
    let drop_at = calls.iter().position(|c| *c == "PR_CAPBSET_DROP").unwrap();
    assert!(from < drop_at, "pivot before the capabilities go: {calls:?}");
    assert_eq!(calls.last(), Some(&"execve"), "an image program is executed by its path in the root");
    assert_eq!(result, Err((Step::Execveat, 1, 0)));
    // Resolved inside the root: an absolute symlink stays in it (and
    // finds nothing there), a host program is not the image's.
    for path in ["/bin/escape", "/bin/sh"] {
        let err = LaunchPlan::with_options(&workload(path, &[]), &s, &[], &opts).unwrap_err();
        assert!(err.to_string().contains(path), "{err}");
    }
    // The step that failed is named.
    let (_, result) = recorded(&plan, Until::Exec, Some(("pivot_root", libc::EINVAL)));
    assert_eq!(result, Err((Step::PivotRoot, 2, libc::EINVAL)));
}

/// The child's stack has a guard page below it (an overflow faults
/// instead of writing into PID 1's memory) and the rest is read-write.
#[test]
fn the_child_stack_has_a_guard_page_below() {
    let stack = ChildStack::new().unwrap();
    let base = stack.base as usize;
    let top = stack.top() as usize;
    assert_eq!(top - base, CHILD_STACK_BYTES + GUARD_BYTES);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let perms_at = |addr: usize| {
        maps.lines()
            .find_map(|l| {
                let (range, rest) = l.split_once(' ')?;
                let (lo, hi) = range.split_once('-')?;
                let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
                (lo <= addr && addr < hi).then(|| rest[..4].to_string())
            })
            .unwrap()
    };
    assert_eq!(perms_at(base), "---p");
    assert_eq!(perms_at(base + GUARD_BYTES), "rw-p");
    assert_eq!(perms_at(top - 1), "rw-p");
}
