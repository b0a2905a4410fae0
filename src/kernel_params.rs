//! The kernel command line beyond `ztinit.*`: an allowlist.
//!
//! The host writes the kernel command line, and not every deployment
//! measures it. The kernel acts on it before ztinit runs: `sysctl.*` sets
//! tunables, `lsm=` chooses the security modules, `mitigations=off` turns
//! off CPU protections, `rdinit=` chooses PID 1. So in the config stage
//! every parameter is checked against a fixed list of harmless ones
//! ([`DEFAULT`], documented in docs/sandbox.md, "Kernel command line") plus
//! the image's `[boot] allowed_kernel_params`; anything else stops the boot.
//! An allowlist, not a denylist: an unknown parameter may be a module
//! parameter that weakens something nobody thought of.
//!
//! Words are split as the kernel's `next_arg` does (double quotes group,
//! a leading and a trailing quote are stripped from the value), and names
//! compare with `-` and `_` alike, as the kernel's `parameq` does. `--`
//! ends the kernel's parameters: what follows goes to init as arguments,
//! which ztinit does not take, so anything after `--` is refused too.
//! `ztinit.*` words are left to [`crate::config::cmdline`].

use std::fmt;
use std::path::Path;

/// The prefix of ztinit's own parameters, the knobs `config::cmdline`
/// reads; they are left to it.
pub const ZTINIT_PREFIX: &str = "ztinit.";

/// One word of the command line as the kernel splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// As written (quotes of a fully quoted word removed).
    pub name: String,
    /// After the first `=`, without surrounding quotes; `None` without `=`.
    pub value: Option<String>,
}

impl Param {
    /// The name with `-` as `_`, how the kernel compares names.
    pub fn canonical_name(&self) -> String {
        canonical(&self.name)
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match &self.value {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        };
        f.write_str(&printable(&text))
    }
}

/// The command line split at `--`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// What the kernel parses.
    pub params: Vec<Param>,
    /// What follows `--`: init's arguments.
    pub init_args: Vec<String>,
}

fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Host text for a FATAL line: control characters as `?`, long words cut.
fn printable(s: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = s.chars().take(MAX).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// The kernel's `isspace` (ASCII only).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits `cmdline` as the kernel's `next_arg` (lib/cmdline.c) does: on
/// bytes, as the kernel; every byte it looks at is ASCII, so the slices
/// below stay on character boundaries.
pub fn parse(cmdline: &str) -> CommandLine {
    let bytes = cmdline.as_bytes();
    let mut out = CommandLine::default();
    let mut i = 0;
    let mut after_dashes = false;
    while i < bytes.len() {
        if is_space(bytes[i]) {
            i += 1;
            continue;
        }
        let quoted = bytes[i] == b'"';
        if quoted {
            i += 1;
        }
        let start = i;
        let mut in_quote = quoted;
        let mut equals = None;
        while i < bytes.len() {
            let c = bytes[i];
            if is_space(c) && !in_quote {
                break;
            }
            // As in the kernel: a `=` at the very start does not count.
            if equals.is_none() && c == b'=' && i > start {
                equals = Some(i);
            }
            if c == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        let strip_end = |w: &str| w.strip_suffix('"').map_or(w, |s| s).len();
        let param = match equals {
            None => {
                let mut word = &cmdline[start..i];
                if quoted {
                    word = &word[..strip_end(word)];
                }
                Param { name: word.to_string(), value: None }
            }
            Some(eq) => {
                let mut value = &cmdline[eq + 1..i];
                let value_quoted = value.starts_with('"');
                if value_quoted {
                    value = &value[1..];
                }
                if value_quoted || quoted {
                    value = &value[..strip_end(value)];
                }
                Param { name: cmdline[start..eq].to_string(), value: Some(value.to_string()) }
            }
        };
        if after_dashes {
            out.init_args.push(param.to_string());
        } else if param.value.is_none() && param.name == "--" {
            after_dashes = true;
        } else {
            out.params.push(param);
        }
    }
    out
}

/// Which values an allowed parameter may have.
#[derive(Debug, Clone, Copy)]
pub enum Values {
    /// A bare word, no `=`.
    Flag,
    /// Any value, or none.
    Any,
    /// Exactly one of these.
    OneOf(&'static [&'static str]),
    /// Accepted by the function (its description for messages).
    Check(fn(&str) -> bool, &'static str),
}

impl Values {
    fn accepts(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Values::Flag, v) => v.is_none(),
            (Values::Any, _) => true,
            (Values::OneOf(list), Some(v)) => list.contains(&v),
            (Values::Check(f, _), Some(v)) => f(v),
            (_, None) => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Values::Flag => "without a value".into(),
            Values::Any => "any value".into(),
            Values::OneOf(list) => format!("only ={}", list.join(" or =")),
            Values::Check(_, what) => format!("only {what}"),
        }
    }
}

/// One entry of the built-in allowlist.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// Canonical name (`_` for `-`); with `prefix`, every name starting
    /// with it (`i8042.`).
    pub name: &'static str,
    pub prefix: bool,
    pub values: Values,
    /// Why it cannot weaken the guest (docs/sandbox.md repeats these).
    pub why: &'static str,
}

const fn allow(name: &'static str, values: Values, why: &'static str) -> Allowed {
    Allowed { name, prefix: false, values, why }
}

fn pci_lastbus(v: &str) -> bool {
    v.strip_prefix("lastbus=").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn serial_early_console(v: &str) -> bool {
    v.starts_with("serial") || v.starts_with("ttyS")
}

/// The parameters every image accepts. Each changes only what the host
/// controls anyway (output, vCPUs, devices, timing, what happens after a
/// panic) or what the launch measurement covers (the root disk); none
/// touches a protection. `init=`/`rdinit=` are handled apart: accepted only
/// when they name ztinit itself.
pub const DEFAULT: &[Allowed] = &[
    allow("console", Values::Any, "where the kernel prints; the host reads every console anyway"),
    allow(
        "earlyprintk",
        Values::Check(serial_early_console, "a serial port (serial..., ttyS...)"),
        "early kernel messages on a serial port, which the host reads anyway",
    ),
    allow("loglevel", Values::Any, "how much the kernel prints (the harness uses 4 and 7)"),
    allow("quiet", Values::Flag, "prints less"),
    allow("debug", Values::Flag, "prints more: the same as loglevel=10 (Kata's debug mode)"),
    allow("panic", Values::Any, "what follows a kernel panic (reboot, wait): availability, which the host has anyway"),
    allow("reboot", Values::Any, "how the guest reboots: availability only"),
    allow(
        "ip",
        Values::Any,
        "kernel IP autoconfiguration ([network] mode = \"kernel\"); the network is the host's anyway",
    ),
    allow("tsc", Values::Any, "clocksource choice; the guest never trusts time from the host"),
    allow("no_timer_check", Values::Flag, "skips a timer IRQ sanity check (Kata)"),
    allow("noreplace_smp", Values::Flag, "keeps SMP lock prefixes on a uniprocessor (Kata)"),
    Allowed {
        name: "i8042.",
        prefix: true,
        values: Values::Any,
        why: "probing of the PC keyboard controller, which a VM has no use for (Kata)",
    },
    allow(
        "cryptomgr.notests",
        Values::Flag,
        "skips the crypto self-tests at boot, which catch broken code, not attacks (Kata)",
    ),
    allow("net.ifnames", Values::Any, "read by udev only; the kernel ignores it (Kata)"),
    allow("pci", Values::Check(pci_lastbus, "lastbus=N"), "the last PCI bus to scan (Kata: lastbus=0)"),
    allow("nr_cpus", Values::Any, "how many vCPUs the guest brings up; the host chooses the vCPUs anyway (Kata)"),
    allow("maxcpus", Values::Any, "as nr_cpus"),
    allow("rcupdate.rcu_expedited", Values::Any, "RCU grace-period tuning (Kata)"),
    allow("scsi_mod.scan", Values::Any, "when SCSI devices are scanned (Kata)"),
    allow("selinux", Values::OneOf(&["0"]), "ztinit's kernels build no SELinux and ztinit loads no policy (Kata)"),
    allow(
        "cgroup_no_v1",
        Values::OneOf(&["all"]),
        "keeps cgroup v1 controllers off; ztinit uses cgroup v2 (Kata's qemu-snp default)",
    ),
    allow(
        "initrd",
        Values::OneOf(&["initrd"]),
        "added by OVMF's direct kernel boot for the EFI stub; names the initrd QEMU passed, which the launch measures",
    ),
    allow("root", Values::Any, "the root disk (issue 15: a dm-verity root); what it holds is measured, not this word"),
    allow("rootfstype", Values::Any, "the root disk's filesystem type"),
    allow("ro", Values::Flag, "mounts the root read-only"),
    allow(
        "rootflags",
        Values::OneOf(&["ro"]),
        "mount options of the root disk; only read-only (a Kata-style erofs root), no option that could loosen it",
    ),
    allow(
        "dm_mod.create",
        Values::Any,
        "the dm-verity root device; its root hash must be covered by the launch measurement",
    ),
    allow("dm_mod.waitfor", Values::Any, "devices to wait for before creating dm-mod.create devices"),
];

/// What a weakening parameter does, if `name` (canonical) with `value`
/// (`None`: any value) can weaken the guest. Used to refuse such entries in
/// `[boot] allowed_kernel_params` and to explain refusals at boot; the boot
/// check itself is the allowlist, so this list need not be complete.
pub fn weakens(name: &str, value: Option<&str>) -> Option<&'static str> {
    let name = canonical(name);
    let name = name.as_str();
    // Values that turn the named protection off (`None` for "any value").
    let off = |bad: &[&str]| value.is_none_or(|v| bad.contains(&v));
    let falsy = || off(&["0", "off", "n", "no", "N", "false"]);
    if name.starts_with("sysctl.") || name.starts_with("sysctl/") {
        return Some("sets kernel tunables before ztinit runs (e.g. kernel.core_pattern, randomize_va_space)");
    }
    if name.ends_with(".sig_enforce") {
        return Some("controls module signature enforcement");
    }
    let reason = match name {
        "lsm" | "security" => "chooses which security modules run (can leave out lockdown, Yama, Landlock)",
        "lockdown" => "sets the kernel lockdown level, which ztinit raises from [lockdown] kernel_lockdown",
        "init" | "rdinit" => "chooses the program the kernel starts as PID 1",
        "nokaslr" => "turns off kernel address space randomisation",
        "norandmaps" => "turns off user address space randomisation",
        "mitigations" if off(&["off"]) || value.is_some_and(|v| !["auto", "auto,nosmt"].contains(&v)) => {
            "turns off CPU vulnerability mitigations"
        }
        "nopti"
        | "nospectre_v1"
        | "nospectre_v2"
        | "nospectre_bhb"
        | "nospec_store_bypass_disable"
        | "nosmap"
        | "nosmep"
        | "noibrs"
        | "noibpb" => "turns off a CPU protection",
        "pti"
        | "spectre_v2"
        | "spectre_v2_user"
        | "spectre_bhi"
        | "spec_store_bypass_disable"
        | "l1tf"
        | "mds"
        | "tsx_async_abort"
        | "mmio_stale_data"
        | "retbleed"
        | "srbds"
        | "gather_data_sampling"
        | "spec_rstack_overflow"
        | "reg_file_data_sampling"
        | "kpti"
            if off(&["off", "0"]) =>
        {
            "turns off a CPU vulnerability mitigation"
        }
        "iommu" if off(&["off", "pt", "soft"]) => "turns off or bypasses DMA remapping",
        "intel_iommu" | "amd_iommu" if off(&["off"]) => "turns off DMA remapping",
        "iommu.passthrough" if off(&["1", "on", "y"]) => "bypasses DMA remapping",
        "iommu.strict" if falsy() => "delays IOTLB invalidation (stale DMA mappings)",
        "kgdboc" | "kgdbwait" | "kgdbdbgp" | "ekgdboc" | "kgdbcon" | "kgdb" => "attaches the kernel debugger",
        "no_hash_pointers" => "prints raw kernel pointers (the KASLR offset) on the host's console",
        "hash_pointers" if off(&["never"]) => "prints raw kernel pointers (the KASLR offset) on the host's console",
        "debugfs" if value.is_none_or(|v| v != "off") => "exposes debugfs",
        "iomem" if off(&["relaxed"]) => "lets user space map device memory in use by drivers",
        "mem_encrypt" if off(&["off"]) => "turns off memory encryption",
        "init_on_alloc" | "init_on_free" | "hardened_usercopy" | "randomize_kstack_offset" | "loadpin.enforce"
            if falsy() =>
        {
            "turns off a kernel hardening feature"
        }
        "vsyscall" if value.is_none_or(|v| v != "none") => "maps the legacy vsyscall page (a fixed-address gadget)",
        "module_sig_enforce" => "controls module signature enforcement",
        "ima_appraise" if off(&["off", "fix", "log"]) => "turns off IMA appraisal",
        "sysrq_always_enabled" => "enables every magic SysRq function",
        _ => return None,
    };
    Some(reason)
}

/// A parameter the boot refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The word as the host wrote it (escaped for the console).
    pub param: String,
    pub reason: String,
}

/// Every refused parameter, all named in one FATAL line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct KernelParamError(pub Vec<Refusal>);

impl fmt::Display for KernelParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("kernel command line: ")?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", r.param, r.reason)?;
        }
        Ok(())
    }
}

/// Why an `[boot] allowed_kernel_params` entry may not be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    #[error("{0:?} is not NAME or NAME=VALUE (no spaces, quotes or control characters; the name not empty)")]
    Form(String),
    #[error("{0}: ztinit.* parameters are the knobs of [boot]/[kbs] marked cmdline, checked apart")]
    Ztinit(String),
    #[error("--: what follows it goes to init as arguments, and ztinit takes none")]
    EndOfOptions,
    #[error(
        "{0}: accepted only when it names ztinit itself, which needs no entry here (any other program would run as \
         PID 1 instead of ztinit)"
    )]
    Init(String),
    #[error("{what} can weaken the guest: {reason}; it cannot be allowed")]
    Weakens { what: String, reason: &'static str },
}

/// One `[boot] allowed_kernel_params` entry: `name` (any value) or
/// `name=value` (exactly that value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    name: String,
    value: Option<String>,
}

impl Extension {
    /// Parses and vets an entry; the error says why the image may not allow it.
    pub fn parse(entry: &str) -> Result<Self, ExtensionError> {
        let (name, value) = match entry.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (entry, None),
        };
        let bad_char = |s: &str| s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"');
        if name.is_empty() || bad_char(name) || value.is_some_and(bad_char) {
            return Err(ExtensionError::Form(entry.to_string()));
        }
        let canonical_name = canonical(name);
        if canonical_name.starts_with(ZTINIT_PREFIX) {
            return Err(ExtensionError::Ztinit(name.to_string()));
        }
        if name == "--" {
            return Err(ExtensionError::EndOfOptions);
        }
        if canonical_name == "init" || canonical_name == "rdinit" {
            return Err(ExtensionError::Init(name.to_string()));
        }
        if let Some(reason) = weakens(&canonical_name, value) {
            let what = match value {
                Some(v) => format!("{name}={v}"),
                None => format!("{name} (any value)"),
            };
            return Err(ExtensionError::Weakens { what, reason });
        }
        Ok(Extension { name: canonical_name, value: value.map(str::to_string) })
    }

    fn accepts(&self, name: &str, value: Option<&str>) -> bool {
        self.name == name && (self.value.is_none() || self.value.as_deref() == value)
    }
}

/// What `check` needs of the running system.
pub struct Context<'a> {
    /// The image's `[boot] allowed_kernel_params`, already validated.
    pub extension: &'a [String],
    /// ztinit's own executable (`/proc/self/exe`), for `init=`/`rdinit=`.
    pub self_exe: Option<&'a Path>,
    /// Resolves a guest path (symlinks) for comparing with `self_exe`.
    pub resolve: &'a dyn Fn(&str) -> Option<std::path::PathBuf>,
    /// `[network] mode = "kernel"`: the only mode in which `ip=` may
    /// configure an interface before ztinit runs.
    pub kernel_ip: bool,
}

/// Checks every parameter; `Ok` with the number of parameters accepted.
pub fn check(cmdline: &str, ctx: &Context<'_>) -> Result<usize, KernelParamError> {
    let parsed = parse(cmdline);
    let extension: Vec<Extension> = ctx.extension.iter().filter_map(|e| Extension::parse(e).ok()).collect();
    let mut refused = Vec::new();
    let mut accepted = 0;
    for p in &parsed.params {
        let name = p.canonical_name();
        if name.starts_with(ZTINIT_PREFIX) {
            continue;
        }
        let value = p.value.as_deref();
        let reason = if name == "init" || name == "rdinit" {
            (!names_self(value, ctx)).then(|| {
                let me = ctx.self_exe.map_or("unknown".into(), |e| e.display().to_string());
                format!("names another program than ztinit ({me}): it would run as PID 1 instead")
            })
        } else if let Some(why) = weakens(&name, value) {
            Some(format!("{why}; not accepted on any image"))
        } else if name == "ip" && !ctx.kernel_ip {
            Some(
                "configures a network interface before ztinit runs; accepted only with [network] mode = \"kernel\""
                    .into(),
            )
        } else if DEFAULT.iter().any(|a| matches(a, &name) && a.values.accepts(value))
            || extension.iter().any(|e| e.accepts(&name, value))
        {
            None
        } else if let Some(a) = DEFAULT.iter().find(|a| matches(a, &name)) {
            Some(format!("value not accepted ({} {})", printable(a.name), a.values.describe()))
        } else {
            Some(
                "not on the allowlist of kernel parameters (docs/sandbox.md, \"Kernel command line\"); an image \
                 that needs it lists it in [boot] allowed_kernel_params"
                    .into(),
            )
        };
        match reason {
            Some(reason) => refused.push(Refusal { param: p.to_string(), reason }),
            None => accepted += 1,
        }
    }
    if !parsed.init_args.is_empty() {
        refused.push(Refusal {
            param: format!("-- {}", printable(&parsed.init_args.join(" "))),
            reason: "what follows -- goes to init as arguments, and ztinit takes none".into(),
        });
    }
    if refused.is_empty() { Ok(accepted) } else { Err(KernelParamError(refused)) }
}

fn matches(a: &Allowed, name: &str) -> bool {
    if a.prefix { name.starts_with(a.name) && name.len() > a.name.len() } else { name == a.name }
}

fn names_self(value: Option<&str>, ctx: &Context<'_>) -> bool {
    let (Some(v), Some(me)) = (value, ctx.self_exe) else { return false };
    Path::new(v) == me || (ctx.resolve)(v).is_some_and(|r| r == me)
}

/// Checks a `[boot] allowed_kernel_params` list; (index, message) per bad entry.
pub fn validate_extension(entries: &[String]) -> Vec<(usize, ExtensionError)> {
    entries.iter().enumerate().filter_map(|(i, e)| Extension::parse(e).err().map(|m| (i, m))).collect()
}

#[cfg(test)]
mod tests;
