//! CPU TEE detection and evidence.
//!
//! The KBS client asks an [`EvidenceProvider`] for evidence that binds the
//! digest it computed from the runtime data. [`detect`] picks the provider
//! for this guest from the accepted kinds of the baked `[tee]` section:
//! AMD SEV-SNP or Intel TDX through configfs-tsm, or the `sample` TEE where a
//! development image allows it. There is no silent fallback.
//!
//! [`initdata`] reads the Confidential Containers initdata document that Kata
//! hands to the guest and binds it to SNP HOSTDATA / TDX MRCONFIGID;
//! [`verify`] holds the checks the development KBS applies to the evidence.

pub mod config;
mod detect;
pub mod gzip;
mod hash;
pub mod initdata;
mod paths;
pub mod sample;
pub mod snp;
pub mod tdx;
pub mod tsm;
pub mod verify;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::fmt;

pub use config::{InitdataMode, TeeConfig};
pub use detect::detect;
pub use hash::HashAlgorithm;
pub use initdata::InitdataError;
pub use paths::TeePaths;
pub use snp::SnpError;
pub use tdx::TdxError;
pub use tsm::TsmError;

/// Size of SNP REPORT_DATA and TDX REPORTDATA.
pub const REPORT_DATA_LEN: usize = 64;

/// TEE kinds, named as Trustee names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeKind {
    Sample,
    Snp,
    Tdx,
}

impl TeeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Sample => "sample",
            TeeKind::Snp => "snp",
            TeeKind::Tdx => "tdx",
        }
    }

    /// The kind of a Trustee `tee` name (`"snp"`, `"tdx"`, `"sample"`).
    pub fn from_name(name: &str) -> Option<Self> {
        [TeeKind::Sample, TeeKind::Snp, TeeKind::Tdx].into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source of CPU attestation evidence.
pub trait EvidenceProvider {
    fn kind(&self) -> TeeKind;
    /// Evidence in the Trustee JSON format for this TEE, binding `digest`:
    /// the hash of the canonical runtime data (48 bytes for SHA-384, the
    /// Trustee default). Hardware providers zero-pad it to their 64-byte
    /// REPORT_DATA, exactly as Trustee's verifiers expect; `sample` uses it as is.
    fn evidence(&mut self, digest: &[u8]) -> Result<serde_json::Value, TeeError>;

    /// The value the host bound to this guest at launch, read from a fresh
    /// report: SNP HOSTDATA (32 bytes) or TDX MRCONFIGID (48 bytes). The
    /// initdata digest must match it. `None` where the TEE has no such field
    /// (`sample`).
    fn host_data(&mut self) -> Result<Option<Vec<u8>>, TeeError> {
        Ok(None)
    }
}

/// Why the TEE could not be used or its evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    #[error("report data must be at most 64 bytes, got {0}")]
    ReportDataTooLong(usize),
    /// No accepted TEE on this guest. `found` says what was looked at.
    #[error("no TEE found: accepted {accepted}; {found}")]
    NoTee { accepted: String, found: String },
    /// A TEE is present, but not one the configuration accepts.
    #[error("TEE {found} is not accepted (accepted {accepted}); refusing to attest with it")]
    NotAccepted { accepted: String, found: String },
    #[error("configfs-tsm: {0}")]
    Tsm(#[from] TsmError),
    #[error("SEV-SNP: {0}")]
    Snp(#[from] SnpError),
    #[error("TDX: {0}")]
    Tdx(#[from] TdxError),
    #[error("initdata: {0}")]
    Initdata(#[from] InitdataError),
}

/// `digest` zero-padded to the 64 bytes of REPORT_DATA, the way Trustee's
/// SNP and TDX verifiers pad the runtime-data hash.
pub fn pad_report_data(digest: &[u8]) -> Result<[u8; REPORT_DATA_LEN], TeeError> {
    if digest.len() > REPORT_DATA_LEN {
        return Err(TeeError::ReportDataTooLong(digest.len()));
    }
    let mut out = [0u8; REPORT_DATA_LEN];
    out[..digest.len()].copy_from_slice(digest);
    Ok(out)
}

/// Lower-case hex of at most the first `max` bytes, for messages about
/// public measurement values (never for secrets).
pub(crate) fn short_hex(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    if shown.len() < bytes.len() { format!("{}…", hex::encode(shown)) } else { hex::encode(shown) }
}
