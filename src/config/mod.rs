//! The one typed, validated configuration of a boot.
//!
//! Sources, in order: the baked TOML file (`/etc/ztinit.toml`, measured as
//! part of the initramfs), then `ztinit.*` kernel parameters, which may only
//! set the harmless knobs listed in [`cmdline::KNOBS`]. Every section is
//! deserialised on its own so that one bad section does not hide the errors
//! of another; unknown keys are collected rather than stopping at the first.
//! Each problem becomes an [`Issue`] naming origin, line and key.

pub mod cmdline;
mod locate;
mod sections;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use sections::{BootConfig, LaunchMode, LogLevel, NetworkConfig, NetworkMode, OnExit, WorkloadConfig};

/// Where the baked configuration lives in the image.
pub const DEFAULT_PATH: &str = "/etc/ztinit.toml";
/// Larger baked configurations are refused before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Files referenced by the configuration are read up to this size.
pub const MAX_REFERENCED_FILE_BYTES: u64 = 16 << 20;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Cmdline,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => f.write_str(p),
            Origin::Cmdline => f.write_str("kernel command line"),
        }
    }
}

/// One configuration problem, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub origin: Origin,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("{}", summary(.0))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// Every issue, for callers that print one line each.
    pub fn issues(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn summary(issues: &[Issue]) -> String {
    match issues {
        [] => "invalid configuration".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// Read access to files the configuration references (workload binary,
/// pinned certificates, seccomp profiles...). At boot this is the real root;
/// `check-config` and the image builder point it elsewhere.
pub trait Files {
    /// The first `limit` bytes of the file (all of it when shorter): the
    /// callers decide whether a longer file is an error or only its head
    /// matters (a workload binary may be far larger than any config file).
    fn read(&self, path: &str, limit: u64) -> FileLookup;
}

pub enum FileLookup {
    Found(Vec<u8>),
    Missing,
    /// The file cannot be checked here (e.g. `check-config` without `--root`).
    Unchecked,
    Error(String),
}

/// Files under a root directory (`/` at boot, the staging tree offline).
pub struct RootFiles {
    root: PathBuf,
}

impl RootFiles {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path_of(&self, guest_path: &str) -> PathBuf {
        crate::mount::under(&self.root, guest_path)
    }
}

impl Files for RootFiles {
    fn read(&self, path: &str, limit: u64) -> FileLookup {
        use std::io::Read;
        let mut bytes = Vec::new();
        match std::fs::File::open(self.path_of(path)).and_then(|f| f.take(limit).read_to_end(&mut bytes)) {
            Ok(_) => FileLookup::Found(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileLookup::Missing,
            Err(e) => FileLookup::Error(e.to_string()),
        }
    }
}

/// No file can be checked: references are only checked for form.
pub struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _path: &str, _limit: u64) -> FileLookup {
        FileLookup::Unchecked
    }
}

/// Reads a whole file, refusing files larger than `max` bytes.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// `boot.isa_debug_exit` read from a configuration that failed validation,
/// as long as it is still well-formed TOML: it only decides how the failed
/// boot ends (QEMU debug exit instead of power-off), never anything else.
pub fn peek_isa_debug_exit(path: &Path) -> bool {
    let Ok(bytes) = read_capped(path, MAX_CONFIG_BYTES) else { return false };
    let Ok(table) = String::from_utf8_lossy(&bytes).parse::<toml::Table>() else { return false };
    table.get("boot").and_then(|b| b.get("isa_debug_exit")).and_then(toml::Value::as_bool).unwrap_or(false)
}

/// A problem found before its line is known.
#[derive(Debug, Clone)]
struct Pending {
    origin: PendingOrigin,
    path: String,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PendingOrigin {
    File,
    Cmdline,
}

/// Collects validation problems for one section (or a nested part of it).
pub struct Validator<'a> {
    prefix: String,
    pending: &'a mut Vec<Pending>,
    files: &'a dyn Files,
}

impl<'a> Validator<'a> {
    fn new(prefix: String, pending: &'a mut Vec<Pending>, files: &'a dyn Files) -> Self {
        Self { prefix, pending, files }
    }

    fn join(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (_, true) => self.prefix.clone(),
            (true, false) => key.to_string(),
            (false, false) if key.starts_with('[') => format!("{}{key}", self.prefix),
            (false, false) => format!("{}.{key}", self.prefix),
        }
    }

    /// Records a problem with `key` (relative to this validator; "" is the section itself).
    pub fn error(&mut self, key: &str, message: impl fmt::Display) {
        let path = self.join(key);
        self.pending.push(Pending { origin: PendingOrigin::File, path, message: message.to_string() });
    }

    /// A validator for a nested table.
    pub fn at(&mut self, key: &str) -> Validator<'_> {
        let prefix = self.join(key);
        Validator { prefix, pending: self.pending, files: self.files }
    }

    /// A validator for one entry of an array.
    pub fn index(&mut self, i: usize) -> Validator<'_> {
        let prefix = format!("{}[{i}]", self.prefix);
        Validator { prefix, pending: self.pending, files: self.files }
    }

    /// True when no problem has been recorded anywhere so far.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn range<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.error(key, format!("{value} is out of range ({min}..={max})"));
        }
    }

    /// Checks that `path` is an absolute, normalised guest path.
    pub fn absolute_path(&mut self, key: &str, path: &str) -> bool {
        let ok = path.starts_with('/') && !path.contains('\0') && !path.split('/').any(|c| c == ".." || c == ".");
        if !ok {
            self.error(key, format!("{path:?} must be an absolute path without . or .. components"));
        }
        ok
    }

    /// Reads a referenced file of at most `max` bytes for offline checks.
    /// `None` when it is missing, too large (an error is recorded) or cannot
    /// be checked in this context.
    pub fn file(&mut self, key: &str, path: &str, max: u64) -> Option<Vec<u8>> {
        let bytes = self.file_head(key, path, max.saturating_add(1))?;
        if bytes.len() as u64 > max {
            self.error(key, format!("{path}: larger than {max} bytes"));
            return None;
        }
        Some(bytes)
    }

    /// The first `len` bytes of a referenced file, as [`Validator::file`].
    pub fn file_head(&mut self, key: &str, path: &str, len: u64) -> Option<Vec<u8>> {
        match self.files.read(path, len) {
            FileLookup::Found(bytes) => Some(bytes),
            FileLookup::Missing => {
                self.error(key, format!("{path}: no such file in the image"));
                None
            }
            FileLookup::Unchecked => None,
            FileLookup::Error(e) => {
                self.error(key, format!("{path}: {e}"));
                None
            }
        }
    }
}

/// A top-level section of the configuration.
pub trait Section: DeserializeOwned + Default {
    /// Checks what serde cannot express (ranges, paths, cross-field rules).
    fn validate(&self, _v: &mut Validator<'_>) {}
}

/// An optional section: absent means the feature is not used at all, which
/// is different from "present with defaults".
impl<T: Section> Section for Option<T> {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(section) = self {
            section.validate(v);
        }
    }
}

impl<T: Section> Section for Vec<T> {
    fn validate(&self, v: &mut Validator<'_>) {
        for (i, item) in self.iter().enumerate() {
            item.validate(&mut v.index(i));
        }
    }
}

/// A section whose feature this build does not implement yet: present means
/// refused, never silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotSupported(bool);

impl NotSupported {
    pub fn is_present(&self) -> bool {
        self.0
    }
}

impl<'de> serde::Deserialize<'de> for NotSupported {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml::Value::deserialize(d).map(|_| NotSupported(true))
    }
}

impl Section for NotSupported {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.0 {
            v.error("", "this section is not supported yet by this ztinit build");
        }
    }
}

macro_rules! config_sections {
    ($($(#[$doc:meta])* $name:ident : $ty:ty),* $(,)?) => {
        /// The validated configuration of one boot.
        #[derive(Debug, Clone, Default)]
        pub struct Config {
            $($(#[$doc])* pub $name: $ty,)*
        }

        /// Names of the top-level sections, in documentation order.
        pub const SECTIONS: &[&str] = &[$(stringify!($name)),*];

        fn build(mut table: toml::Table, pending: &mut Vec<Pending>, files: &dyn Files) -> Config {
            let mut config = Config::default();
            $(
                if let Some(value) = table.remove(stringify!($name)) {
                    if let Some(section) = parse_section::<$ty>(stringify!($name), value, pending, files) {
                        config.$name = section;
                    }
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
    /// Logging, exit behaviour, shutdown timing.
    boot: BootConfig,
    /// The program to run once the guest is trusted.
    workload: WorkloadConfig,
    /// Guest networking.
    network: NetworkConfig,
    /// Accepted TEE kinds and evidence policy. Absent: no TEE is required
    /// unless `[kbs]` is configured (then the defaults apply).
    tee: Option<crate::tee::TeeConfig>,
    /// The Key Broker Service.
    kbs: crate::kbs::KbsConfig,
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
}

fn parse_section<T: Section>(
    name: &str,
    value: toml::Value,
    pending: &mut Vec<Pending>,
    files: &dyn Files,
) -> Option<T> {
    let mut unknown = Vec::new();
    let result: Result<T, toml::de::Error> =
        deserialize(value.clone(), &mut |path| unknown.push(ignored_path(name, &path)));
    for path in unknown {
        pending.push(Pending { origin: PendingOrigin::File, path, message: "unknown key".into() });
    }
    match result {
        Ok(section) => {
            let mut v = Validator::new(name.to_string(), pending, files);
            section.validate(&mut v);
            Some(section)
        }
        Err(e) => {
            let (message, keys) = split_toml_error(&e.to_string());
            let mut path = name.to_string();
            // toml names the keys but not the array index: find the entry.
            if let toml::Value::Array(items) = &value
                && let Some(i) = items
                    .iter()
                    .position(|item| deserialize::<T>(toml::Value::Array(vec![item.clone()]), &mut |_| {}).is_err())
            {
                path.push_str(&format!("[{i}]"));
            }
            if let Some(keys) = keys {
                path.push('.');
                path.push_str(&keys);
            }
            pending.push(Pending { origin: PendingOrigin::File, path, message });
            None
        }
    }
}

/// One instantiation per section type (the callback is a trait object), so
/// the retry above costs no extra code in a size-budgeted PID 1.
fn deserialize<T: Section>(
    value: toml::Value,
    unknown: &mut dyn FnMut(serde_ignored::Path<'_>),
) -> Result<T, toml::de::Error> {
    serde_ignored::deserialize(value, unknown)
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

fn ignored_path(section: &str, path: &serde_ignored::Path<'_>) -> String {
    fn walk(p: &serde_ignored::Path<'_>, out: &mut String) {
        use serde_ignored::Path;
        match p {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                out.push('.');
                out.push_str(key);
            }
            Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut out = section.to_string();
    walk(path, &mut out);
    out
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

/// Reads the baked file and the kernel command line of the running system.
pub fn read_system_sources(path: &Path, cmdline_path: &Path) -> Result<(String, String), ConfigError> {
    let read = |p: &Path, max| {
        read_capped(p, max).map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => ConfigError::TooLarge { path: p.display().to_string(), max },
            _ => ConfigError::Read { path: p.display().to_string(), source },
        })
    };
    let text = String::from_utf8(read(path, MAX_CONFIG_BYTES)?).map_err(|_| ConfigError::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8"),
    })?;
    let cmdline = String::from_utf8_lossy(&read(cmdline_path, 64 << 10)?).into_owned();
    Ok((text, cmdline))
}

impl Config {
    /// Parses, merges and validates. Returns every problem found.
    pub fn load(src: Sources<'_>) -> Result<Config, ConfigError> {
        let table = parse_table(src.origin, src.text)?;
        Config::from_table(src, table)
    }

    /// Merges the kernel command line into `table` (parsed from
    /// `src.text`, possibly with an overlay applied) and validates.
    pub fn from_table(src: Sources<'_>, mut table: toml::Table) -> Result<Config, ConfigError> {
        let mut pending = Vec::new();
        if let Some(cmdline) = src.cmdline {
            for (path, message) in cmdline::apply(&mut table, cmdline) {
                pending.push(Pending { origin: PendingOrigin::Cmdline, path, message });
            }
        }
        let config = build(table, &mut pending, src.files);
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
        // File order reads best; command-line issues come last.
        issues.sort_by_key(|i| (i.origin == Origin::Cmdline, i.line.unwrap_or(usize::MAX)));
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

    /// True when a KBS is configured.
    pub fn attestation_configured(&self) -> bool {
        self.kbs.is_enabled()
    }

    /// Rules that span sections.
    fn validate_across(&self, v: &mut Validator<'_>) {
        if self.workload.path.is_empty() {
            v.error("workload.path", "required: the program to run");
        }
        for (key, message) in crate::kbs::config::cross_check(&self.kbs, &self.secrets) {
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
