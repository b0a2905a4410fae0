//! CPU TEE detection and evidence.
//!
//! The KBS client asks an [`EvidenceProvider`] for evidence that binds the
//! 64-byte report data it computed from the runtime data.

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
    /// Evidence in the Trustee JSON format for this TEE, binding `report_data`.
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>>;
}
