//! Verification of CPU evidence, for the development KBS (and for tests).
//!
//! Each verifier takes Trustee's evidence JSON for its TEE, the runtime-data
//! digest the KBS computed (48 bytes for SHA-384; zero-padded to 64 as the
//! guest did), the init-data digest if the attest request carried
//! init-data, and a reference-value policy. It returns the claims it
//! established, or the first reason to refuse.
//!
//! - SNP ([`snp::verify`]): report structure, REPORT_DATA binding, HOSTDATA
//!   binding, debug policy, VMPL 0, measurement and minimum TCB, VCEK/VLEK
//!   chain to the AMD roots built into the `sev` crate (the ARK a chain
//!   brings along is never trusted), the report signature (`sev` crate,
//!   `crypto_nossl`) and the VCEK's TCB and chip extensions.
//! - TDX ([`tdx::verify`]): bounded quote parsing, REPORTDATA and
//!   MRCONFIGID binding, debug attribute, MRTD / RTMR / MRCONFIGID reference
//!   values, the quote signature chain up to the pinned Intel SGX root CA,
//!   and a replay of the CC event log against RTMR0..3 when one is sent.
//!   TCB status (Intel PCS collateral) is not evaluated: the dev KBS runs
//!   offline.

pub mod eventlog;
pub mod snp;
pub mod tdx;

#[cfg(test)]
mod tests;

use super::{REPORT_DATA_LEN, TeeKind, short_hex};

pub use snp::SnpPolicy;
pub use tdx::TdxPolicy;

/// Why evidence was refused. One variant per reason, so a KBS can log it
/// and tests can assert it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{tee} evidence is malformed: {reason}")]
    Malformed { tee: &'static str, reason: String },
    #[error("report data mismatch: the evidence binds {found}, the runtime data hashes to {expected}")]
    ReportDataMismatch { expected: String, found: String },
    #[error("runtime-data digest of {0} bytes is longer than the 64 bytes of report data")]
    DigestTooLong(usize),
    #[error("init-data mismatch: {field} is {found}, the init-data digest is {expected}")]
    InitDataMismatch { field: &'static str, expected: String, found: String },
    #[error("debug is allowed ({0}): refused by policy")]
    Debug(String),
    #[error("{field} {found} is not an accepted reference value")]
    ReferenceValue { field: &'static str, found: String },
    #[error("SNP report version {found} is not accepted ({min}..=5)")]
    ReportVersion { found: u32, min: u32 },
    #[error("SNP report was requested at VMPL {0}, only VMPL 0 is accepted")]
    Vmpl(u32),
    #[error("SNP TCB {0}")]
    Tcb(String),
    #[error("no VCEK or VLEK: the evidence carries none and none is configured")]
    NoVek,
    #[error("certificate chain: {0}")]
    Chain(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("event log: {0} base64 characters is too large")]
    EventLogSize(usize),
    #[error("event log: not base64: {0}")]
    EventLogEncoding(#[source] base64::DecodeError),
    #[error("event log: {0}")]
    EventLog(#[from] eventlog::EventLogError),
    #[error("event log: replay gives RTMR{index} {replayed}, the quote has {quoted}")]
    RtmrMismatch { index: usize, replayed: String, quoted: String },
}

/// The policy for every TEE the dev KBS may see.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub snp: SnpPolicy,
    pub tdx: TdxPolicy,
    /// Accept the `sample` TEE (it proves nothing).
    pub allow_sample: bool,
}

/// Verifies `evidence` of `kind` and returns its claims.
pub fn verify(
    kind: TeeKind,
    evidence: &serde_json::Value,
    report_data_digest: &[u8],
    init_data_digest: Option<&[u8]>,
    policy: &Policy,
) -> Result<serde_json::Value, VerifyError> {
    match kind {
        TeeKind::Snp => snp::verify(evidence, report_data_digest, init_data_digest, &policy.snp),
        TeeKind::Tdx => tdx::verify(evidence, report_data_digest, init_data_digest, &policy.tdx),
        TeeKind::Sample => verify_sample(evidence, report_data_digest, policy.allow_sample),
    }
}

/// Trustee's sample verifier: base64 `report_data` equals the digest
/// exactly (no padding).
pub fn verify_sample(
    evidence: &serde_json::Value,
    report_data_digest: &[u8],
    allow: bool,
) -> Result<serde_json::Value, VerifyError> {
    use base64::Engine;
    let malformed = |reason: &str| VerifyError::Malformed { tee: "sample", reason: reason.to_string() };
    if !allow {
        return Err(malformed("the sample TEE is not accepted by this KBS"));
    }
    let rd = evidence.get("report_data").and_then(|v| v.as_str()).ok_or_else(|| malformed("no report_data string"))?;
    let rd =
        base64::engine::general_purpose::STANDARD.decode(rd).map_err(|_| malformed("report_data is not base64"))?;
    if rd != report_data_digest {
        return Err(VerifyError::ReportDataMismatch {
            expected: short_hex(report_data_digest, 16),
            found: short_hex(&rd, 16),
        });
    }
    Ok(serde_json::json!({ "tee": "sample", "report_data": hex::encode(rd) }))
}

/// The digest as the 64 bytes the hardware report holds.
fn padded(digest: &[u8]) -> Result<[u8; REPORT_DATA_LEN], VerifyError> {
    super::pad_report_data(digest).map_err(|_| VerifyError::DigestTooLong(digest.len()))
}

fn check_report_data(found: &[u8], digest: &[u8]) -> Result<(), VerifyError> {
    let expected = padded(digest)?;
    if found != expected {
        return Err(VerifyError::ReportDataMismatch {
            expected: short_hex(&expected, 16),
            found: short_hex(found, 16),
        });
    }
    Ok(())
}

/// init-data digest regularised to the field (truncate or zero-pad).
fn check_init_data(field: &'static str, found: &[u8], init_data_digest: Option<&[u8]>) -> Result<(), VerifyError> {
    let Some(digest) = init_data_digest else {
        return Ok(());
    };
    let mut expected = digest.to_vec();
    expected.resize(found.len(), 0);
    if expected != found {
        return Err(VerifyError::InitDataMismatch {
            field,
            expected: short_hex(&expected, 16),
            found: short_hex(found, 16),
        });
    }
    Ok(())
}

/// A hex value that is not the hex of the expected number of bytes; `text`
/// is the first 128 characters of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HexError {
    #[error("{text:?}: {source}")]
    Invalid {
        text: String,
        #[source]
        source: hex::FromHexError,
    },
    #[error("{text:?}: {found} bytes, expected {expected}")]
    Length { text: String, found: usize, expected: usize },
}

/// Parses fixed-size hex reference values (`"7a1e…"`).
pub fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let shown = || text.chars().take(128).collect::<String>();
    let bytes = hex::decode(text.trim()).map_err(|source| HexError::Invalid { text: shown(), source })?;
    bytes.try_into().map_err(|b: Vec<u8>| HexError::Length { text: shown(), found: b.len(), expected: N })
}
