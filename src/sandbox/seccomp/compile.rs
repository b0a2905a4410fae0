//! Profile → one classic BPF program.
//!
//! `seccompiler` builds filters with a single match action and a single
//! mismatch action. A profile has rules with several actions, so it is split
//! in groups, one per action, each compiled by seccompiler as "match → that
//! action, otherwise allow", and a last base group "any rule's syscall (and
//! arguments) → allow, otherwise the default action". The groups are chained
//! into one program, most restrictive first: every "allow" exit of a group
//! but the last becomes a jump to the next group. The first group that
//! matches decides, which is exactly the kernel's rule for stacked filters
//! (most restrictive wins), without needing several `seccomp(2)` calls (the
//! second of which the first filter might deny).
//!
//! The program starts with our own prologue: a foreign architecture (i386
//! `int 0x80`) kills the process, and x32 system call numbers (bit 30 set)
//! get ENOSYS, so no profile can be bypassed through another ABI.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch, sock_filter,
};

use super::{Action, Condition, Op, Profile, SeccompError, Width, syscalls};

/// BPF_LD | BPF_W | BPF_ABS.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_KILL_THREAD: u32 = 0;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const BPF_MAX_LEN: usize = 4096;

/// A compiled profile, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Clone)]
pub struct Program {
    /// The profile's name, for messages.
    pub name: String,
    insns: BpfProgram,
    /// SECCOMP_FILTER_FLAG_LOG.
    pub log: bool,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({}, {} instructions)", self.name, self.insns.len())
    }
}

impl Program {
    /// A program read back from its instructions (the image's precompiled
    /// one, `sandbox::precompiled`).
    pub(crate) fn from_parts(name: String, insns: Vec<sock_filter>, log: bool) -> Self {
        Self { name, insns, log }
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    pub fn instructions(&self) -> &[sock_filter] {
        &self.insns
    }

    /// Replaces every kill and trap exit with EPERM. Used in handoff mode,
    /// where the filtered process is PID 1: a seccomp kill of PID 1 panics
    /// the kernel.
    pub fn without_fatal_actions(mut self) -> Self {
        for ins in &mut self.insns {
            if ins.code == BPF_RET_K {
                let action = ins.k & SECCOMP_RET_ACTION_FULL;
                if action == SECCOMP_RET_KILL_PROCESS || action == SECCOMP_RET_KILL_THREAD || action == SECCOMP_RET_TRAP
                {
                    ins.k = SECCOMP_RET_ERRNO | libc::EPERM as u32;
                }
            }
        }
        self
    }

    /// True when a rule of the profile kills or traps (the prologue's kill
    /// of foreign architectures does not count).
    pub fn has_fatal_actions(&self) -> bool {
        self.insns.iter().skip(PROLOGUE_LEN).any(|ins| {
            let action = ins.k & SECCOMP_RET_ACTION_FULL;
            ins.code == BPF_RET_K
                && (action == SECCOMP_RET_KILL_PROCESS
                    || action == SECCOMP_RET_KILL_THREAD
                    || action == SECCOMP_RET_TRAP)
        })
    }
}

/// Length of [`prologue`].
const PROLOGUE_LEN: usize = 6;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn prologue() -> Vec<sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, 4), // seccomp_data.arch
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, 0), // seccomp_data.nr
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

fn condition(profile: &str, nr: i64, c: &Condition) -> Result<SeccompCondition, SeccompError> {
    let width = match c.width {
        Width::Dword => SeccompCmpArgLen::Dword,
        Width::Qword => SeccompCmpArgLen::Qword,
    };
    let op = match c.op {
        Op::Eq => SeccompCmpOp::Eq,
        Op::Ne => SeccompCmpOp::Ne,
        Op::Lt => SeccompCmpOp::Lt,
        Op::Le => SeccompCmpOp::Le,
        Op::Gt => SeccompCmpOp::Gt,
        Op::Ge => SeccompCmpOp::Ge,
        Op::MaskedEq(mask) => SeccompCmpOp::MaskedEq(mask),
    };
    SeccompCondition::new(c.index, width, op, c.value).map_err(|e| bad_rule(profile, nr, e))
}

fn bad_rule(profile: &str, nr: i64, reason: impl std::fmt::Display) -> SeccompError {
    SeccompError::BadRule {
        profile: profile.to_string(),
        syscall: syscalls::name(nr).map_or_else(|| format!("#{nr}"), str::to_string),
        reason: reason.to_string(),
    }
}

/// Per syscall: `None` = matches whatever the arguments, else any of the rules.
type Group = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add_to_group(group: &mut Group, profile: &str, rule: &super::Rule) -> Result<(), SeccompError> {
    if rule.conditions.is_empty() {
        group.insert(rule.syscall, None);
        return Ok(());
    }
    let conds = rule.conditions.iter().map(|c| condition(profile, rule.syscall, c)).collect::<Result<Vec<_>, _>>()?;
    let compiled = SeccompRule::new(conds).map_err(|e| bad_rule(profile, rule.syscall, e))?;
    // `None` means already unconditional: nothing to add.
    if let Some(rules) = group.entry(rule.syscall).or_insert_with(|| Some(Vec::new())) {
        rules.push(compiled);
    }
    Ok(())
}

fn build(profile: &str, group: Group, mismatch: Action, on_match: Action) -> Result<BpfProgram, SeccompError> {
    let rules = group.into_iter().map(|(nr, rules)| (nr, rules.unwrap_or_default())).collect();
    let backend =
        |e: seccompiler::BackendError| SeccompError::Backend { profile: profile.to_string(), reason: e.to_string() };
    let filter = SeccompFilter::new(rules, mismatch.to_seccompiler(), on_match.to_seccompiler(), TargetArch::x86_64)
        .map_err(backend)?;
    let mut program: BpfProgram = filter.try_into().map_err(backend)?;
    // seccompiler starts every filter with its own architecture check; our
    // prologue does that once for the whole program. Nothing jumps to these
    // three instructions (BPF jumps go forward), so they can go.
    let arch_check = [(BPF_LD_W_ABS, 4), (BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64), (BPF_RET_K, SECCOMP_RET_KILL_PROCESS)];
    let starts_with_check =
        program.len() > 3 && program.iter().zip(arch_check).all(|(ins, (code, k))| ins.code == code && ins.k == k);
    if !starts_with_check {
        return Err(SeccompError::Backend {
            profile: profile.to_string(),
            reason: "unexpected program layout from seccompiler".into(),
        });
    }
    program.drain(..3);
    Ok(program)
}

/// Compiles a profile to one program.
pub fn compile(profile: &Profile) -> Result<Program, SeccompError> {
    let name = profile.name.as_str();
    for rule in &profile.rules {
        if rule.syscall < 0 || rule.syscall >= i64::from(X32_SYSCALL_BIT) {
            return Err(bad_rule(name, rule.syscall, "not an x86_64 system call number"));
        }
        if rule.conditions.len() > 6 {
            return Err(bad_rule(name, rule.syscall, "more than 6 argument conditions in one rule"));
        }
        if let Some(c) = rule.conditions.iter().find(|c| c.index > 5) {
            return Err(bad_rule(name, rule.syscall, format!("argument index {} (0..=5)", c.index)));
        }
    }

    // Rules whose action is the default change nothing.
    let effective: Vec<_> = profile.rules.iter().filter(|r| r.action != profile.default).collect();
    let mut actions: Vec<Action> = Vec::new();
    for r in &effective {
        if r.action != Action::Allow && !actions.contains(&r.action) {
            actions.push(r.action);
        }
    }
    actions.sort_by_key(|a| a.precedence());

    let mut groups: Vec<BpfProgram> = Vec::new();
    for action in &actions {
        let mut group = Group::new();
        for r in effective.iter().filter(|r| r.action == *action) {
            add_to_group(&mut group, name, r)?;
        }
        groups.push(build(name, group, Action::Allow, *action)?);
    }
    if profile.default != Action::Allow {
        let mut group = Group::new();
        for r in &effective {
            add_to_group(&mut group, name, r)?;
        }
        groups.push(build(name, group, profile.default, Action::Allow)?);
    }

    let mut insns = prologue();
    let count = groups.len();
    for (i, group) in groups.into_iter().enumerate() {
        let start = insns.len();
        let end = start + group.len();
        for (pc, mut ins) in group.into_iter().enumerate() {
            if i + 1 < count && ins.code == BPF_RET_K && ins.k == SECCOMP_RET_ALLOW {
                // Continue with the next group, which starts right at `end`.
                let offset = end - (start + pc + 1);
                let offset = u32::try_from(offset)
                    .map_err(|_| SeccompError::TooLarge { profile: name.to_string(), len: offset })?;
                ins = stmt(BPF_JMP_JA, offset);
            }
            insns.push(ins);
        }
    }
    if count == 0 {
        insns.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    }
    if insns.len() > BPF_MAX_LEN {
        return Err(SeccompError::TooLarge { profile: name.to_string(), len: insns.len() });
    }
    Ok(Program { name: name.to_string(), insns, log: profile.log })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sandbox::seccomp::Rule;

    /// A classic BPF interpreter for seccomp programs (the subset seccompiler
    /// and our prologue emit), so the compiled program can be checked against
    /// the model without installing anything.
    pub(crate) fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let ins = &prog[pc];
            pc += 1;
            match ins.code {
                0x20 => {
                    let off = ins.k as usize;
                    acc = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap());
                }
                0x54 => acc &= ins.k, // ALU AND K
                0x05 => pc += ins.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let cond = match ins.code {
                        0x15 => acc == ins.k,
                        0x25 => acc > ins.k,
                        0x35 => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += usize::from(if cond { ins.jt } else { ins.jf });
                }
                0x06 => return ins.k,
                other => panic!("unexpected BPF opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    pub(crate) fn ret_of(a: Action) -> u32 {
        u32::from(a.to_seccompiler())
    }

    fn nr(name: &str) -> i64 {
        syscalls::number(name).unwrap()
    }

    fn sample() -> Profile {
        let mut p = Profile::new("test", Action::Errno(38));
        p.add_names(&["read", "write", "clone"], Action::Allow);
        p.add_names(&["ptrace"], Action::KillProcess);
        p.add(
            "clone",
            Action::KillProcess,
            vec![Condition::new(0, Width::Qword, Op::MaskedEq(0x1000_0000), 0x1000_0000)],
        );
        p.add("socket", Action::Allow, vec![Condition::new(0, Width::Dword, Op::Eq, 1)]);
        p.add("socket", Action::Allow, vec![Condition::new(0, Width::Dword, Op::Eq, 2)]);
        p.add("openat", Action::Errno(13), vec![Condition::new(2, Width::Qword, Op::MaskedEq(3), 1)]);
        p.add("openat", Action::Allow, vec![]);
        p.add("getpid", Action::Errno(1), vec![]);
        p.add("getpid", Action::Errno(5), vec![]);
        p
    }

    #[test]
    fn program_agrees_with_model() {
        let p = sample();
        let prog = compile(&p).unwrap();
        let calls: Vec<(&str, [u64; 6])> = vec![
            ("read", [0; 6]),
            ("ptrace", [0; 6]),
            ("clone", [0x11, 0, 0, 0, 0, 0]),
            ("clone", [0x1000_0011, 0, 0, 0, 0, 0]),
            ("socket", [1, 1, 0, 0, 0, 0]),
            ("socket", [2, 1, 0, 0, 0, 0]),
            ("socket", [40, 1, 0, 0, 0, 0]),
            ("socket", [0x1_0000_0001, 1, 0, 0, 0, 0]),
            ("openat", [0, 0, 0, 0, 0, 0]),
            ("openat", [0, 0, 1, 0, 0, 0]),
            ("getpid", [0; 6]),
            ("mount", [0; 6]),
        ];
        for (name, args) in calls {
            let want = p.evaluate(nr(name), args);
            let got = run(prog.instructions(), AUDIT_ARCH_X86_64, u32::try_from(nr(name)).unwrap(), args);
            assert_eq!(got, ret_of(want), "{name} {args:x?}: model says {want:?}");
        }
        assert_eq!(p.evaluate(nr("ptrace"), [0; 6]), Action::KillProcess);
        assert_eq!(p.evaluate(nr("clone"), [0x1000_0011, 0, 0, 0, 0, 0]), Action::KillProcess);
        assert_eq!(p.evaluate(nr("clone"), [0x11, 0, 0, 0, 0, 0]), Action::Allow);
        assert_eq!(p.evaluate(nr("socket"), [0x1_0000_0001, 1, 0, 0, 0, 0]), Action::Allow, "dword compare");
        assert_eq!(p.evaluate(nr("openat"), [0, 0, 1, 0, 0, 0]), Action::Errno(13));
        assert_eq!(p.evaluate(nr("getpid"), [0; 6]), Action::Errno(1), "lower errno wins");
        assert_eq!(p.evaluate(nr("mount"), [0; 6]), Action::Errno(38));
    }

    #[test]
    fn foreign_abis_are_refused() {
        let prog = compile(&sample()).unwrap();
        const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
        assert_eq!(run(prog.instructions(), AUDIT_ARCH_I386, 3, [0; 6]), SECCOMP_RET_KILL_PROCESS);
        let x32_read = X32_SYSCALL_BIT;
        assert_eq!(run(prog.instructions(), AUDIT_ARCH_X86_64, x32_read, [0; 6]), SECCOMP_RET_ERRNO | 38);
    }

    #[test]
    fn allow_by_default_profile_only_denies_listed() {
        let mut p = Profile::new("deny", Action::Allow);
        p.add_names(&["mount"], Action::Errno(1));
        let prog = compile(&p).unwrap();
        assert_eq!(
            run(prog.instructions(), AUDIT_ARCH_X86_64, u32::try_from(nr("mount")).unwrap(), [0; 6]),
            SECCOMP_RET_ERRNO | 1
        );
        assert_eq!(
            run(prog.instructions(), AUDIT_ARCH_X86_64, u32::try_from(nr("read")).unwrap(), [0; 6]),
            SECCOMP_RET_ALLOW
        );
        let empty = compile(&Profile::new("empty", Action::Allow)).unwrap();
        assert_eq!(run(empty.instructions(), AUDIT_ARCH_X86_64, 0, [0; 6]), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn handoff_programs_never_kill() {
        let prog = compile(&sample()).unwrap();
        assert!(prog.has_fatal_actions());
        let tame = prog.without_fatal_actions();
        assert!(!tame.has_fatal_actions());
        assert_eq!(
            run(tame.instructions(), AUDIT_ARCH_X86_64, u32::try_from(nr("ptrace")).unwrap(), [0; 6]),
            SECCOMP_RET_ERRNO | 1
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let mut p = Profile::new("bad", Action::Errno(1));
        p.rules.push(Rule {
            syscall: nr("read"),
            action: Action::Allow,
            conditions: vec![Condition::new(6, Width::Qword, Op::Eq, 0)],
        });
        let err = compile(&p).unwrap_err();
        assert_eq!(err.to_string(), "bad: rule for read: argument index 6 (0..=5)");
    }
}
