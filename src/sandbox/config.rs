//! `[sandbox]`: how the workload is confined.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{caps, seccomp};
use crate::config::{Section, Validator};

/// Which seccomp profile the workload runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// The built-in default-deny profile for inference servers.
    WorkloadDefault,
    /// The built-in minimal profile for ztinit's helpers.
    Strict,
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
            "none" => SeccompChoice::None,
            path if path.starts_with('/') => SeccompChoice::File(path.to_string()),
            other => {
                return Err(de::Error::custom(format!(
                    "{other:?}: expected \"workload-default\", \"strict\", \"none\" or the absolute path of an OCI/Docker JSON profile"
                )));
            }
        })
    }
}

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
#[serde(default)]
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
#[serde(default)]
pub struct SandboxConfig {
    /// `workload-default`, `strict`, `none` or an absolute path to an
    /// OCI/Docker JSON profile in the image.
    pub seccomp: SeccompChoice,
    /// Extra system calls the built-in profile allows (e.g. `pidfd_getfd`
    /// for CUDA IPC). Kill-listed calls cannot be allowed.
    pub seccomp_allow: Vec<String>,
    /// Install the filter with SECCOMP_FILTER_FLAG_LOG (denials are audited).
    pub seccomp_log: bool,
    pub landlock: LandlockMode,
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
    /// Capabilities the workload keeps (default none).
    pub capabilities: Vec<String>,
    pub rlimits: RlimitConfig,
    /// Written to /proc/self/oom_score_adj in the child (PID 1 itself runs at
    /// -1000, which the workload must not inherit).
    pub oom_score_adj: i32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seccomp: SeccompChoice::WorkloadDefault,
            seccomp_allow: Vec::new(),
            seccomp_log: true,
            landlock: LandlockMode::Required,
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

/// Device nodes every workload may use, plus the NVIDIA ones when present.
pub const DEFAULT_DEVICES: &[&str] =
    &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/nvidia*", "/dev/nvidia-caps/*"];

/// Largest accepted OCI profile.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;

impl SandboxConfig {
    /// Capabilities kept, as a mask (validated at load).
    pub fn capability_mask(&self) -> u64 {
        caps::mask(&self.capabilities).unwrap_or(0)
    }
}

/// Imports and compiles a user profile as the launch would (offline: every
/// `minKernel` counts as satisfied), recording the first problem.
fn check_profile(v: &mut Validator<'_>, path: &str, bytes: &[u8], capabilities: u64) {
    let ctx = seccomp::oci::ImportContext { capabilities, kernel: None };
    let compiled = |p: seccomp::Profile| seccomp::check_launchable(&p).and_then(|()| seccomp::compile(&p));
    match seccomp::oci::import(path, bytes, ctx).map(compiled) {
        Err(e) => v.error("seccomp", e),
        Ok(Err(e)) => v.error("seccomp", e),
        Ok(Ok(_)) => {}
    }
}

impl Section for SandboxConfig {
    fn validate(&self, v: &mut Validator<'_>) {
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
        for (i, name) in self.seccomp_allow.iter().enumerate() {
            let key = format!("seccomp_allow[{i}]");
            if seccomp::syscalls::number(name).is_none() {
                v.error(&key, format!("{name:?} is not an x86_64 system call"));
            } else if seccomp::builtin::KILL_LIST.contains(&name.as_str()) {
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

    fn load_with(text: &str, files: &dyn crate::config::Files) -> Result<Config, Vec<String>> {
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
        let issues = load("[sandbox]\nseccomp = \"relaxed\"\n").unwrap_err();
        assert!(issues[0].contains("sandbox.seccomp: \"relaxed\": expected"), "{issues:?}");
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
