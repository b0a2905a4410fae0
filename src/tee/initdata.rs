//! Confidential Containers initdata, delivered the way Kata delivers it.
//!
//! The document (Trustee `kbs/docs/initdata.md`) is TOML:
//!
//! ```toml
//! version = "0.1.0"
//! algorithm = "sha384"        # sha256 | sha384 | sha512
//! [data]
//! "ztinit.toml" = '''
//! [kbs]
//! url = "https://kbs.example:8080"
//! '''
//! ```
//!
//! Kata's runtime takes it from the pod annotation
//! `io.katacontainers.config.hypervisor.cc_init_data` (base64 of gzip), puts
//! the digest of the document text, truncated or zero-padded, into SNP
//! HOSTDATA (32 bytes) or TDX MRCONFIGID (48 bytes) at launch, and attaches
//! a raw virtio-blk disk: `"initdata"` (8 bytes) ‖ compressed length (u64 LE)
//! ‖ gzip(document) ‖ zero padding to 512 bytes. ztinit finds that disk,
//! hashes the decompressed text with the declared algorithm, compares it
//! with the value from a fresh TEE report (a mismatch stops the boot), and
//! sends the text to the KBS as `init-data`. See docs/initdata.md.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::{InitdataMode, TeeConfig};
use super::gzip::{self, GzipError};
use super::paths::TeePaths;
use super::{EvidenceProvider, TeeError, TeeKind, short_hex};

/// The first bytes of Kata's initdata disk.
pub const MAGIC: &[u8; 8] = b"initdata";
/// The only document version defined so far.
pub const VERSION: &str = "0.1.0";
/// Larger compressed or decompressed documents are refused.
pub const MAX_COMPRESSED: u64 = 1 << 20;
pub const MAX_DOCUMENT: usize = 1 << 20;
/// The `data` entry whose TOML joins ztinit's configuration, key by key
/// as `crate::config::overlay` allows.
pub const ZTINIT_KEY: &str = "ztinit.toml";

#[derive(Debug, thiserror::Error)]
pub enum InitdataError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("more than one initdata disk: {0}")]
    Ambiguous(String),
    #[error("{path}: compressed length {len} is larger than {MAX_COMPRESSED} bytes or the disk")]
    BadLength { path: String, len: u64 },
    #[error("{path}: {source}")]
    Gzip {
        path: String,
        #[source]
        source: GzipError,
    },
    #[error("document is not UTF-8")]
    NotUtf8,
    // The message only: TOML's snippet would echo the host's document.
    #[error("document is not valid initdata TOML: {}", .0.message())]
    Toml(#[source] toml::de::Error),
    #[error("version {0:?} is not supported (only \"0.1.0\")")]
    UnsupportedVersion(String),
    #[error("algorithm {0:?} is not supported (sha256, sha384 or sha512)")]
    UnsupportedAlgorithm(String),
    #[error(
        "digest {digest} ({algorithm}) does not match {field} {found}: the host launched this guest with other initdata"
    )]
    Mismatch { algorithm: &'static str, digest: String, field: &'static str, found: String },
    #[error("tee.initdata = \"required\" but no initdata disk was found in {0}")]
    Missing(String),
    #[error("{field} is {found} but no initdata disk was found: the launch bound initdata the host did not deliver")]
    Withheld { field: &'static str, found: String },
    #[error("\"{ZTINIT_KEY}\" is not valid TOML: {}", .0.message())]
    OverlayToml(#[source] toml::de::Error),
}

/// The hash an initdata document declares: the algorithms of the KBS
/// protocol (kbs-types `HashAlgorithm`, SM3 aside).
pub use super::HashAlgorithm as Algorithm;

/// A parsed initdata document and the exact text it was parsed from.
#[derive(Debug, Clone)]
pub struct Initdata {
    body: String,
    pub algorithm: Algorithm,
    pub data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Document {
    version: String,
    algorithm: String,
    data: BTreeMap<String, String>,
}

impl Initdata {
    pub fn parse(bytes: Vec<u8>) -> Result<Self, InitdataError> {
        let body = String::from_utf8(bytes).map_err(|_| InitdataError::NotUtf8)?;
        let doc: Document = toml::from_str(&body).map_err(InitdataError::Toml)?;
        if doc.version != VERSION {
            return Err(InitdataError::UnsupportedVersion(doc.version));
        }
        let algorithm = Algorithm::parse(&doc.algorithm)
            .ok_or_else(|| InitdataError::UnsupportedAlgorithm(doc.algorithm.clone()))?;
        Ok(Self { body, algorithm, data: doc.data })
    }

    /// The document text exactly as delivered (what is hashed).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The digest with the document's own algorithm.
    pub fn digest(&self) -> Vec<u8> {
        self.algorithm.digest(self.body.as_bytes())
    }

    /// What the launch value must hold: the digest truncated or zero-padded
    /// to `len` bytes (Kata `adjust_digest`, Trustee `regularize_data`).
    pub fn digest_for_field(&self, len: usize) -> Vec<u8> {
        let mut d = self.digest();
        d.resize(len, 0);
        d
    }

    /// The `init-data` member of the KBS attest request.
    pub fn kbs_init_data(&self) -> serde_json::Value {
        serde_json::json!({ "format": "toml", "body": self.body })
    }

    /// The `ztinit.toml` entry as a table, if there is one.
    pub fn overlay(&self) -> Result<Option<toml::Table>, InitdataError> {
        self.data
            .get(ZTINIT_KEY)
            .map(|text| text.parse::<toml::Table>().map_err(InitdataError::OverlayToml))
            .transpose()
    }
}

/// Finds Kata's initdata disk among `dev/vd*` and `dev/sd*`, leaving out
/// the disks that a `[[volumes]]` entry names by serial (`volume_disks`,
/// kernel names): a model disk is not read for the initdata magic (on the
/// critical path of the boot, the first read of a disk is a cold block
/// layer under emulation), and a disk that carries a measured volume cannot
/// be the initdata disk too. That can only narrow what is found: a host
/// that gives the initdata disk a volume's serial hides it, and then the
/// launch's HOSTDATA / MRCONFIGID no longer matches (the boot fails), or,
/// with nothing bound, the boot runs on the baked configuration alone.
pub fn find_device(dev: &Path, volume_disks: &[String]) -> Result<Option<PathBuf>, InitdataError> {
    let io_err = |source| InitdataError::Io { path: dev.display().to_string(), source };
    let mut names: Vec<String> = std::fs::read_dir(dev)
        .map_err(io_err)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("vd") || n.starts_with("sd"))
        .filter(|n| !volume_disks.contains(n))
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let path = dev.join(&name);
        if has_magic(&path) {
            found.push(path);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => {
            Err(InitdataError::Ambiguous(found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")))
        }
    }
}

fn has_magic(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    // Block devices in the guest; regular files in tests. Nothing else is
    // opened (a character device read could block or have side effects).
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !(meta.file_type().is_block_device() || meta.is_file()) {
        return false;
    }
    let mut magic = [0u8; 8];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == MAGIC
}

/// Reads and decompresses the document from an initdata disk.
pub fn read_device(path: &Path) -> Result<Vec<u8>, InitdataError> {
    let at = || path.display().to_string();
    let io_err = |source| InitdataError::Io { path: path.display().to_string(), source };
    let mut file = File::open(path).map_err(io_err)?;
    let mut header = [0u8; 16];
    file.read_exact(&mut header).map_err(io_err)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[8..]);
    let len = u64::from_le_bytes(len);
    if &header[..8] != MAGIC || len > MAX_COMPRESSED {
        return Err(InitdataError::BadLength { path: at(), len });
    }
    let mut compressed = Vec::new();
    file.take(len).read_to_end(&mut compressed).map_err(io_err)?;
    if compressed.len() as u64 != len {
        return Err(InitdataError::BadLength { path: at(), len });
    }
    gzip::decompress(&compressed, MAX_DOCUMENT).map_err(|source| InitdataError::Gzip { path: at(), source })
}

fn field_name(kind: TeeKind) -> &'static str {
    match kind {
        TeeKind::Snp => "HOSTDATA",
        TeeKind::Tdx => "MRCONFIGID",
        TeeKind::Sample => "sample host data",
    }
}

/// Compares the document with what the launch bound (`host_data` from a
/// fresh report; `None` for the sample TEE, which binds nothing).
pub fn bind(
    kind: TeeKind,
    host_data: Option<&[u8]>,
    initdata: Option<&Initdata>,
    mode: InitdataMode,
) -> Result<(), InitdataError> {
    let field = field_name(kind);
    match (host_data, initdata) {
        (None, Some(_)) => {
            log::warn!("initdata: the {kind} TEE has no launch value to bind it to; it is only sent to the KBS");
            Ok(())
        }
        (Some(found), Some(doc)) => {
            let expected = doc.digest_for_field(found.len());
            if expected != found {
                return Err(InitdataError::Mismatch {
                    algorithm: doc.algorithm.as_str(),
                    digest: short_hex(&expected, 16),
                    field,
                    found: short_hex(found, 16),
                });
            }
            Ok(())
        }
        (_, None) if mode == InitdataMode::Required => Err(InitdataError::Missing(String::new())),
        (Some(found), None) if found.iter().any(|&b| b != 0) => {
            Err(InitdataError::Withheld { field, found: short_hex(found, 16) })
        }
        (_, None) => Ok(()),
    }
}

/// The initdata step of the boot: find the disk, read and parse the
/// document, and bind it to the launch value from a fresh TEE report.
/// `Ok(None)` when there is none and none is needed.
pub fn load(
    cfg: &TeeConfig,
    paths: &TeePaths,
    provider: &mut dyn EvidenceProvider,
    volume_disks: &[String],
) -> Result<Option<Initdata>, TeeError> {
    if cfg.initdata == InitdataMode::Off {
        return Ok(None);
    }
    let device = find_device(&paths.dev, volume_disks)?;
    let initdata = match &device {
        Some(path) => Some(Initdata::parse(read_device(path)?)?),
        None => None,
    };
    let host_data = provider.host_data()?;
    bind(provider.kind(), host_data.as_deref(), initdata.as_ref(), cfg.initdata).map_err(|e| match e {
        InitdataError::Missing(_) => InitdataError::Missing(paths.dev.display().to_string()),
        other => other,
    })?;
    if let (Some(path), Some(doc)) = (&device, &initdata) {
        // The sample TEE binds nothing: `bind` warned, there was no match.
        let bound = match host_data {
            Some(_) => format!("matches {}", field_name(provider.kind())),
            None => "not bound to the launch".to_string(),
        };
        log::info!("initdata: {} ({}, {} entries) {bound}", path.display(), doc.algorithm.as_str(), doc.data.len());
    }
    Ok(initdata)
}
