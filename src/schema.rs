//! The schema machinery every configuration section uses: the [`Section`]
//! trait, the [`Validator`] that records problems with their key, and the
//! located [`Issue`]s they become. It imports no stage module, so every
//! stage can own its section type and the aggregate `config::Config` sits
//! above them all.

use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::files::{open_image_file, under, volatile_tree};

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Cmdline,
    /// The `"ztinit.toml"` entry of the launch's initdata document.
    Initdata,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => f.write_str(p),
            Origin::Cmdline => f.write_str("kernel command line"),
            Origin::Initdata => f.write_str("initdata"),
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

/// The error of a section that is turned into a type as it is read (serde
/// `try_from`): it names the key at fault so the issue is located like a
/// [`Validator`] one. Its text is "key: message"; the loader splits it
/// again when `key` is one of the section's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedError {
    pub key: &'static str,
    pub message: String,
}

impl KeyedError {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.key, self.message) }
    }
}

/// Splits "key: message" back into its parts when `key` is one of `keys`.
pub fn split_keyed<'m>(message: &'m str, keys: &[&str]) -> Option<(&'m str, &'m str)> {
    let (key, rest) = message.split_once(": ")?;
    keys.contains(&key).then_some((key, rest))
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
        under(&self.root, guest_path)
    }
}

impl Files for RootFiles {
    fn read(&self, path: &str, limit: u64) -> FileLookup {
        use std::io::Read;
        let mut bytes = Vec::new();
        match open_image_file(&self.root, path).and_then(|f| f.take(limit).read_to_end(&mut bytes)) {
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

/// A problem found before its line is known.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) origin: PendingOrigin,
    pub(crate) path: String,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PendingOrigin {
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
    pub(crate) fn new(prefix: String, pending: &'a mut Vec<Pending>, files: &'a dyn Files) -> Self {
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

    /// Checks that `path` can name a file of the measured image: not under a
    /// tree the host or the kernel fills at boot (see [`VOLATILE_TREES`]).
    pub fn image_path(&mut self, key: &str, path: &str) -> bool {
        match volatile_tree(path) {
            Some(tree) => {
                self.error(
                    key,
                    format!("{path}: {tree} is not part of the image; referenced files must be baked into it"),
                );
                false
            }
            None => true,
        }
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
        if !self.image_path(key, path) {
            return None;
        }
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
pub trait Section: DeserializeOwned {
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
