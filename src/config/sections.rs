//! The `[boot]` section, owned by the config stage itself. Every other
//! section lives beside its stage (`workload` in `sandbox`, `network` in
//! `net`, `kbs`, `tee`, ...).

use serde::Deserialize;

use crate::power::OnExit;
use crate::schema::{Section, Validator};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// Console and kmsg log level (`ztinit.log=` may override it).
    pub log_level: LogLevel,
    /// What the VM does once the workload has ended.
    pub on_exit: OnExit,
    /// Grace period between SIGTERM and SIGKILL for what is left at shutdown.
    pub shutdown_timeout_ms: u64,
    /// Hostname set early in boot.
    pub hostname: Option<String>,
    /// Test images only: report the outcome through QEMU's isa-debug-exit
    /// device (port 0xf4) instead of powering off.
    pub isa_debug_exit: bool,
    /// Kernel parameters this image accepts beyond the built-in allowlist
    /// (`crate::kernel_params`): `name` (any value) or `name=value`.
    pub allowed_kernel_params: Vec<String>,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            on_exit: OnExit::Poweroff,
            shutdown_timeout_ms: 5_000,
            hostname: None,
            isa_debug_exit: false,
            allowed_kernel_params: Vec::new(),
        }
    }
}

impl Section for BootConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.range("shutdown_timeout_ms", self.shutdown_timeout_ms, 0, 600_000);
        if let Some(h) = &self.hostname {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                v.error("hostname", format!("{h:?} is not a valid hostname (1-64 of a-z, 0-9, '-', '.')"));
            }
        }
        for (i, message) in crate::kernel_params::validate_extension(&self.allowed_kernel_params) {
            v.error(&format!("allowed_kernel_params[{i}]"), message);
        }
    }
}
