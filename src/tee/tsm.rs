//! configfs-tsm reports (`/sys/kernel/config/tsm/report`, Linux ≥ 6.7).
//!
//! One request = one fresh report directory: `mkdir` (the kernel creates the
//! attribute files), read `provider`, write exactly 64 bytes of `inblob`,
//! read `outblob` (and `auxblob`), check that `generation` counts exactly our
//! one write (anything else means another writer raced us and the report
//! may not bind our data), and `rmdir` afterwards, also on error.
//!
//! Every file operation goes through [`ConfigFs`] so that tests can stand in
//! for the kernel at exactly this interface; [`RealConfigFs`] is the kernel.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rand_core::{OsRng, RngCore};

/// Where configfs-tsm lives.
pub const DEFAULT_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";
/// `TSM_OUTBLOB_MAX` (include/linux/tsm.h): the kernel refuses larger reports.
pub const OUTBLOB_MAX: usize = 32 << 10;
/// The SNP certificate table: `SEV_FW_BLOB_MAX_SIZE` is 16 KiB; allow slack.
pub const AUXBLOB_MAX: usize = 64 << 10;
/// Both providers require exactly this many bytes of inblob.
pub const INBLOB_LEN: usize = 64;

/// The file operations a report needs, with the kernel's semantics.
pub trait ConfigFs: Send + Sync {
    fn is_dir(&self, path: &Path) -> bool;
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Reads a whole attribute, at most `max + 1` bytes (so the caller can
    /// tell that it is too large).
    fn read(&self, path: &Path, max: usize) -> io::Result<Vec<u8>>;
    /// Writes an attribute in one go and closes it: configfs binary
    /// attributes take the data only when the file is closed.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
}

/// The real configfs.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealConfigFs;

impl ConfigFs for RealConfigFs {
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read(&self, path: &Path, max: usize) -> io::Result<Vec<u8>> {
        let file = std::fs::File::open(path)?;
        let mut buf = Vec::new();
        file.take(max as u64 + 1).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // No O_CREAT: the attribute must exist; creating a regular file
        // would hide a missing provider.
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all(data)?;
        file.flush()
    }
}

/// What configfs-tsm said when asked for its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The report directory does not exist.
    Unavailable,
    /// configfs-tsm exists but no TEE driver registered with it.
    NoProvider,
    /// `sev_guest`, `tdx_guest`, ...
    Provider(String),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Unavailable => f.write_str("configfs-tsm is not available"),
            Probe::NoProvider => f.write_str("configfs-tsm has no report provider"),
            Probe::Provider(p) => write!(f, "configfs-tsm provider is {p}"),
        }
    }
}

/// Why a configfs-tsm report failed. Each errno the kernel uses for a
/// distinct condition gets its own variant and message.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    #[error(
        "not available: {0} is missing (the kernel needs CONFIG_TSM_REPORTS and configfs mounted at /sys/kernel/config)"
    )]
    Unavailable(String),
    #[error("no provider: this guest is not running in a TEE")]
    NoProvider,
    #[error("provider is {found}, expected {expected}")]
    WrongProvider { expected: String, found: String },
    #[error("{0}: the report provider went away during the request")]
    Vanished(String),
    #[error("{0}: busy (EBUSY): a previous request is still in flight or the write generation wrapped")]
    Busy(String),
    #[error("{0}: the provider rejected the request (EINVAL)")]
    Rejected(String),
    #[error("{0}: the TEE firmware or the host failed to produce the report (EIO)")]
    Failed(String),
    #[error("{0}: timed out waiting for the report (ETIMEDOUT): the host quote service did not answer")]
    TimedOut(String),
    #[error("{what}: larger than {max} bytes")]
    TooLarge { what: String, max: usize },
    #[error("{0}: the provider returned an empty report")]
    Empty(String),
    #[error(
        "{dir}: generation is {generation} after our single write: another writer used the same report, so it may not bind our data"
    )]
    Race { dir: String, generation: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The result of one report request.
#[derive(Debug, Clone)]
pub struct Report {
    pub provider: String,
    pub outblob: Vec<u8>,
    /// Empty when the provider has none (TDX) or the host supplied no
    /// certificates (SNP on upstream KVM): both are normal.
    pub auxblob: Vec<u8>,
}

/// A configfs-tsm report directory and the file system that serves it.
pub struct Tsm<'a> {
    pub fs: &'a dyn ConfigFs,
    pub base: &'a Path,
}

impl Tsm<'_> {
    /// Which provider (if any) serves reports. Creates and removes a probe
    /// directory, since `provider` exists only inside a report instance.
    pub fn probe(&self) -> Result<Probe, TsmError> {
        if !self.fs.is_dir(self.base) {
            return Ok(Probe::Unavailable);
        }
        // Without a provider the kernel refuses the mkdir itself (ENXIO from
        // tsm_report_make_item), or, when the provider goes away after it,
        // the read of `provider`.
        let dir = match self.create_instance() {
            Ok(dir) => dir,
            Err(TsmError::NoProvider) => return Ok(Probe::NoProvider),
            Err(e) => return Err(e),
        };
        let result = match self.read_provider(&dir.path) {
            Ok(p) => Ok(Probe::Provider(p)),
            Err(TsmError::NoProvider) => Ok(Probe::NoProvider),
            Err(e) => Err(e),
        };
        drop(dir);
        result
    }

    /// Asks `expected_provider` for a report binding `inblob`.
    pub fn report(
        &self,
        expected_provider: &str,
        inblob: &[u8; INBLOB_LEN],
        want_aux: bool,
    ) -> Result<Report, TsmError> {
        if !self.fs.is_dir(self.base) {
            return Err(TsmError::Unavailable(self.base.display().to_string()));
        }
        let dir = self.create_instance()?;
        let result = self.report_in(&dir.path, expected_provider, inblob, want_aux);
        drop(dir);
        result
    }

    fn report_in(
        &self,
        dir: &Path,
        expected: &str,
        inblob: &[u8; INBLOB_LEN],
        want_aux: bool,
    ) -> Result<Report, TsmError> {
        let provider = self.read_provider(dir)?;
        if provider != expected {
            return Err(TsmError::WrongProvider { expected: expected.to_string(), found: provider });
        }
        let path = dir.join("inblob");
        self.fs.write(&path, inblob).map_err(|e| classify("write", &path, e, true))?;
        let outblob = self.read_blob(dir, "outblob", OUTBLOB_MAX)?;
        if outblob.is_empty() {
            return Err(TsmError::Empty(dir.join("outblob").display().to_string()));
        }
        let auxblob = if want_aux { self.read_optional_blob(dir, "auxblob", AUXBLOB_MAX)? } else { Vec::new() };
        self.check_generation(dir, 1)?;
        Ok(Report { provider, outblob, auxblob })
    }

    fn create_instance(&self) -> Result<Instance<'_>, TsmError> {
        // Unique per request: a name another process could guess would let
        // it write into our report between our write and our read.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("ztinit-{}-{n}-{:016x}", std::process::id(), OsRng.next_u64());
        let path = self.base.join(name);
        self.fs.create_dir(&path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => TsmError::Unavailable(self.base.display().to_string()),
            Some(libc::ENXIO) | Some(libc::ENOTTY) => TsmError::NoProvider,
            _ => TsmError::Io { op: "mkdir", path: path.display().to_string(), source: e },
        })?;
        Ok(Instance { fs: self.fs, path })
    }

    fn read_provider(&self, dir: &Path) -> Result<String, TsmError> {
        let path = dir.join("provider");
        let raw = self.fs.read(&path, 64).map_err(|e| match e.raw_os_error() {
            // provider_show() answers ENXIO when no TEE driver registered.
            Some(libc::ENXIO) | Some(libc::ENOTTY) => TsmError::NoProvider,
            _ => classify("read", &path, e, false),
        })?;
        let text = String::from_utf8_lossy(&raw).trim().to_string();
        if text.is_empty() || raw.len() > 64 {
            return Err(TsmError::NoProvider);
        }
        Ok(text)
    }

    fn read_blob(&self, dir: &Path, name: &str, max: usize) -> Result<Vec<u8>, TsmError> {
        let path = dir.join(name);
        let data = self.fs.read(&path, max).map_err(|e| classify("read", &path, e, true))?;
        if data.len() > max {
            return Err(TsmError::TooLarge { what: path.display().to_string(), max });
        }
        Ok(data)
    }

    /// `auxblob` may be absent on providers that have none.
    fn read_optional_blob(&self, dir: &Path, name: &str, max: usize) -> Result<Vec<u8>, TsmError> {
        let path = dir.join(name);
        match self.fs.read(&path, max) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.fs.is_dir(dir) => Ok(Vec::new()),
            Err(e) => Err(classify("read", &path, e, true)),
            Ok(data) if data.len() > max => Err(TsmError::TooLarge { what: path.display().to_string(), max }),
            Ok(data) => Ok(data),
        }
    }

    fn check_generation(&self, dir: &Path, writes: u64) -> Result<(), TsmError> {
        let path = dir.join("generation");
        let raw = self.fs.read(&path, 32).map_err(|e| classify("read", &path, e, true))?;
        let text = String::from_utf8_lossy(&raw).trim().to_string();
        match text.parse::<u64>() {
            Ok(g) if g == writes => Ok(()),
            _ => Err(TsmError::Race { dir: dir.display().to_string(), generation: text }),
        }
    }
}

/// A report directory that is removed when the request is over.
struct Instance<'a> {
    fs: &'a dyn ConfigFs,
    path: PathBuf,
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.remove_dir(&self.path) {
            // The report is read (or the request failed already); a stale
            // directory only costs kernel memory, it proves nothing.
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("configfs-tsm: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// Maps the errnos configfs-tsm and its providers use to their meaning.
/// `after_provider`: the instance was set up, so ENXIO/ENOTTY/ENOENT mean
/// the provider or the directory disappeared under us.
fn classify(op: &'static str, path: &Path, e: io::Error, after_provider: bool) -> TsmError {
    let at = path.display().to_string();
    match e.raw_os_error() {
        Some(libc::ENXIO) | Some(libc::ENOTTY) | Some(libc::ENODEV) if after_provider => TsmError::Vanished(at),
        Some(libc::ENXIO) | Some(libc::ENOTTY) => TsmError::NoProvider,
        Some(libc::ENOENT) if after_provider => TsmError::Vanished(at),
        Some(libc::EBUSY) => TsmError::Busy(at),
        Some(libc::EINVAL) => TsmError::Rejected(at),
        Some(libc::EIO) => TsmError::Failed(at),
        Some(libc::ETIMEDOUT) => TsmError::TimedOut(at),
        Some(libc::EFBIG) => TsmError::TooLarge { what: at, max: OUTBLOB_MAX },
        _ => TsmError::Io { op, path: at, source: e },
    }
}
