//! Seccomp profiles: a small model of what a profile says, the built-in
//! profiles, the OCI/Docker JSON import, and the compiler to one classic BPF
//! program (through `seccompiler`).
//!
//! Compilation happens in PID 1 before `fork`; only the workload child (or the
//! process that becomes the workload in handoff mode) installs the program,
//! with one raw `seccomp(2)` call. Nothing here installs a filter.

pub mod builtin;
mod compile;
pub mod oci;
pub mod syscalls;

pub use compile::{Program, compile};

/// What the kernel does with a matching system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    /// Fail with this errno.
    Errno(u16),
    /// Kill the whole process with SIGSYS (audited by the kernel).
    KillProcess,
    /// Kill the calling thread only.
    KillThread,
    /// Send SIGSYS to the calling thread.
    Trap,
    /// Allow, and log.
    Log,
    /// Notify a ptrace tracer (ENOSYS without one).
    Trace(u16),
}

impl Action {
    /// The kernel's precedence: when several filters (or, in our single
    /// program, several rule groups) match, the lowest key wins.
    pub(crate) fn precedence(self) -> (i32, u16) {
        // Values of SECCOMP_RET_* compared as signed, as the kernel does.
        match self {
            Action::KillProcess => (i32::MIN, 0),
            Action::KillThread => (0, 0),
            Action::Trap => (0x0003_0000, 0),
            Action::Errno(e) => (0x0005_0000, e),
            Action::Trace(d) => (0x7ff0_0000, d),
            Action::Log => (0x7ffc_0000, 0),
            Action::Allow => (0x7fff_0000, 0),
        }
    }

    pub(crate) fn to_seccompiler(self) -> seccompiler::SeccompAction {
        use seccompiler::SeccompAction as S;
        match self {
            Action::Allow => S::Allow,
            Action::Errno(e) => S::Errno(u32::from(e)),
            Action::KillProcess => S::KillProcess,
            Action::KillThread => S::KillThread,
            Action::Trap => S::Trap,
            Action::Log => S::Log,
            Action::Trace(d) => S::Trace(u32::from(d)),
        }
    }
}

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// Width of the compared argument: the kernel's `int` arguments are compared
/// on their low 32 bits only, so a caller cannot dodge a check with garbage
/// in the upper half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Dword,
    Qword,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// Argument index, 0..=5.
    pub index: u8,
    pub width: Width,
    pub op: Op,
    pub value: u64,
}

impl Condition {
    pub fn new(index: u8, width: Width, op: Op, value: u64) -> Self {
        Self { index, width, op, value }
    }
}

/// One rule: `action` when the call is `syscall` and every condition holds
/// (no condition: any arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub syscall: i64,
    pub action: Action,
    pub conditions: Vec<Condition>,
}

/// A complete profile. Semantics: a call takes the action of the most
/// restrictive rule that matches it (kernel precedence: kill process, kill
/// thread, trap, errno, trace, log, allow; between two errno rules the lower
/// errno), or `default` when no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// For messages: `workload-default`, `strict` or the file name.
    pub name: String,
    pub default: Action,
    pub rules: Vec<Rule>,
    /// Install with SECCOMP_FILTER_FLAG_LOG: denials other than kills (which
    /// the kernel always audits) are logged too.
    pub log: bool,
}

impl Profile {
    pub fn new(name: &str, default: Action) -> Self {
        Self { name: name.to_string(), default, rules: Vec::new(), log: false }
    }

    /// Adds an unconditional rule for each named x86_64 system call.
    /// Unknown names are a programming error in the built-in tables and are
    /// caught by their unit tests; they are skipped here.
    pub fn add_names(&mut self, names: &[&str], action: Action) {
        for name in names {
            if let Some(nr) = syscalls::number(name) {
                self.rules.push(Rule { syscall: nr, action, conditions: Vec::new() });
            }
        }
    }

    pub fn add(&mut self, name: &str, action: Action, conditions: Vec<Condition>) {
        if let Some(nr) = syscalls::number(name) {
            self.rules.push(Rule { syscall: nr, action, conditions });
        }
    }

    /// The action this profile gives a call, evaluated on the model (used by
    /// tests and by `check-config` explanations; the kernel evaluates the
    /// compiled program).
    pub fn evaluate(&self, nr: i64, args: [u64; 6]) -> Action {
        self.rules
            .iter()
            .filter(|r| r.syscall == nr && r.conditions.iter().all(|c| holds(c, &args)))
            .map(|r| r.action)
            .min_by_key(|a| a.precedence())
            .unwrap_or(self.default)
    }
}

/// `AT_EMPTY_PATH`: how the launch calls execveat on the pre-opened program.
const AT_EMPTY_PATH: u64 = 0x1000;

/// Checks that a profile lets the launch finish once the filter is in
/// place. The child installs the filter and then only calls
/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)` and, if that fails, writes
/// a report and calls `exit_group` (then `exit`). A profile that refuses
/// `execveat` can never start the workload, and one that answers both exit
/// calls with an errno leaves a failed child spinning forever (musl's
/// `_exit` retries), so both are refused before anything is forked.
pub fn check_launchable(p: &Profile) -> Result<(), SeccompError> {
    let call = |name: &str, args: [u64; 6]| syscalls::number(name).map(|nr| p.evaluate(nr, args));
    let exec = call("execveat", [3, 0, 0, 0, AT_EMPTY_PATH, 0]);
    if !matches!(exec, Some(Action::Allow | Action::Log)) {
        return Err(SeccompError::NotLaunchable {
            profile: p.name.clone(),
            reason: format!(
                "execveat is not allowed ({}): ztinit starts the workload with execveat(fd, \"\", argv, envp, \
                 AT_EMPTY_PATH) after installing the filter",
                exec.map_or("unknown".to_string(), |a| format!("{a:?}"))
            ),
        });
    }
    // Killing or trapping ends the process too; an errno does not.
    let ends = |a: Option<Action>| !matches!(a, None | Some(Action::Errno(_) | Action::Trace(_)));
    if !ends(call("exit_group", [127, 0, 0, 0, 0, 0])) && !ends(call("exit", [127, 0, 0, 0, 0, 0])) {
        return Err(SeccompError::NotLaunchable {
            profile: p.name.clone(),
            reason: "neither exit_group nor exit is allowed: a launch that fails after the filter is installed \
                     could never end"
                .to_string(),
        });
    }
    Ok(())
}

fn holds(c: &Condition, args: &[u64; 6]) -> bool {
    let Some(&raw) = args.get(usize::from(c.index)) else {
        return false;
    };
    let low = |v: u64| match c.width {
        Width::Dword => v & 0xffff_ffff,
        Width::Qword => v,
    };
    let (arg, value) = (low(raw), low(c.value));
    match c.op {
        Op::Eq => arg == value,
        Op::Ne => arg != value,
        Op::Lt => arg < value,
        Op::Le => arg <= value,
        Op::Gt => arg > value,
        Op::Ge => arg >= value,
        // seccompiler masks the compared value too.
        Op::MaskedEq(mask) => arg & low(mask) == value & low(mask),
    }
}

/// An errno constant as the 16 bits of SECCOMP_RET_ERRNO data. Errno
/// values are 1..=4095 (the assert makes a wrong constant a compile error
/// where this is evaluated in a const, a panic in a test otherwise).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) const fn errno16(e: i32) -> u16 {
    assert!(e > 0 && e < 4096, "not an errno value");
    e as u16
}

/// Errors building or compiling a profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("{profile}: rule for {syscall}: {reason}")]
    BadRule { profile: String, syscall: String, reason: String },
    #[error("{profile}: compiled program has {len} instructions, the kernel accepts at most 4096")]
    TooLarge { profile: String, len: usize },
    #[error("{profile}: {reason}")]
    Backend { profile: String, reason: String },
    #[error("{profile}: {reason}")]
    NotLaunchable { profile: String, reason: String },
}

#[cfg(test)]
mod kernel_tests;

#[cfg(test)]
mod launchable_tests {
    use super::*;

    fn profile(default: Action, rules: &[(&str, Action)]) -> Profile {
        let mut p = Profile::new("p.json", default);
        for (name, action) in rules {
            p.add_names(&[name], *action);
        }
        p
    }

    #[test]
    fn builtin_and_docker_profiles_can_launch() {
        check_launchable(&builtin::workload_default(&[])).unwrap();
        check_launchable(&builtin::strict(&[])).unwrap();
        let json = include_bytes!("../../../tests/data/seccomp/docker-default.json");
        let docker = oci::import("docker.json", json, oci::ImportContext { capabilities: 0, kernel: None }).unwrap();
        check_launchable(&docker).unwrap();
    }

    #[test]
    fn a_profile_without_execveat_is_refused() {
        // Allows what a program needs, but execve only: ztinit uses execveat.
        let p = profile(
            Action::Errno(1),
            &[
                ("read", Action::Allow),
                ("write", Action::Allow),
                ("execve", Action::Allow),
                ("exit_group", Action::Allow),
            ],
        );
        assert_eq!(
            check_launchable(&p).unwrap_err().to_string(),
            "p.json: execveat is not allowed (Errno(1)): ztinit starts the workload with execveat(fd, \"\", argv, \
             envp, AT_EMPTY_PATH) after installing the filter"
        );
        // Conditions are honoured: execveat allowed only without AT_EMPTY_PATH.
        let mut p = profile(Action::Errno(1), &[("exit_group", Action::Allow)]);
        p.add("execveat", Action::Allow, vec![Condition::new(4, Width::Dword, Op::Eq, 0)]);
        assert!(matches!(check_launchable(&p), Err(SeccompError::NotLaunchable { .. })));
    }

    #[test]
    fn a_profile_that_cannot_exit_is_refused() {
        // A child whose execveat fails would spin in _exit forever.
        let p = profile(Action::Errno(1), &[("execveat", Action::Allow), ("write", Action::Allow)]);
        assert_eq!(
            check_launchable(&p).unwrap_err().to_string(),
            "p.json: neither exit_group nor exit is allowed: a launch that fails after the filter is installed \
             could never end"
        );
        // Being killed ends it too; exit alone is enough.
        for rules in [
            [("execveat", Action::Allow), ("exit_group", Action::KillProcess)],
            [("execveat", Action::Allow), ("exit", Action::Allow)],
        ] {
            check_launchable(&profile(Action::Errno(1), &rules)).unwrap();
        }
        check_launchable(&profile(Action::KillProcess, &[("execveat", Action::Log)])).unwrap();
    }
}
