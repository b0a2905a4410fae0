//! The `[workload]` section: what runs, as whom, and how it is started.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::schema::{Section, Validator};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMode {
    /// ztinit stays PID 1, supervises the workload and powers off after it.
    #[default]
    Supervise,
    /// ztinit execs the workload as PID 1 after the same setup.
    Handoff,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadConfig {
    /// Absolute path of the program.
    pub path: String,
    /// Arguments after argv[0].
    pub args: Vec<String>,
    /// The complete environment; nothing of PID 1's (host-controlled)
    /// environment is passed on.
    pub env: BTreeMap<String, String>,
    /// Numeric user and group the workload runs as.
    pub user: u32,
    pub group: u32,
    pub supplementary_groups: Vec<u32>,
    /// Working directory.
    pub workdir: String,
    pub mode: LaunchMode,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            user: 65534,
            group: 65534,
            supplementary_groups: Vec::new(),
            workdir: "/".into(),
            mode: LaunchMode::Supervise,
        }
    }
}

impl Section for WorkloadConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if !self.path.is_empty()
            && v.absolute_path("path", &self.path)
            && let Some(bytes) = v.file_head("path", &self.path, 4)
            && !bytes.starts_with(b"\x7fELF")
        {
            v.error("path", format!("{} is not an ELF executable", self.path));
        }
        v.absolute_path("workdir", &self.workdir);
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                v.error(&format!("args[{i}]"), "contains a NUL byte");
            }
        }
        for (k, val) in &self.env {
            let key_ok = !k.is_empty() && !k.contains('=') && !k.contains('\0');
            if !key_ok || val.contains('\0') {
                v.error(
                    &format!("env.{k}"),
                    "environment names must be non-empty without '=' or NUL; values without NUL",
                );
            }
            if k == crate::secrets::CREDENTIALS_ENV {
                v.error(&format!("env.{k}"), "is set by ztinit when secrets are delivered");
            }
        }
        if self.supplementary_groups.len() > 64 {
            v.error("supplementary_groups", "at most 64 groups");
        }
    }
}

/// What a launch starts, borrowed from its source: the `[workload]`
/// section ([`WorkloadConfig::process`]) or a program ztinit starts of its
/// own (the GPU helper), so no code has to dress up as configuration.
#[derive(Debug, Clone, Copy)]
pub struct Process<'a> {
    pub path: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub user: u32,
    pub group: u32,
    pub supplementary_groups: &'a [u32],
    pub workdir: &'a str,
    pub mode: LaunchMode,
}

impl WorkloadConfig {
    pub fn process(&self) -> Process<'_> {
        Process {
            path: &self.path,
            args: &self.args,
            env: &self.env,
            user: self.user,
            group: self.group,
            supplementary_groups: &self.supplementary_groups,
            workdir: &self.workdir,
            mode: self.mode,
        }
    }
}
