//! Import of seccomp profiles in the OCI runtime-spec / Docker JSON format,
//! so operators bring the profiles they already have.
//!
//! Accepted: `defaultAction`, `defaultErrnoRet`, `architectures`, `archMap`,
//! `flags`, and `syscalls` entries with `names` (or the old `name`),
//! `action`, `errnoRet`, `args` (`index`, `value`, `valueTwo`, `op`),
//! `comment`, and Docker's `includes`/`excludes` (`caps`, `arches`,
//! `minKernel`), resolved against the workload's capabilities, x86_64 and the
//! running kernel as Docker does. Everything else is an error naming the line
//! and column (syntax, unknown keys, unknown syscall names, unknown actions
//! or operators) or the entry (`syscalls[3]`): unsupported actions
//! (`SCMP_ACT_NOTIFY`), arguments out of range, a profile without x86_64.
//!
//! Names that exist only on other architectures (`_llseek`, `mmap2`, ...)
//! are skipped, as libseccomp does. Conditions follow runc: the conditions of
//! one entry are ANDed, unless an argument index repeats, in which case each
//! condition is a separate rule (ORed). Values compare as 64-bit.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{Action, Condition, Op, Profile, Rule, Width, syscalls};

/// A syscall name as written in the profile, resolved while parsing so that
/// an unknown name is reported with its line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Native(i64),
    Foreign,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(nr) = syscalls::number(&s) {
            Ok(Name::Native(nr))
        } else if syscalls::is_foreign(&s) {
            Ok(Name::Foreign)
        } else {
            Err(de::Error::custom(format!("unknown system call {s:?}")))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OciAction {
    Kill,
    KillProcess,
    KillThread,
    Trap,
    Errno,
    Trace,
    Allow,
    Log,
}

impl<'de> Deserialize<'de> for OciAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "SCMP_ACT_KILL" => OciAction::Kill,
            "SCMP_ACT_KILL_PROCESS" => OciAction::KillProcess,
            "SCMP_ACT_KILL_THREAD" => OciAction::KillThread,
            "SCMP_ACT_TRAP" => OciAction::Trap,
            "SCMP_ACT_ERRNO" => OciAction::Errno,
            "SCMP_ACT_TRACE" => OciAction::Trace,
            "SCMP_ACT_ALLOW" => OciAction::Allow,
            "SCMP_ACT_LOG" => OciAction::Log,
            "SCMP_ACT_NOTIFY" => {
                return Err(de::Error::custom("SCMP_ACT_NOTIFY is not supported (ztinit runs no seccomp agent)"));
            }
            other => return Err(de::Error::custom(format!("unknown action {other:?}"))),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OciOp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

impl<'de> Deserialize<'de> for OciOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "SCMP_CMP_NE" => OciOp::Ne,
            "SCMP_CMP_LT" => OciOp::Lt,
            "SCMP_CMP_LE" => OciOp::Le,
            "SCMP_CMP_EQ" => OciOp::Eq,
            "SCMP_CMP_GE" => OciOp::Ge,
            "SCMP_CMP_GT" => OciOp::Gt,
            "SCMP_CMP_MASKED_EQ" => OciOp::MaskedEq,
            other => {
                return Err(de::Error::custom(format!("unknown comparison operator {other:?}")));
            }
        })
    }
}

/// An argument index, 0..=5.
#[derive(Debug, Clone, Copy)]
struct ArgIndex(u8);

impl<'de> Deserialize<'de> for ArgIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let i = u64::deserialize(d)?;
        if i > 5 {
            return Err(de::Error::custom(format!("argument index {i} is out of range (0..=5)")));
        }
        Ok(ArgIndex(i as u8))
    }
}

/// An errno value (1..=4095, what SECCOMP_RET_DATA can carry and the kernel
/// returns as an error).
#[derive(Debug, Clone, Copy)]
struct Errno(u16);

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = u64::deserialize(d)?;
        if !(1..=4095).contains(&e) {
            return Err(de::Error::custom(format!("errno {e} is out of range (1..=4095)")));
        }
        Ok(Errno(e as u16))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OciArg {
    index: ArgIndex,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: OciOp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OciFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OciSyscall {
    #[serde(default)]
    names: Option<Vec<Name>>,
    #[serde(default)]
    name: Option<Name>,
    action: OciAction,
    #[serde(default)]
    errno_ret: Option<Errno>,
    #[serde(default)]
    args: Option<Vec<OciArg>>,
    /// Accepted and ignored, as Docker does.
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
    #[serde(default)]
    includes: Option<OciFilter>,
    #[serde(default)]
    excludes: Option<OciFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    /// x86 and x32 are refused by the program prologue whatever this says.
    #[serde(default)]
    #[allow(dead_code)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OciProfile {
    default_action: OciAction,
    #[serde(default)]
    default_errno_ret: Option<Errno>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<OciSyscall>>,
}

/// What `includes`/`excludes` are resolved against.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportContext {
    /// Capabilities the workload keeps (bit n = capability n).
    pub capabilities: u64,
    /// The running kernel's (major, minor); `None` (offline checks) counts
    /// every `minKernel` as satisfied.
    pub kernel: Option<(u32, u32)>,
}

/// A profile that cannot be imported. `position` is "line L column C" for
/// problems found while parsing, or the entry (`syscalls[3].args[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {position}: {message}")]
pub struct ImportError {
    pub file: String,
    pub position: String,
    pub message: String,
}

/// Reads an OCI/Docker seccomp profile.
pub fn import(file: &str, json: &[u8], ctx: ImportContext) -> Result<Profile, ImportError> {
    let err = |position: String, message: String| ImportError { file: file.to_string(), position, message };
    let parsed: OciProfile = serde_json::from_slice(json).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; we lead with it instead.
        let message = message.rsplit_once(" at line ").map_or(message.clone(), |(m, _)| m.to_string());
        err(format!("line {} column {}", e.line(), e.column()), message)
    })?;

    if parsed.listener_path.is_some() || parsed.listener_metadata.is_some() {
        return Err(err("listenerPath".into(), "seccomp notify listeners are not supported".into()));
    }
    if let Some(arches) = &parsed.architectures
        && !arches.is_empty()
        && !arches.iter().any(|a| a == "SCMP_ARCH_X86_64")
    {
        return Err(err("architectures".into(), "the profile does not cover SCMP_ARCH_X86_64".into()));
    }
    if let Some(map) = &parsed.arch_map
        && !map.is_empty()
        && !map.iter().any(|a| a.architecture == "SCMP_ARCH_X86_64")
    {
        return Err(err("archMap".into(), "the profile does not cover SCMP_ARCH_X86_64".into()));
    }
    let mut log = false;
    for (i, flag) in parsed.flags.iter().flatten().enumerate() {
        match flag.as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => log = true,
            // The filter is installed in a single-threaded process.
            "SECCOMP_FILTER_FLAG_TSYNC" => {}
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => {
                return Err(err(
                    format!("flags[{i}]"),
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW would turn off the speculative store bypass mitigation".into(),
                ));
            }
            other => {
                return Err(err(format!("flags[{i}]"), format!("unsupported flag {other:?}")));
            }
        }
    }

    let default =
        action(parsed.default_action, parsed.default_errno_ret).map_err(|m| err("defaultAction".into(), m))?;
    let mut profile = Profile::new(file, default);
    profile.log = log;

    for (i, entry) in parsed.syscalls.iter().flatten().enumerate() {
        let at = |key: &str| format!("syscalls[{i}]{key}");
        if !applies(entry, ctx).map_err(|m| err(at(""), m))? {
            continue;
        }
        let act = action(entry.action, entry.errno_ret).map_err(|m| err(at(".action"), m))?;
        let names: Vec<i64> = entry
            .names
            .iter()
            .flatten()
            .chain(entry.name.iter())
            .filter_map(|n| match n {
                Name::Native(nr) => Some(*nr),
                Name::Foreign => None,
            })
            .collect();
        if entry.names.is_none() && entry.name.is_none() {
            return Err(err(at(""), "has neither \"names\" nor \"name\"".into()));
        }
        let args = entry.args.as_deref().unwrap_or_default();
        let conditions: Vec<Condition> = args
            .iter()
            .map(|a| {
                let op = match a.op {
                    OciOp::Ne => (Op::Ne, a.value),
                    OciOp::Lt => (Op::Lt, a.value),
                    OciOp::Le => (Op::Le, a.value),
                    OciOp::Eq => (Op::Eq, a.value),
                    OciOp::Ge => (Op::Ge, a.value),
                    OciOp::Gt => (Op::Gt, a.value),
                    // libseccomp: value is the mask, valueTwo the datum.
                    OciOp::MaskedEq => (Op::MaskedEq(a.value), a.value_two),
                };
                Condition::new(a.index.0, Width::Qword, op.0, op.1)
            })
            .collect();
        let repeated = conditions.iter().enumerate().any(|(j, c)| conditions[..j].iter().any(|d| d.index == c.index));
        let rule_sets: Vec<Vec<Condition>> =
            if repeated { conditions.into_iter().map(|c| vec![c]).collect() } else { vec![conditions] };
        for nr in names {
            for conds in &rule_sets {
                profile.rules.push(Rule { syscall: nr, action: act, conditions: conds.clone() });
            }
        }
    }
    Ok(profile)
}

fn action(a: OciAction, errno: Option<Errno>) -> Result<Action, String> {
    let eperm = libc::EPERM as u16;
    match (a, errno) {
        (OciAction::Errno, e) => Ok(Action::Errno(e.map_or(eperm, |e| e.0))),
        (OciAction::Trace, e) => Ok(Action::Trace(e.map_or(eperm, |e| e.0))),
        (_, Some(_)) => Err("errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE".into()),
        (OciAction::Kill | OciAction::KillThread, None) => Ok(Action::KillThread),
        (OciAction::KillProcess, None) => Ok(Action::KillProcess),
        (OciAction::Trap, None) => Ok(Action::Trap),
        (OciAction::Allow, None) => Ok(Action::Allow),
        (OciAction::Log, None) => Ok(Action::Log),
    }
}

/// Architecture names that mean x86_64 in Docker (Go) and libseccomp terms.
fn is_our_arch(name: &str) -> bool {
    matches!(name, "amd64" | "x86_64" | "SCMP_ARCH_X86_64")
}

/// Docker's `includes`/`excludes` (moby `profiles/seccomp`): every included
/// capability must be held, none of the excluded ones; the arch must be
/// listed in includes and not in excludes; the kernel at least `minKernel`.
fn applies(entry: &OciSyscall, ctx: ImportContext) -> Result<bool, String> {
    let inc = entry.includes.as_ref();
    let exc = entry.excludes.as_ref();
    let held = |name: &String| -> Result<bool, String> {
        let cap = crate::sandbox::caps::by_name(name).ok_or_else(|| format!("unknown capability {name:?}"))?;
        Ok(ctx.capabilities & (1u64 << cap) != 0)
    };
    if let Some(caps) = inc.and_then(|f| f.caps.as_ref()) {
        for c in caps {
            if !held(c)? {
                return Ok(false);
            }
        }
    }
    if let Some(caps) = exc.and_then(|f| f.caps.as_ref()) {
        for c in caps {
            if held(c)? {
                return Ok(false);
            }
        }
    }
    if let Some(arches) = inc.and_then(|f| f.arches.as_ref())
        && !arches.is_empty()
        && !arches.iter().any(|a| is_our_arch(a))
    {
        return Ok(false);
    }
    if let Some(arches) = exc.and_then(|f| f.arches.as_ref())
        && arches.iter().any(|a| is_our_arch(a))
    {
        return Ok(false);
    }
    if exc.and_then(|f| f.min_kernel.as_ref()).is_some() {
        return Err("excludes.minKernel is not supported".into());
    }
    if let Some(min) = inc.and_then(|f| f.min_kernel.as_ref()) {
        let wanted = parse_kernel(min).ok_or_else(|| format!("minKernel {min:?} is not a MAJOR.MINOR version"))?;
        if let Some(running) = ctx.kernel
            && running < wanted
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// "4.8" or "5.10.0-rc1" → (4, 8).
pub fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_DEFAULT: &[u8] = include_bytes!("../../../tests/data/seccomp/docker-default.json");

    fn nr(name: &str) -> i64 {
        syscalls::number(name).unwrap()
    }

    fn err(json: &str) -> ImportError {
        import("/etc/p.json", json.as_bytes(), ImportContext::default()).unwrap_err()
    }

    #[test]
    fn docker_default_profile_imports() {
        let ctx = ImportContext { capabilities: 0, kernel: Some((6, 12)) };
        let p = import("docker-default.json", DOCKER_DEFAULT, ctx).unwrap();
        assert_eq!(p.default, Action::Errno(1));
        let a = [0u64; 6];
        assert_eq!(p.evaluate(nr("read"), a), Action::Allow);
        assert_eq!(p.evaluate(nr("arch_prctl"), a), Action::Allow, "amd64 include");
        assert_eq!(p.evaluate(nr("ptrace"), a), Action::Allow, "minKernel 4.8 satisfied");
        assert_eq!(p.evaluate(nr("mount"), a), Action::Errno(1), "CAP_SYS_ADMIN not held");
        assert_eq!(p.evaluate(nr("clone3"), a), Action::Errno(38), "clone3 ENOSYS rule");
        assert_eq!(p.evaluate(nr("clone"), [0x11, 0, 0, 0, 0, 0]), Action::Allow);
        assert_eq!(p.evaluate(nr("clone"), [0x1000_0000, 0, 0, 0, 0, 0]), Action::Errno(1));
        assert_eq!(p.evaluate(nr("personality"), [8, 0, 0, 0, 0, 0]), Action::Allow);
        assert_eq!(p.evaluate(nr("personality"), [9, 0, 0, 0, 0, 0]), Action::Errno(1));
        assert_eq!(p.evaluate(nr("get_mempolicy"), a), Action::Errno(1), "CAP_SYS_NICE gated");
        let prog = super::super::compile(&p).unwrap();
        assert!(prog.len() > 300 && prog.len() < 4096, "{}", prog.len());
        assert!(!prog.has_fatal_actions(), "Docker's profile only denies with EPERM/ENOSYS");
    }

    #[test]
    fn docker_default_with_sys_admin_allows_mount() {
        let cap_sys_admin = crate::sandbox::caps::by_name("CAP_SYS_ADMIN").unwrap();
        let ctx = ImportContext { capabilities: 1 << cap_sys_admin, kernel: None };
        let p = import("d.json", DOCKER_DEFAULT, ctx).unwrap();
        assert_eq!(p.evaluate(nr("mount"), [0; 6]), Action::Allow);
        assert_eq!(p.evaluate(nr("clone"), [0x1000_0000, 0, 0, 0, 0, 0]), Action::Allow);
    }

    #[test]
    fn old_kernel_drops_min_kernel_rules() {
        let ctx = ImportContext { capabilities: 0, kernel: Some((4, 4)) };
        let p = import("d.json", DOCKER_DEFAULT, ctx).unwrap();
        assert_eq!(p.evaluate(nr("ptrace"), [0; 6]), Action::Errno(1));
    }

    #[test]
    fn oci_runtime_spec_style_profile() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write", "mmap2"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 2, "value": 3, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"name": "socket", "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socketpair"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]}"#;
        let p = import("p.json", json.as_bytes(), ImportContext::default()).unwrap();
        assert!(p.log);
        assert_eq!(p.default, Action::Errno(38));
        assert_eq!(p.evaluate(nr("kill"), [0; 6]), Action::KillProcess);
        assert_eq!(p.evaluate(nr("openat"), [0, 0, 1, 0, 0, 0]), Action::Errno(13));
        assert_eq!(p.evaluate(nr("openat"), [0, 0, 0, 0, 0, 0]), Action::Errno(38));
        // Repeated index: ORed.
        assert_eq!(p.evaluate(nr("socket"), [2, 0, 0, 0, 0, 0]), Action::Allow);
        // Distinct indices: ANDed.
        assert_eq!(p.evaluate(nr("socketpair"), [1, 1, 0, 0, 0, 0]), Action::Allow);
        assert_eq!(p.evaluate(nr("socketpair"), [1, 2, 0, 0, 0, 0]), Action::Errno(38));
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = err(
            "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [ {\"names\": [\"read\"] \"action\": 1} ]\n}",
        );
        assert_eq!(e.file, "/etc/p.json");
        assert!(e.position.starts_with("line 3 column "), "{e}");
        assert!(e.message.contains("expected"), "{e}");
    }

    #[test]
    fn unknown_syscall_names_position() {
        let e = err(
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n\"syscalls\": [\n {\"names\": [\"read\", \"no_such_call\"], \"action\": \"SCMP_ACT_ALLOW\"}]}",
        );
        assert_eq!(e.position, "line 3 column 35");
        assert_eq!(e.message, "unknown system call \"no_such_call\"");
        assert_eq!(e.to_string(), "/etc/p.json: line 3 column 35: unknown system call \"no_such_call\"");
    }

    #[test]
    fn unsupported_constructs_are_refused() {
        let cases = [
            (r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY is not supported"),
            (r#"{"defaultAction": "SCMP_ACT_ALLOW", "bogus": 1}"#, "unknown field `bogus`"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
                "argument index 6 is out of range",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_SOMETIMES"}]}]}"#,
                "unknown comparison operator",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]}"#,
                "unknown action",
            ),
        ];
        for (json, want) in cases {
            let e = err(json);
            assert!(e.message.contains(want), "{json}: {e}");
            assert!(e.position.starts_with("line 1 column"), "{e}");
        }
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}"#);
        assert_eq!(e.position, "architectures");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}, {"names": ["write"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}"#,
        );
        assert!(e.message.contains("missing field `action`"), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}"#,
        );
        assert_eq!(e.position, "syscalls[0].action");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#);
        assert_eq!(e.position, "flags[0]");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_NOPE"]}}]}"#,
        );
        assert_eq!((e.position.as_str(), e.message.as_str()), ("syscalls[0]", "unknown capability \"CAP_NOPE\""));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("6.12.3-rc1"), Some((6, 12)));
        assert_eq!(parse_kernel("x"), None);
    }
}
