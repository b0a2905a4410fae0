//! The one typed, validated configuration of a boot.
//!
//! Sources, in order: the baked TOML file (`/etc/ztinit.toml`, measured as
//! part of the initramfs), then `ztinit.*` kernel parameters, which may only
//! set the harmless knobs listed in [`cmdline::KNOBS`]. Every section is
//! deserialised on its own so that one bad section does not hide the errors
//! of another; unknown keys of a section (or of an array section's entries)
//! are all collected rather than stopping at the first; tables nested
//! deeper refuse theirs one at a time.
//! Each problem becomes an [`Issue`] naming origin, line and key.

pub mod cmdline;
mod locate;
pub mod overlay;
mod sections;
mod weakenings;

use std::path::Path;

pub use crate::files::{
    MAX_REFERENCED_FILE_BYTES, VOLATILE_TREES, open_image_file, read_capped, read_image_file, volatile_tree,
};
pub use crate::net::{NetworkConfig, NetworkMode};
pub use crate::power::OnExit;
pub use crate::sandbox::{LaunchMode, WorkloadConfig};
pub use crate::schema::{
    ConfigError, FileLookup, Files, Issue, KeyedError, NoFiles, Origin, RootFiles, Section, Validator,
};
use crate::schema::{Pending, PendingOrigin};
pub use sections::{BootConfig, LogLevel};
pub use weakenings::{log_weakenings, weakenings};

/// Where the baked configuration lives in the image.
pub const DEFAULT_PATH: &str = "/etc/ztinit.toml";
/// Larger baked configurations are refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `boot.isa_debug_exit` read from a configuration that failed validation,
/// as long as it is still well-formed TOML: it only decides how the failed
/// boot ends (QEMU debug exit instead of power-off), never anything else.
pub fn peek_isa_debug_exit(path: &Path) -> bool {
    let Ok(bytes) = read_capped(path, MAX_CONFIG_BYTES) else { return false };
    let Ok(table) = String::from_utf8_lossy(&bytes).parse::<toml::Table>() else { return false };
    table.get("boot").and_then(|b| b.get("isa_debug_exit")).and_then(toml::Value::as_bool).unwrap_or(false)
}

/// The keys of a top-level section (`None`: not a section, or a section
/// that is an array and so one value).
pub fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    SECTION_KEYS.iter().find(|(name, _)| *name == section).and_then(|(_, keys)| keys())
}

/// True when `path` (`section` or `section.key[.deeper]`) names a key of the
/// schema. Keys below a map-valued key (`gpu.measurements.10`) count as that key's.
pub fn is_known_key(path: &str) -> bool {
    let mut parts = path.split('.');
    let Some(section) = parts.next() else { return false };
    if !SECTIONS.contains(&section) {
        return false;
    }
    match (parts.next(), section_keys(section)) {
        (None, _) => true,
        (Some(key), Some(keys)) => keys.contains(&key),
        (Some(_), None) => false,
    }
}

macro_rules! config_sections {
    (
        first: { $($(#[$fdoc:meta])* $fname:ident : $fty:ty),* $(,)? }
        then: { $($(#[$doc:meta])* $name:ident : $ty:ty),* $(,)? }
    ) => {
        /// The validated configuration of one boot.
        #[derive(Debug, Clone, Default)]
        pub struct Config {
            $($(#[$fdoc])* pub $fname: $fty,)*
            $($(#[$doc])* pub $name: $ty,)*
        }

        /// Names of the top-level sections, in documentation order.
        pub const SECTIONS: &[&str] = &[$(stringify!($fname),)* $(stringify!($name)),*];

        /// The sections validated first ([`Config::from_table_then`]): the
        /// log level, the network, and the KBS client with the TEE policy
        /// it needs. Issues are sorted by line in the end, so this order
        /// never shows in a report.
        pub const FIRST_SECTIONS: &[&str] = &[$(stringify!($fname)),*];

        /// Each section's keys, read from its type.
        #[allow(clippy::type_complexity)]
        const SECTION_KEYS: &[(&str, fn() -> Option<&'static [&'static str]>)] = &[
            $((stringify!($fname), overlay::struct_fields::<$fty>),)*
            $((stringify!($name), overlay::struct_fields::<$ty>)),*
        ];

        fn build(
            mut table: toml::Table,
            pending: &mut Vec<Pending>,
            files: &dyn Files,
            first_ready: &mut dyn FnMut(&Config),
        ) -> Config {
            let mut config = Config::default();
            $(
                if let Some(value) = table.remove(stringify!($fname))
                    && let Some(section) = parse_section::<$fty>(stringify!($fname), value, pending, files)
                {
                    config.$fname = section;
                }
            )*
            if pending.is_empty() {
                first_ready(&config);
            }
            $(
                if let Some(value) = table.remove(stringify!($name))
                    && let Some(section) = parse_section::<$ty>(stringify!($name), value, pending, files)
                {
                    config.$name = section;
                }
            )*
            for key in table.keys() {
                pending.push(Pending {
                    origin: PendingOrigin::File,
                    path: key.clone(),
                    message: format!("unknown section or key (known sections: {})", SECTIONS.join(", ")),
                });
            }
            config
        }
    };
}

config_sections! {
    first: {
        /// Logging, exit behaviour, shutdown timing.
        boot: BootConfig,
        /// Guest networking.
        network: NetworkConfig,
        /// Accepted TEE kinds and evidence policy. Absent: no TEE is required
        /// unless `[kbs]` is configured (then the defaults apply).
        tee: Option<crate::tee::TeeConfig>,
        /// The Key Broker Service.
        kbs: crate::kbs::KbsConfig,
    }
    then: {
        /// The program to run once the guest is trusted.
        workload: WorkloadConfig,
        /// Resources delivered to the workload as files.
        secrets: Vec<crate::kbs::SecretConfig>,
        /// Encrypted, integrity-protected volumes.
        volumes: crate::volume::Volumes,
        /// Confidential GPUs.
        gpu: crate::gpu::GpuConfig,
        /// Kernel modules to load.
        modules: crate::modules::ModulesConfig,
        /// Kernel hardening before launch.
        lockdown: crate::lockdown::LockdownConfig,
        /// Workload sandbox (seccomp, Landlock, capabilities).
        sandbox: crate::sandbox::SandboxConfig,
        /// A container image as the workload (pulled, verified, unpacked).
        image: crate::image::ImageConfig,
    }
}

/// Only what needs the section's type is generic: this runs for a dozen
/// types in a size-budgeted PID 1.
fn parse_section<T: Section>(
    name: &str,
    mut value: toml::Value,
    pending: &mut Vec<Pending>,
    files: &dyn Files,
) -> Option<T> {
    take_unknown_keys(name, overlay::entry_fields::<T>(), &mut value, pending);
    // Deserializing consumes the value: only an array section keeps a copy,
    // for the error path to find the failing entry.
    let entries = match &value {
        toml::Value::Array(items) => Some(items.clone()),
        _ => None,
    };
    match T::deserialize(value) {
        Ok(section) => {
            let mut v = Validator::new(name.to_string(), pending, files);
            section.validate(&mut v);
            Some(section)
        }
        Err(e) => {
            let fails = |item: &toml::Value| T::deserialize(toml::Value::Array(vec![item.clone()])).is_err();
            report_section_error(name, entries.as_deref(), &e, overlay::struct_fields::<T>(), &fails, pending);
            None
        }
    }
}

/// One pending issue for a section that did not deserialize. `fails` tells
/// whether one entry of an array section alone fails.
#[inline(never)]
fn report_section_error(
    name: &str,
    entries: Option<&[toml::Value]>,
    error: &toml::de::Error,
    fields: Option<&'static [&'static str]>,
    fails: &dyn Fn(&toml::Value) -> bool,
    pending: &mut Vec<Pending>,
) {
    let (mut message, mut keys) = split_toml_error(&error.to_string());
    if keys.is_none()
        && let Some((key, rest)) = fields.and_then(|fields| crate::schema::split_keyed(&message, fields))
    {
        (keys, message) = (Some(key.to_string()), rest.to_string());
    }
    // A nested table's unknown key (`deny_unknown_fields`): named like the
    // section-level ones.
    if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
        keys = Some(match keys {
            Some(k) => format!("{k}.{field}"),
            None => field.to_string(),
        });
        message = "unknown key".into();
    }
    let mut path = name.to_string();
    // toml names the keys but not the array index: find the entry.
    if let Some(i) = entries.and_then(|items| items.iter().position(fails)) {
        path.push_str(&format!("[{i}]"));
    }
    if let Some(keys) = keys {
        path.push('.');
        path.push_str(&keys);
    }
    pending.push(Pending { origin: PendingOrigin::File, path, message });
}

/// Removes the keys of a section's table (or of each table of an array
/// section) that its type does not have (`fields`), each reported as
/// unknown: every unknown key is reported, not only the first, and the rest
/// of the section is still checked. Tables below that level refuse unknown
/// keys through `deny_unknown_fields` (one at a time).
#[inline(never)]
fn take_unknown_keys(
    name: &str,
    fields: Option<&'static [&'static str]>,
    value: &mut toml::Value,
    pending: &mut Vec<Pending>,
) {
    let Some(fields) = fields else { return };
    let mut strip = |table: &mut toml::Table, prefix: String| {
        let keys: Vec<String> = table.keys().filter(|k| !fields.contains(&k.as_str())).cloned().collect();
        for key in keys {
            table.remove(&key);
            pending.push(Pending {
                origin: PendingOrigin::File,
                path: format!("{prefix}.{key}"),
                message: "unknown key".into(),
            });
        }
    };
    match value {
        toml::Value::Table(table) => strip(table, name.to_string()),
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                if let toml::Value::Table(table) = item {
                    strip(table, format!("{name}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

/// toml's value errors read "MESSAGE\nin `a.b`": the message and the keys.
fn split_toml_error(text: &str) -> (String, Option<String>) {
    let mut lines = text.lines();
    let message = lines.next().unwrap_or(text).trim().to_string();
    let keys = lines
        .find_map(|l| l.trim().strip_prefix("in `").and_then(|k| k.strip_suffix('`')))
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    (message, keys)
}

/// Everything needed to produce a [`Config`].
pub struct Sources<'a> {
    /// Name of the baked file, for messages.
    pub origin: &'a str,
    /// Its text.
    pub text: &'a str,
    /// The kernel command line (`/proc/cmdline`), if any.
    pub cmdline: Option<&'a str>,
    /// Offline access to referenced files.
    pub files: &'a dyn Files,
}

/// Parses the baked text into a table (the first step of [`Config::load`]),
/// so a caller can apply an overlay (initdata) before validation.
pub fn parse_table(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let line = e.span().map(|s| locate::line_of_offset(text, s.start));
        ConfigError::Invalid(vec![Issue {
            origin: Origin::File(origin.to_string()),
            line,
            key: String::new(),
            message: format!("TOML syntax error: {}", e.message()),
        }])
    })
}

/// Reads the baked file of the running system.
pub fn read_baked(path: &Path) -> Result<String, ConfigError> {
    String::from_utf8(read_source(path, MAX_CONFIG_BYTES)?).map_err(|_| ConfigError::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8"),
    })
}

/// Reads the kernel command line of the running system (`/proc/cmdline`).
pub fn read_cmdline(path: &Path) -> Result<String, ConfigError> {
    Ok(String::from_utf8_lossy(&read_source(path, 64 << 10)?).into_owned())
}

fn read_source(path: &Path, max: u64) -> Result<Vec<u8>, ConfigError> {
    read_capped(path, max).map_err(|source| match source.kind() {
        std::io::ErrorKind::InvalidData => ConfigError::TooLarge { path: path.display().to_string(), max },
        _ => ConfigError::Read { path: path.display().to_string(), source },
    })
}

impl Config {
    /// Parses, merges and validates. Returns every problem found.
    pub fn load(src: Sources<'_>) -> Result<Config, ConfigError> {
        let table = parse_table(src.origin, src.text)?;
        Config::from_table(src, table)
    }

    /// Merges the kernel command line into `table` (parsed from
    /// `src.text`, possibly with an overlay applied) and validates.
    pub fn from_table(src: Sources<'_>, table: toml::Table) -> Result<Config, ConfigError> {
        Config::validate(src, table, &[], &mut |_| {})
    }

    /// [`Config::from_table`] that calls `first_ready` with a configuration
    /// of only the [`FIRST_SECTIONS`] as soon as they and the command line
    /// have validated, before the other sections are checked (never when
    /// any of them has a problem): what the boot may start on early. The
    /// result still decides: a problem found afterwards fails it.
    pub fn from_table_then(
        src: Sources<'_>,
        table: toml::Table,
        first_ready: &mut dyn FnMut(&Config),
    ) -> Result<Config, ConfigError> {
        Config::validate(src, table, &[], first_ready)
    }

    /// [`Config::from_table`] for a table that initdata has set
    /// `initdata_keys` of: problems with those keys are reported as
    /// initdata's, not the baked file's.
    pub fn from_table_with_initdata(
        src: Sources<'_>,
        table: toml::Table,
        initdata_keys: &[String],
    ) -> Result<Config, ConfigError> {
        Config::validate(src, table, initdata_keys, &mut |_| {})
    }

    fn validate(
        src: Sources<'_>,
        mut table: toml::Table,
        initdata_keys: &[String],
        first_ready: &mut dyn FnMut(&Config),
    ) -> Result<Config, ConfigError> {
        let from_initdata = |path: &str| {
            initdata_keys.iter().any(|k| path == k || path.strip_prefix(k.as_str()).is_some_and(|r| r.starts_with('.')))
        };
        let mut pending = Vec::new();
        if let Some(cmdline) = src.cmdline {
            for (path, message) in cmdline::apply(&mut table, cmdline) {
                pending.push(Pending { origin: PendingOrigin::Cmdline, path, message: message.to_string() });
            }
        }
        let config = build(table, &mut pending, src.files, first_ready);
        if pending.is_empty() {
            let mut v = Validator::new(String::new(), &mut pending, src.files);
            config.validate_across(&mut v);
        }
        if pending.is_empty() {
            return Ok(config);
        }
        let issues = pending
            .into_iter()
            .map(|p| match p.origin {
                PendingOrigin::File if from_initdata(&p.path) => {
                    Issue { origin: Origin::Initdata, line: None, key: p.path, message: p.message }
                }
                PendingOrigin::File => Issue {
                    origin: Origin::File(src.origin.to_string()),
                    line: locate::line_of(src.text, &p.path),
                    key: p.path,
                    message: p.message,
                },
                PendingOrigin::Cmdline => Issue {
                    origin: Origin::Cmdline,
                    line: None,
                    key: format!("{}{}", cmdline::PREFIX, p.path),
                    message: p.message,
                },
            })
            .collect::<Vec<_>>();
        let mut issues = issues;
        // File order reads best; initdata's and the command line's come last.
        issues
            .sort_by_key(|i| (i.origin == Origin::Initdata, i.origin == Origin::Cmdline, i.line.unwrap_or(usize::MAX)));
        Err(ConfigError::Invalid(issues))
    }

    /// The TEE policy in force: the `[tee]` section, or its defaults when
    /// only `[kbs]` asks for attestation. `None`: no TEE is required.
    pub fn effective_tee(&self) -> Option<crate::tee::TeeConfig> {
        match (&self.tee, self.attestation_configured()) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(crate::tee::TeeConfig::default()),
            (None, false) => None,
        }
    }

    /// The TEE policy that governs initdata in the config stage: the
    /// effective one (so `[kbs]` without `[tee]` still binds HOSTDATA /
    /// MRCONFIGID), unless it turns initdata off.
    pub fn initdata_policy(&self) -> Option<crate::tee::TeeConfig> {
        self.effective_tee().filter(|t| t.initdata != crate::tee::InitdataMode::Off)
    }

    /// True when a KBS is configured.
    pub fn attestation_configured(&self) -> bool {
        self.kbs.is_enabled()
    }

    /// Rules that span sections.
    fn validate_across(&self, v: &mut Validator<'_>) {
        if self.image.is_enabled() {
            if !self.workload.path.is_empty() {
                v.error(
                    "workload.path",
                    "must be left out with [image]: the image names the program (override it with image.entrypoint)",
                );
            }
            if self.workload.mode == crate::sandbox::LaunchMode::Handoff {
                v.error("workload.mode", "\"handoff\" cannot run an image (the image's program is supervised)");
            }
            let needs_kbs = self.image.credentials.is_some() || !self.image.decryption_keys.is_empty();
            if needs_kbs && !self.kbs.is_enabled() {
                v.error("image", "credentials and decryption_keys need [kbs]: they are released by the KBS only");
            }
        } else if self.workload.path.is_empty() {
            v.error("workload.path", "required: the program to run (or an [image])");
        }
        // Over plain HTTP the host answers every request itself: JWE to the
        // guest's public key hides a secret from the host but proves nothing
        // about who sent it, and a forged /attest 200 would set the GPUs ready.
        if self.kbs.server.as_ref().is_some_and(|s| *s.trust() == crate::kbs::KbsTrust::InsecureHttp) {
            let sample_only = self.effective_tee().is_some_and(|t| t.accept == [crate::tee::TeeKind::Sample]);
            if !sample_only {
                v.error(
                    "kbs.insecure_http",
                    "plain HTTP gives no authenticity (the host can answer for the KBS): allowed only on a development image whose [tee] accept = [\"sample\"]",
                );
            }
        }
        for (key, message) in crate::kbs::config::cross_check(&self.kbs, &self.secrets) {
            v.error(&key, message);
        }
        if let Some(tee) = &self.tee {
            for (key, message) in overlay::check_tee_keys(tee) {
                v.error(&key, message);
            }
        }
        for (key, message) in
            crate::sandbox::config::cross_check(&self.sandbox, &self.workload, self.lockdown.modules_disabled)
        {
            v.error(&key, message);
        }
        for (i, vol) in self.volumes.iter().enumerate() {
            if !self.kbs.is_enabled() {
                v.error(&format!("volumes[{i}].key"), "needs [kbs]: volume keys are released by the KBS only");
            }
            if self.secrets.iter().any(|s| s.resource == vol.key) {
                v.error(
                    &format!("volumes[{i}].key"),
                    "is also delivered as a file by [[secrets]]: a volume key stays in memory",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
