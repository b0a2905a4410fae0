//! Inline remote attestation against a Key Broker Service speaking the
//! Confidential Containers Trustee protocol (KBS protocol 0.4.0), and
//! retrieval of the resources it releases.
//!
//! ```text
//! POST /kbs/v0/auth    {version, tee, extra-params}      -> {nonce, extra-params} + cookie
//! POST /kbs/v0/attest  {init-data, runtime-data, tee-evidence} -> {token}
//! GET  /kbs/v0/resource/REPO/TYPE/TAG                      -> JWE (ECDH-ES+A256KW, A256GCM)
//! ```
//!
//! The evidence binds `SHA-384(JCS({"additional-evidence", "nonce",
//! "tee-pubkey"}))`, where `tee-pubkey` is an ephemeral P-256 key that lives
//! only in this process; resources come back encrypted to it.
//!
//! Usage (see `docs/kbs.md`):
//! ```no_run
//! # fn f(server: &ztinit::kbs::KbsServer, cfg: &ztinit::kbs::KbsConfig, cpu: &mut dyn ztinit::tee::EvidenceProvider) -> Result<(), ztinit::kbs::KbsError> {
//! let client = ztinit::kbs::Client::new(server, cfg)?;
//! let mut session = client.attest(cpu, Vec::new(), None)?;
//! let key = session.fetch(&"default/key/model".parse().unwrap())?; // Zeroizing<Vec<u8>>
//! # Ok(()) }
//! ```

mod client;
pub mod config;
pub mod http;
pub mod jcs;
pub mod jwe;
pub mod protocol;
pub mod resource;
mod tls;
pub mod transport;

use std::fmt;

pub use client::{Client, EvidenceKey, Session};
pub use config::{KbsConfig, KbsServer, KbsTrust, Pem, SecretConfig};
pub use jwe::JweError;
pub use protocol::InitData;
pub use resource::{ResourcePath, ResourcePathError};
pub use transport::TransportError;

/// Additional (device) evidence, e.g. NVIDIA GPUs, carried in
/// `tee-evidence.additional_evidence` under [`DeviceEvidence::name`].
pub trait DeviceEvidence {
    /// Trustee's name for this device class (`"nvidia"`, `"sampledevice"`):
    /// the key in the `additional_evidence` map. Unique per attestation.
    fn name(&self) -> &str;
    /// Evidence for all devices of this class, binding `device_digest` =
    /// H(JCS({nonce, tee-pubkey})) (48 bytes with SHA-384). NVIDIA GPUs use
    /// its first 32 bytes as the SPDM requester nonce.
    fn collect(&mut self, device_digest: &[u8]) -> Result<serde_json::Value, DeviceEvidenceError>;
}

pub type DeviceEvidenceError = Box<dyn std::error::Error + Send + Sync>;

/// Trustee's `sampledevice`: a fake device that proves nothing, to exercise
/// the composite-evidence path in tests (guest-components
/// `attester/src/sample_device`).
#[derive(Debug, Default)]
pub struct SampleDevice;

impl DeviceEvidence for SampleDevice {
    fn name(&self) -> &str {
        "sampledevice"
    }

    fn collect(&mut self, device_digest: &[u8]) -> Result<serde_json::Value, DeviceEvidenceError> {
        use base64::Engine;
        let report_data = base64::engine::general_purpose::STANDARD.encode(device_digest);
        Ok(serde_json::json!({ "svn": "2", "report_data": report_data }))
    }
}

/// The step of the conversation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Setup,
    Auth,
    Attest,
    Resource(String),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Setup => f.write_str("KBS client setup"),
            Op::Auth => f.write_str("KBS auth"),
            Op::Attest => f.write_str("KBS attest"),
            Op::Resource(p) => write!(f, "KBS resource {p}"),
        }
    }
}

/// Which side of the conversation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Config,
    /// The network or TLS: unreachable, timed out, certificate refused.
    Transport,
    /// The KBS answered something that is not the protocol.
    Protocol,
    /// The KBS said no (`type` + `detail`).
    Refused,
    /// A resource did not decrypt with our key.
    Crypto,
    /// Evidence could not be produced.
    Evidence,
}

/// Why attestation or a resource failed. One line, naming the step and the
/// failing side; never any secret byte.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    #[error("KBS configuration: cannot read {path}: {source}")]
    CertFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("KBS configuration: {0}")]
    Cert(#[from] transport::PemCertError),
    #[error("{op}: transport: {source}")]
    Transport { op: Op, source: TransportError },
    #[error("{op}: protocol violation: {reason}")]
    Protocol { op: Op, reason: String },
    #[error("{op}: refused by the KBS (HTTP {status} {kind}): {detail}")]
    Refused { op: Op, status: u16, kind: String, detail: String },
    #[error("{op}: decryption: {source}")]
    Crypto { op: Op, source: JweError },
    #[error("{op}: evidence: {reason}")]
    Evidence { op: Op, reason: String },
}

#[cfg(test)]
mod tests;
