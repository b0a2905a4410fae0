//! `[sandbox]`: how the workload is confined.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{WorkloadConfig, caps, seccomp};
use crate::schema::{Section, Validator};

/// Which seccomp profile the workload runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// The built-in default-deny profile for inference servers.
    WorkloadDefault,
    /// The built-in minimal profile for ztinit's helpers.
    Strict,
    /// The built-in profile for container agents (`profile = "agent"`).
    Agent,
    /// No filter at all (a warning is logged at launch).
    None,
    /// An OCI/Docker JSON profile at this absolute path in the image.
    File(String),
}

impl<'de> Deserialize<'de> for SeccompChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "workload-default" => SeccompChoice::WorkloadDefault,
            "strict" => SeccompChoice::Strict,
            "agent" => SeccompChoice::Agent,
            "none" => SeccompChoice::None,
            path if path.starts_with('/') => SeccompChoice::File(path.to_string()),
            other => {
                return Err(de::Error::custom(format!(
                    "{other:?}: expected \"workload-default\", \"strict\", \"agent\", \"none\" or the absolute path of an OCI/Docker JSON profile"
                )));
            }
        })
    }
}

impl SeccompChoice {
    /// The spelling of the configuration file.
    pub fn name(&self) -> &str {
        match self {
            SeccompChoice::WorkloadDefault => "workload-default",
            SeccompChoice::Strict => "strict",
            SeccompChoice::Agent => "agent",
            SeccompChoice::None => "none",
            SeccompChoice::File(path) => path,
        }
    }
}

/// What kind of program the workload is: the defaults of `seccomp`,
/// `landlock` and the kept capabilities follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxProfile {
    /// An inference server: unprivileged user, no capabilities, Landlock,
    /// `workload-default` seccomp.
    #[default]
    Workload,
    /// A container agent (kata-agent): root, [`AGENT_CAPABILITIES`], no
    /// Landlock (it forbids mount(2)), `agent` seccomp. Every difference
    /// from `workload` is reported by `config::weakenings`.
    Agent,
}

/// What a container agent keeps, and why. Containers get their
/// capabilities from this set (a process cannot grant what it lacks), so
/// it includes the OCI default set of a container besides what the agent
/// itself uses. Not kept: CAP_SYS_MODULE (unless listed in `capabilities`
/// with `[lockdown] modules_disabled = false`), CAP_SYS_RAWIO, CAP_SYS_TIME,
/// CAP_BPF, CAP_PERFMON, CAP_SYSLOG, CAP_SYS_PACCT, CAP_MAC_*, CAP_AUDIT_CONTROL,
/// CAP_AUDIT_READ, CAP_LINUX_IMMUTABLE, CAP_IPC_OWNER, CAP_LEASE,
/// CAP_SYS_TTY_CONFIG, CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND,
/// CAP_CHECKPOINT_RESTORE.
#[rustfmt::skip]
pub const AGENT_CAPABILITIES: &[(&str, &str)] = &[
    ("CAP_CHOWN", "container rootfs and volume ownership; OCI default set"),
    ("CAP_DAC_OVERRIDE", "files of any owner in container rootfs and volumes; OCI default set"),
    ("CAP_DAC_READ_SEARCH", "walking container rootfs of any owner"),
    ("CAP_FOWNER", "chmod and utimes on files it does not own; OCI default set"),
    ("CAP_FSETID", "keeping setuid bits when copying into containers; OCI default set"),
    ("CAP_KILL", "signalling container processes of any user; OCI default set"),
    ("CAP_SETGID", "switching to the container's group; OCI default set"),
    ("CAP_SETUID", "switching to the container's user; OCI default set"),
    ("CAP_SETPCAP", "setting the bounding set of container processes; OCI default set"),
    ("CAP_SETFCAP", "file capabilities in container images; OCI default set"),
    ("CAP_NET_BIND_SERVICE", "OCI default set"),
    ("CAP_NET_RAW", "OCI default set"),
    ("CAP_NET_ADMIN", "netlink: interfaces, addresses, routes and ARP entries the runtime hands over"),
    ("CAP_IPC_LOCK", "containers that pin memory (GPU, RDMA)"),
    ("CAP_SYS_CHROOT", "chroot when the rootfs cannot be pivoted; OCI default set"),
    ("CAP_SYS_PTRACE", "opening /proc/PID/ns of container processes to join their namespaces (ptrace(2) itself stays killed)"),
    ("CAP_SYS_ADMIN", "mount, umount, pivot_root, namespaces, setns, sethostname, cgroups"),
    ("CAP_SYS_BOOT", "powering the VM off when the agent, as PID 1, ends"),
    ("CAP_SYS_NICE", "container scheduling policies and CPU affinity"),
    ("CAP_SYS_RESOURCE", "container rlimits and oom_score_adj"),
    ("CAP_MKNOD", "device nodes in containers; OCI default set"),
    ("CAP_AUDIT_WRITE", "OCI default set"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    /// Landlock must be available; the launch fails otherwise.
    #[default]
    Required,
    /// Use Landlock when the kernel has it, warn and go on without it when not.
    BestEffort,
    /// No Landlock ruleset (a warning is logged at launch).
    Off,
}

/// A resource limit: a number or "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub u64);

impl Limit {
    pub const UNLIMITED: Limit = Limit(u64::MAX);
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Limit(n)),
            Raw::S(s) if s == "unlimited" => Ok(Limit::UNLIMITED),
            Raw::S(s) => Err(de::Error::custom(format!("{s:?}: expected a number or \"unlimited\""))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlimitConfig {
    /// RLIMIT_NOFILE (soft = hard).
    pub nofile: Limit,
    /// RLIMIT_MEMLOCK in bytes (soft = hard).
    pub memlock: Limit,
    /// RLIMIT_NPROC; unset keeps the kernel's default.
    pub nproc: Option<Limit>,
}

impl Default for RlimitConfig {
    fn default() -> Self {
        Self { nofile: Limit(65_536), memlock: Limit(64 << 20), nproc: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawSandboxConfig")]
pub struct SandboxConfig {
    /// `workload` (default) or `agent`: the defaults of `seccomp` and
    /// `landlock`, and the capabilities kept besides `capabilities`.
    pub profile: SandboxProfile,
    /// `workload-default`, `strict`, `agent`, `none` or an absolute path to
    /// an OCI/Docker JSON profile in the image. Default: `workload-default`,
    /// or `agent` with `profile = "agent"`.
    pub seccomp: SeccompChoice,
    /// Extra system calls the built-in profile allows (e.g. `pidfd_getfd`
    /// for CUDA IPC). Kill-listed calls cannot be allowed.
    pub seccomp_allow: Vec<String>,
    /// Install the filter with SECCOMP_FILTER_FLAG_LOG (denials are audited).
    pub seccomp_log: bool,
    /// Default `required`, or `off` with `profile = "agent"`.
    pub landlock: LandlockMode,
    /// PR_SET_NO_NEW_PRIVS before exec (default true). `false` lets the
    /// workload (and the containers an agent starts) gain privileges
    /// through setuid programs and file capabilities; the kernel then
    /// installs seccomp and Landlock only with CAP_SYS_ADMIN kept.
    pub no_new_privs: bool,
    /// Readable (files and directories beneath).
    pub read_only: Vec<String>,
    /// Readable and writable, not executable.
    pub read_write: Vec<String>,
    /// Readable and executable. The workload program and its ELF interpreter
    /// are always added.
    pub executable: Vec<String>,
    /// Device nodes opened read-write with ioctls, when present. A trailing
    /// `*` in the last component matches by prefix.
    pub devices: Vec<String>,
    /// Capabilities the workload keeps (default none), in addition to
    /// [`AGENT_CAPABILITIES`] with `profile = "agent"`.
    pub capabilities: Vec<String>,
    pub rlimits: RlimitConfig,
    /// Written to /proc/self/oom_score_adj in the child (PID 1 itself runs at
    /// -1000, which the workload must not inherit).
    pub oom_score_adj: i32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            profile: SandboxProfile::Workload,
            seccomp: SeccompChoice::WorkloadDefault,
            seccomp_allow: Vec::new(),
            seccomp_log: true,
            landlock: LandlockMode::Required,
            no_new_privs: true,
            read_only: vec!["/".into()],
            read_write: vec!["/tmp".into(), "/dev/shm".into()],
            executable: Vec::new(),
            devices: DEFAULT_DEVICES.iter().map(|d| d.to_string()).collect(),
            capabilities: Vec::new(),
            rlimits: RlimitConfig::default(),
            oom_score_adj: 0,
        }
    }
}

/// `[sandbox]` as written: the keys whose default depends on `profile`
/// are optional here and resolved in the conversion.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSandboxConfig {
    profile: SandboxProfile,
    seccomp: Option<SeccompChoice>,
    seccomp_allow: Vec<String>,
    seccomp_log: bool,
    landlock: Option<LandlockMode>,
    no_new_privs: bool,
    read_only: Vec<String>,
    read_write: Vec<String>,
    executable: Vec<String>,
    devices: Vec<String>,
    capabilities: Vec<String>,
    rlimits: RlimitConfig,
    oom_score_adj: i32,
}

impl Default for RawSandboxConfig {
    fn default() -> Self {
        let d = SandboxConfig::default();
        Self {
            profile: d.profile,
            seccomp: None,
            seccomp_allow: d.seccomp_allow,
            seccomp_log: d.seccomp_log,
            landlock: None,
            no_new_privs: d.no_new_privs,
            read_only: d.read_only,
            read_write: d.read_write,
            executable: d.executable,
            devices: d.devices,
            capabilities: d.capabilities,
            rlimits: d.rlimits,
            oom_score_adj: d.oom_score_adj,
        }
    }
}

impl From<RawSandboxConfig> for SandboxConfig {
    fn from(r: RawSandboxConfig) -> Self {
        let (seccomp, landlock) = match r.profile {
            SandboxProfile::Workload => (SeccompChoice::WorkloadDefault, LandlockMode::Required),
            SandboxProfile::Agent => (SeccompChoice::Agent, LandlockMode::Off),
        };
        Self {
            profile: r.profile,
            seccomp: r.seccomp.unwrap_or(seccomp),
            seccomp_allow: r.seccomp_allow,
            seccomp_log: r.seccomp_log,
            landlock: r.landlock.unwrap_or(landlock),
            no_new_privs: r.no_new_privs,
            read_only: r.read_only,
            read_write: r.read_write,
            executable: r.executable,
            devices: r.devices,
            capabilities: r.capabilities,
            rlimits: r.rlimits,
            oom_score_adj: r.oom_score_adj,
        }
    }
}

/// Device nodes every workload may use, plus the NVIDIA ones when present.
pub const DEFAULT_DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/nvidia*", "/dev/nvidia-caps/*"];

/// Largest accepted OCI profile.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;

impl SandboxConfig {
    /// Every capability kept: [`AGENT_CAPABILITIES`] for an agent, then
    /// `capabilities`, without repeats.
    pub fn kept_capabilities(&self) -> Vec<String> {
        let base: &[(&str, &str)] = match self.profile {
            SandboxProfile::Workload => &[],
            SandboxProfile::Agent => AGENT_CAPABILITIES,
        };
        let mut kept: Vec<String> = base.iter().map(|(name, _)| name.to_string()).collect();
        for name in &self.capabilities {
            let canonical = caps::by_name(name).and_then(|n| caps::NAMES.get(n as usize)).map_or(name.as_str(), |c| c);
            if !kept.iter().any(|k| k == canonical) {
                kept.push(canonical.to_string());
            }
        }
        kept
    }

    /// Capabilities kept, as a mask (validated at load).
    pub fn capability_mask(&self) -> u64 {
        caps::mask(&self.kept_capabilities()).unwrap_or(0)
    }

    /// Whether CAP_SYS_MODULE is kept: then the agent profile lets module
    /// loading through (the config requires `[lockdown] modules_disabled =
    /// false` for it).
    pub fn keeps_sys_module(&self) -> bool {
        caps::by_name("CAP_SYS_MODULE").is_some_and(|c| self.capability_mask() & (1 << c) != 0)
    }

    /// The names the built-in profile in use kills, which `seccomp_allow`
    /// cannot allow.
    pub fn kill_list(&self) -> Vec<&'static str> {
        match self.seccomp {
            SeccompChoice::Agent => seccomp::builtin::agent_kill_list(self.keeps_sys_module()),
            _ => seccomp::builtin::KILL_LIST.to_vec(),
        }
    }
}

/// Rules between `[sandbox]` and the other sections, as (key, message).
pub fn cross_check(
    sandbox: &SandboxConfig,
    workload: &WorkloadConfig,
    modules_disabled: bool,
) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    if sandbox.profile == SandboxProfile::Agent {
        for (key, id) in [("workload.user", workload.user), ("workload.group", workload.group)] {
            if id != 0 {
                issues.push((
                    key.to_string(),
                    format!("is {id}: the agent profile runs the agent as root (set user = 0 and group = 0)"),
                ));
            }
        }
    }
    if sandbox.keeps_sys_module() && modules_disabled {
        issues.push((
            "sandbox.capabilities".to_string(),
            "CAP_SYS_MODULE is of no use while [lockdown] modules_disabled = true (the kernel refuses every module)"
                .to_string(),
        ));
    }
    issues
}

/// Imports and compiles a user profile as the launch would (offline: every
/// `minKernel` counts as satisfied), recording the first problem. Silent:
/// the launch logs the skipped foreign names, once.
fn check_profile(v: &mut Validator<'_>, path: &str, bytes: &[u8], capabilities: u64) {
    let ctx = seccomp::oci::ImportContext { capabilities, kernel: None };
    let compiled =
        |i: seccomp::oci::Imported| seccomp::check_launchable(&i.profile).and_then(|()| seccomp::compile(&i.profile));
    match seccomp::oci::import_reporting(path, bytes, ctx).map(compiled) {
        Err(e) => v.error("seccomp", e),
        Ok(Err(e)) => v.error("seccomp", e),
        Ok(Ok(_)) => {}
    }
}

impl Section for SandboxConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.profile == SandboxProfile::Agent {
            if self.landlock != LandlockMode::Off {
                v.error(
                    "landlock",
                    "Landlock forbids mount(2) and pivot_root(2), which a container agent needs: the agent profile \
                     runs with landlock = \"off\"",
                );
            }
            if matches!(self.seccomp, SeccompChoice::WorkloadDefault | SeccompChoice::Strict) {
                v.error(
                    "seccomp",
                    format!(
                        "{:?} kills mount, pivot_root and namespace creation, so no container could start: use \
                         \"agent\" (the default of the agent profile), \"none\" or a JSON profile",
                        self.seccomp.name()
                    ),
                );
            }
        }
        if !self.no_new_privs
            && (self.seccomp != SeccompChoice::None || self.landlock != LandlockMode::Off)
            && !self.kept_capabilities().iter().any(|c| c == "CAP_SYS_ADMIN")
        {
            v.error(
                "no_new_privs",
                "false needs CAP_SYS_ADMIN kept: without no_new_privs the kernel installs a seccomp filter or a \
                 Landlock ruleset only for a process with CAP_SYS_ADMIN",
            );
        }
        match &self.seccomp {
            SeccompChoice::File(path) => {
                if v.absolute_path("seccomp", path)
                    && let Some(bytes) = v.file("seccomp", path, MAX_PROFILE_BYTES as u64)
                {
                    check_profile(v, path, &bytes, self.capability_mask());
                }
                if !self.seccomp_allow.is_empty() {
                    v.error("seccomp_allow", "only applies to the built-in profiles; edit the JSON profile instead");
                }
            }
            SeccompChoice::None if !self.seccomp_allow.is_empty() => {
                v.error("seccomp_allow", "has no effect with seccomp = \"none\"");
            }
            _ => {}
        }
        let kill_list = self.kill_list();
        for (i, name) in self.seccomp_allow.iter().enumerate() {
            let key = format!("seccomp_allow[{i}]");
            if seccomp::syscalls::number(name).is_none() {
                v.error(&key, format!("{name:?} is not an x86_64 system call"));
            } else if kill_list.contains(&name.as_str()) {
                v.error(&key, format!("{name} is on the kill list and cannot be allowed"));
            }
        }
        for (key, list) in [
            ("read_only", &self.read_only),
            ("read_write", &self.read_write),
            ("executable", &self.executable),
            ("devices", &self.devices),
        ] {
            for (i, path) in list.iter().enumerate() {
                let key = format!("{key}[{i}]");
                let plain = path.strip_suffix('*').unwrap_or(path);
                if plain.contains('*') {
                    v.error(&key, format!("{path:?}: only a trailing '*' is supported"));
                } else if key.starts_with("devices") {
                    if !path.starts_with("/dev/") {
                        v.error(&key, format!("{path:?} is not under /dev"));
                    } else {
                        v.absolute_path(&key, plain);
                    }
                } else if path.ends_with('*') {
                    v.error(&key, "patterns are only supported in devices");
                } else {
                    v.absolute_path(&key, path);
                }
            }
        }
        for (i, name) in self.capabilities.iter().enumerate() {
            if caps::by_name(name).is_none() {
                v.error(&format!("capabilities[{i}]"), format!("{name:?} is not a capability name"));
            }
        }
        v.range("rlimits.nofile", self.rlimits.nofile.0, 16, 1 << 30);
        if let Some(Limit(0)) = self.rlimits.nproc {
            v.error("rlimits.nproc", "0 would forbid the workload to exist");
        }
        v.range("oom_score_adj", self.oom_score_adj, -1000, 1000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RootFiles, Sources};

    fn load_with(text: &str, files: &dyn crate::schema::Files) -> Result<Config, Vec<String>> {
        let text = format!("[workload]\npath = \"/bin/w\"\n{text}");
        Config::load(Sources { origin: "/etc/ztinit.toml", text: &text, cmdline: None, files }).map_err(|e| e.issues())
    }

    fn load(text: &str) -> Result<Config, Vec<String>> {
        load_with(text, &crate::config::NoFiles)
    }

    #[test]
    fn defaults() {
        let c = load("").unwrap();
        assert_eq!(c.sandbox.seccomp, SeccompChoice::WorkloadDefault);
        assert_eq!(c.sandbox.landlock, LandlockMode::Required);
        assert_eq!(c.sandbox.read_write, ["/tmp", "/dev/shm"]);
        assert!(c.sandbox.seccomp_log);
    }

    #[test]
    fn full_section() {
        let c = load(
            "[sandbox]\nseccomp = \"/etc/seccomp.json\"\nlandlock = \"best-effort\"\nread_only = [\"/usr\"]\n\
             capabilities = [\"CAP_NET_BIND_SERVICE\"]\noom_score_adj = 500\n\
             [sandbox.rlimits]\nnofile = 1024\nmemlock = \"unlimited\"\nnproc = 512\n",
        )
        .unwrap();
        assert_eq!(c.sandbox.seccomp, SeccompChoice::File("/etc/seccomp.json".into()));
        assert_eq!(c.sandbox.landlock, LandlockMode::BestEffort);
        assert_eq!(c.sandbox.rlimits.memlock, Limit::UNLIMITED);
        assert_eq!(c.sandbox.rlimits.nproc, Some(Limit(512)));
        assert_eq!(c.sandbox.capability_mask(), 1 << 10);
    }

    #[test]
    fn problems_are_located() {
        let issues = load(
            "[sandbox]\nseccomp_allow = [\"ptrace\", \"nosuch\"]\ncapabilities = [\"CAP_NOPE\"]\n\
             read_write = [\"tmp\"]\ndevices = [\"/dev/nv*ia*\", \"/etc/x\"]\noom_score_adj = 2000\n",
        )
        .unwrap_err();
        let want = [
            "/etc/ztinit.toml:4: sandbox.seccomp_allow[0]: ptrace is on the kill list and cannot be allowed",
            "/etc/ztinit.toml:4: sandbox.seccomp_allow[1]: \"nosuch\" is not an x86_64 system call",
            "sandbox.read_write[0]: \"tmp\" must be an absolute path",
            "sandbox.devices[0]: \"/dev/nv*ia*\": only a trailing '*' is supported",
            "sandbox.devices[1]: \"/etc/x\" is not under /dev",
            "sandbox.capabilities[0]: \"CAP_NOPE\" is not a capability name",
            "sandbox.oom_score_adj: 2000 is out of range (-1000..=1000)",
        ];
        for w in want {
            assert!(issues.iter().any(|i| i.contains(w)), "missing {w:?} in {issues:#?}");
        }
        let issues = load("[sandbox]\nprofile = \"agnet\"\nbogus = 1\n").unwrap_err();
        assert!(issues.iter().any(|i| i.contains("sandbox.profile: unknown variant `agnet`")), "{issues:?}");
        assert!(issues.iter().any(|i| i.ends_with("sandbox.bogus: unknown key")), "{issues:?}");
        let issues = load("[sandbox]\nseccomp = \"relaxed\"\n").unwrap_err();
        assert!(issues[0].contains("sandbox.seccomp: \"relaxed\": expected"), "{issues:?}");
    }

    #[test]
    fn the_agent_profile_resolves_its_defaults() {
        let c = load("user = 0\ngroup = 0\n[sandbox]\nprofile = \"agent\"\n").unwrap();
        assert_eq!(c.sandbox.profile, SandboxProfile::Agent);
        assert_eq!(c.sandbox.seccomp, SeccompChoice::Agent);
        assert_eq!(c.sandbox.landlock, LandlockMode::Off);
        assert!(c.sandbox.no_new_privs);
        let kept = c.sandbox.kept_capabilities();
        assert_eq!(kept.len(), AGENT_CAPABILITIES.len());
        for cap in ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_BOOT", "CAP_SETUID", "CAP_SYS_PTRACE"] {
            assert!(kept.iter().any(|k| k == cap), "{cap}");
        }
        for cap in ["CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_TIME", "CAP_SYSLOG"] {
            assert!(!kept.iter().any(|k| k == cap), "{cap}");
        }
        assert!(!c.sandbox.keeps_sys_module());
        // Extra capabilities add to the set, once, by canonical name.
        let c = load(
            "user = 0\ngroup = 0\n[sandbox]\nprofile = \"agent\"\ncapabilities = [\"sys_rawio\", \"CAP_SYS_ADMIN\"]\n\
             no_new_privs = false\nseccomp = \"none\"\n",
        )
        .unwrap();
        assert_eq!(c.sandbox.kept_capabilities().len(), AGENT_CAPABILITIES.len() + 1);
        assert_eq!(c.sandbox.kept_capabilities().last().unwrap(), "CAP_SYS_RAWIO");
        assert!(!c.sandbox.no_new_privs);
        assert_eq!(c.sandbox.seccomp, SeccompChoice::None);
        // The workload profile's defaults are unchanged.
        let c = load("[sandbox]\nprofile = \"workload\"\n").unwrap();
        assert_eq!((&c.sandbox.seccomp, c.sandbox.landlock), (&SeccompChoice::WorkloadDefault, LandlockMode::Required));
        assert!(c.sandbox.kept_capabilities().is_empty());
    }

    #[test]
    fn the_agent_profile_refuses_what_cannot_work() {
        let issues = load(
            "user = 0\ngroup = 0\n[sandbox]\nprofile = \"agent\"\nlandlock = \"required\"\n\
             seccomp = \"workload-default\"\n",
        )
        .unwrap_err();
        let want = [
            "sandbox.landlock: Landlock forbids mount(2) and pivot_root(2)",
            "sandbox.seccomp: \"workload-default\" kills mount, pivot_root and namespace creation",
        ];
        for w in want {
            assert!(issues.iter().any(|i| i.contains(w)), "missing {w:?} in {issues:#?}");
        }
        assert_eq!(issues.len(), 2, "{issues:#?}");
        let issues =
            load("user = 0\ngroup = 0\n[sandbox]\nprofile = \"agent\"\nseccomp_allow = [\"ptrace\", \"keyctl\"]\n")
                .unwrap_err();
        // keyctl is EPERM in the agent profile, so it may be allowed.
        assert_eq!(issues.len(), 1, "{issues:#?}");
        assert!(issues[0].contains("sandbox.seccomp_allow[0]: ptrace is on the kill list"), "{issues:#?}");
        // Cross-section rules: root, and CAP_SYS_MODULE only with modules unlocked.
        let issues = load("[sandbox]\nprofile = \"agent\"\ncapabilities = [\"CAP_SYS_MODULE\"]\n").unwrap_err();
        for w in [
            "workload.user: is 65534: the agent profile runs the agent as root",
            "workload.group: is 65534",
            "sandbox.capabilities: CAP_SYS_MODULE is of no use while [lockdown] modules_disabled = true",
        ] {
            assert!(issues.iter().any(|i| i.contains(w)), "missing {w:?} in {issues:#?}");
        }
        let c = load(
            "user = 0\ngroup = 0\n[sandbox]\nprofile = \"agent\"\ncapabilities = [\"CAP_SYS_MODULE\"]\n\
             seccomp_allow = [\"finit_module\"]\n[lockdown]\nmodules_disabled = false\n",
        )
        .unwrap();
        assert!(c.sandbox.keeps_sys_module());
        assert!(!c.sandbox.kill_list().contains(&"finit_module"));
    }

    #[test]
    fn no_new_privs_off_needs_cap_sys_admin_for_the_filters() {
        let issues = load("[sandbox]\nno_new_privs = false\n").unwrap_err();
        assert!(issues[0].contains("sandbox.no_new_privs: false needs CAP_SYS_ADMIN kept"), "{issues:?}");
        load("[sandbox]\nno_new_privs = false\ncapabilities = [\"CAP_SYS_ADMIN\"]\n").unwrap();
        load("[sandbox]\nno_new_privs = false\nseccomp = \"none\"\nlandlock = \"off\"\n").unwrap();
    }

    #[test]
    fn check_config_compiles_user_profiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/bad.json"),
            "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [{\"names\": [\"reed\"], \"action\": \"SCMP_ACT_ALLOW\"}]\n}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/broken.json"),
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n\"syscalls\": [}\n",
        )
        .unwrap();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seccomp/docker-default.json"),
            dir.path().join("etc/docker.json"),
        )
        .unwrap();
        let files = RootFiles::new(dir.path());
        let issues = load_with("[sandbox]\nseccomp = \"/etc/bad.json\"\n", &files).unwrap_err();
        assert!(
            issues
                .iter()
                .any(|i| i.ends_with("sandbox.seccomp: /etc/bad.json: line 3 column 33: unknown system call \"reed\"")),
            "{issues:#?}"
        );
        let issues = load_with("[sandbox]\nseccomp = \"/etc/broken.json\"\n", &files).unwrap_err();
        assert!(issues.iter().any(|i| i.contains("/etc/broken.json: line 2 column 14: ")), "{issues:#?}");
        std::fs::write(
            dir.path().join("etc/noexec.json"),
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["execve", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let issues = load_with("[sandbox]\nseccomp = \"/etc/noexec.json\"\n", &files).unwrap_err();
        assert!(
            issues
                .iter()
                .any(|i| i.contains("sandbox.seccomp: /etc/noexec.json: execveat is not allowed (Errno(1)): ")),
            "{issues:#?}"
        );
        let issues = load_with("[sandbox]\nseccomp = \"/etc/missing.json\"\n", &files).unwrap_err();
        assert!(issues.iter().any(|i| i.contains("/etc/missing.json: no such file in the image")), "{issues:#?}");
        // The real Docker profile passes (only the workload binary is missing).
        let issues = load_with("[sandbox]\nseccomp = \"/etc/docker.json\"\n", &files).unwrap_err();
        assert!(issues.iter().all(|i| !i.contains("sandbox")), "{issues:#?}");
    }
}
