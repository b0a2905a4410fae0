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

    /// Kills or signals the caller.
    pub fn is_fatal(self) -> bool {
        matches!(self, Action::KillProcess | Action::KillThread | Action::Trap)
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

/// Errors building or compiling a profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("{profile}: rule for {syscall}: {reason}")]
    BadRule { profile: String, syscall: String, reason: String },
    #[error("{profile}: compiled program has {len} instructions, the kernel accepts at most 4096")]
    TooLarge { profile: String, len: usize },
    #[error("{profile}: {reason}")]
    Backend { profile: String, reason: String },
}

#[cfg(test)]
mod kernel_tests;
