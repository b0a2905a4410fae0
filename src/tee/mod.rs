//! CPU TEE detection and evidence.
//!
//! The KBS client asks an [`EvidenceProvider`] for evidence that binds the
//! digest it computed from the runtime data.

pub mod sample;

use std::fmt;

/// TEE kinds, named as Trustee names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    #[error("report data must be at most 64 bytes, got {0}")]
    ReportDataTooLong(usize),
}
