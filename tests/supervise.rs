//! The supervise loop, tested in-process as a child subreaper.
//!
//! signalfd only sees signals that are blocked in every thread, so this test
//! has its own single-threaded `main` (harness = false) that blocks signals
//! first and then runs each case in order.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ztinit::config::WorkloadConfig;
use ztinit::power::Outcome;
use ztinit::sandbox::{LaunchPlan, Launched, SandboxConfig};
use ztinit::supervise::{self, Scope, Supervisor};

#[derive(Clone, Default)]
struct Console(Rc<RefCell<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

fn shell(script: &str) -> WorkloadConfig {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    WorkloadConfig {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
        user: uid,
        group: gid,
        workdir: "/".into(),
        ..Default::default()
    }
}

/// The workload runs through the real launch path (seccomp, Landlock, no
/// capabilities); the shell tools it uses are made executable.
fn sandbox() -> SandboxConfig {
    let mut sandbox = SandboxConfig { executable: vec!["/usr".into(), "/bin".into()], ..Default::default() };
    // Below any hard limit: the machine running the tests may lack
    // CAP_SYS_RESOURCE, which PID 1 in the guest has.
    sandbox.rlimits.nofile = ztinit::sandbox::config::Limit(1024);
    sandbox.rlimits.memlock = ztinit::sandbox::config::Limit(64 << 10);
    sandbox
}

fn launch(cfg: &WorkloadConfig) -> Result<Launched, ztinit::sandbox::SandboxError> {
    LaunchPlan::new(cfg, &sandbox(), &[])?.spawn()
}

struct Run {
    outcome: Outcome,
    console: String,
    reaped_others: usize,
    elapsed: Duration,
}

fn run(script: &str, shutdown: Duration, before: impl FnOnce(&mut Supervisor)) -> Run {
    let spawned = launch(&shell(script)).expect("spawn");
    let console = Console::default();
    let mut sup =
        Supervisor::new(spawned.pid, Scope::WorkloadGroup, shutdown, Box::new(console.clone())).expect("supervisor");
    sup.add_output(spawned.stdout, "workload: ");
    sup.add_output(spawned.stderr, "workload: ");
    before(&mut sup);
    let start = Instant::now();
    let outcome = sup.run();
    Run { outcome, console: console.text(), reaped_others: sup.reaped_others(), elapsed: start.elapsed() }
}

fn no_children_left() -> bool {
    let mut status = 0;
    // SAFETY: non-blocking waitpid with a valid status pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
    pid < 0
}

fn spawn_helper(script: &str) -> libc::pid_t {
    launch(&shell(script)).expect("helper").pid
}

fn exit_status_and_output_are_reported() {
    let r = run("echo hello; echo oops >&2; exit 3", Duration::from_secs(1), |_| {});
    assert_eq!(r.outcome, Outcome::Exited(3));
    assert!(r.console.contains("workload: hello\n"), "{}", r.console);
    assert!(r.console.contains("workload: oops\n"), "{}", r.console);
    assert!(no_children_left());
}

fn signal_deaths_are_reported() {
    let r = run("kill -KILL $$", Duration::from_secs(1), |_| {});
    assert_eq!(r.outcome, Outcome::Signaled(libc::SIGKILL));
    assert!(no_children_left());
}

fn orphans_are_reaped_while_the_workload_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "for i in 1 2 3; do (sleep 0.1 & echo $! >> {p}); done; sleep 1; \
         n=0; for p in $(cat {p}); do [ -e /proc/$p ] && n=$((n+1)); done; echo zombies=$n; exit 0",
        p = pids.display()
    );
    let r = run(&script, Duration::from_secs(1), |_| {});
    assert_eq!(r.outcome, Outcome::Exited(0));
    assert!(r.console.contains("workload: zombies=0\n"), "{}", r.console);
    assert_eq!(std::fs::read_to_string(&pids).unwrap().lines().count(), 3);
    assert!(r.reaped_others >= 3, "reaped {}", r.reaped_others);
    assert!(no_children_left());
}

fn forwarded_signals_reach_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!(
        "(trap 'echo child > {d}/c; exit 0' USR1; while :; do sleep 0.05; done) & child=$!; \
         trap 'echo parent > {d}/p; wait $child; exit 5' USR1; \
         while :; do sleep 0.05; done"
    );
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let r = run(&script, Duration::from_secs(2), |_| {
        spawn_helper(&format!("sleep 0.5; kill -USR1 {me}"));
    });
    assert_eq!(r.outcome, Outcome::Exited(5), "{}", r.console);
    assert!(dir.path().join("p").exists(), "parent did not get SIGUSR1");
    assert!(dir.path().join("c").exists(), "child in the group did not get SIGUSR1");
    assert!(no_children_left());
}

fn stubborn_leftovers_get_sigkill_after_the_deadline() {
    let r = run("(trap '' TERM; sleep 5) & sleep 0.1; exit 0", Duration::from_millis(300), |_| {});
    assert_eq!(r.outcome, Outcome::Exited(0));
    assert!(r.elapsed < Duration::from_secs(3), "took {:?}", r.elapsed);
    assert!(no_children_left());
}

fn a_dying_helper_stops_the_workload_and_is_fatal() {
    let r = run("sleep 10", Duration::from_secs(1), |sup| {
        let helper = spawn_helper("sleep 0.2; exit 4");
        sup.watch(helper, "nvidia-persistenced");
    });
    assert_eq!(r.outcome, Outcome::Fatal);
    assert!(r.elapsed < Duration::from_secs(5), "took {:?}", r.elapsed);
    assert!(no_children_left());
}

fn a_failing_exec_names_the_step() {
    let mut cfg = shell("true");
    cfg.path = "/nonexistent/program".into();
    let msg = launch(&cfg).expect_err("must fail").to_string();
    assert!(msg.contains("/nonexistent/program"), "{msg}");
    let mut cfg = shell("true");
    cfg.workdir = "/nonexistent-dir".into();
    let msg = launch(&cfg).expect_err("must fail").to_string();
    assert!(msg.contains("chdir"), "{msg}");
    assert!(no_children_left());
}

fn the_environment_is_exactly_the_configured_one() {
    // SAFETY: setting a variable in this single-threaded test process.
    unsafe { std::env::set_var("HOST_CONTROLLED", "leak") };
    let r = run("env | sort", Duration::from_secs(1), |_| {});
    assert!(!r.console.contains("HOST_CONTROLLED"), "{}", r.console);
    assert!(r.console.contains("workload: PATH=/usr/bin:/bin\n"), "{}", r.console);
}

fn main() {
    // SAFETY: prctl with constant arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    supervise::block_signals().expect("block signals");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let cases: &[(&str, fn())] = &[
        ("exit_status_and_output_are_reported", exit_status_and_output_are_reported),
        ("signal_deaths_are_reported", signal_deaths_are_reported),
        ("orphans_are_reaped_while_the_workload_runs", orphans_are_reaped_while_the_workload_runs),
        ("forwarded_signals_reach_the_whole_group", forwarded_signals_reach_the_whole_group),
        ("stubborn_leftovers_get_sigkill_after_the_deadline", stubborn_leftovers_get_sigkill_after_the_deadline),
        ("a_dying_helper_stops_the_workload_and_is_fatal", a_dying_helper_stops_the_workload_and_is_fatal),
        ("a_failing_exec_names_the_step", a_failing_exec_names_the_step),
        ("the_environment_is_exactly_the_configured_one", the_environment_is_exactly_the_configured_one),
    ];
    // libtest's flags as `cargo xtask test` passes them: none of these
    // cases is ignored, so `--ignored` runs and lists nothing.
    if flag("--list") {
        if !flag("--ignored") {
            for (name, _) in cases {
                println!("{name}: test");
            }
        }
        return;
    }
    if flag("--ignored") {
        println!("test result: ok. 0 passed");
        return;
    }
    for (name, case) in cases {
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        case();
        println!("ok");
    }
    println!("\ntest result: ok. {} passed", cases.len());
}
