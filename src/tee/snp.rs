//! AMD SEV-SNP evidence through configfs-tsm (provider `sev_guest`).
//!
//! `outblob` is the 1184-byte ATTESTATION_REPORT (SNP ABI 56860), `auxblob`
//! the certificate table the host attached (GHCB 56421 §4.1.8.1), usually
//! empty on upstream KVM. The evidence is Trustee's `snp` format:
//! `{"attestation_report": <sev AttestationReport>, "cert_chain": [...] | null}`.

use std::ops::RangeInclusive;

use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};

use super::paths::TeePaths;
use super::tsm::Tsm;
use super::{EvidenceProvider, REPORT_DATA_LEN, TeeError, TeeKind, pad_report_data, short_hex};

/// The configfs-tsm provider name.
pub const PROVIDER: &str = "sev_guest";
/// Size of an attestation report, all versions so far.
pub const REPORT_LEN: usize = 1184;
/// Report versions this build parses (the `sev` crate's layouts).
pub const SUPPORTED_VERSIONS: RangeInclusive<u32> = 2..=5;
/// HOSTDATA size.
pub const HOST_DATA_LEN: usize = 32;
/// GuestPolicy bit 19: the hypervisor may debug the guest (read its memory).
pub const POLICY_DEBUG_BIT: u32 = 19;
/// A certificate table never needs more entries than this (ARK, ASK,
/// VCEK/VLEK, CRL and a few vendor ones).
const MAX_CERT_ENTRIES: usize = 32;
const CERT_ENTRY_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SnpError {
    #[error("report is truncated: {0} bytes, expected {REPORT_LEN}")]
    Truncated(usize),
    #[error("report is oversized: {0} bytes, expected {REPORT_LEN}")]
    Oversized(usize),
    #[error("report version {0} is not supported (supported: 2..=5)")]
    UnsupportedVersion(u32),
    #[error("report cannot be parsed: {0}")]
    Malformed(String),
    #[error("REPORT_DATA {found} does not match the requested {expected}")]
    ReportDataMismatch { expected: String, found: String },
    #[error(
        "guest policy {policy:#x} allows debugging (bit 19): the host can read guest memory; only tee.allow_debug = true accepts that"
    )]
    DebugPolicy { policy: u64 },
    #[error("certificate table (auxblob): {0}")]
    CertTable(String),
}

/// Parses a raw report, refusing anything that is not exactly one report
/// of a version this build knows.
pub fn parse_report(bytes: &[u8]) -> Result<AttestationReport, SnpError> {
    if bytes.len() < REPORT_LEN {
        return Err(SnpError::Truncated(bytes.len()));
    }
    if bytes.len() > REPORT_LEN {
        return Err(SnpError::Oversized(bytes.len()));
    }
    let version = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(SnpError::UnsupportedVersion(version));
    }
    AttestationReport::from_bytes(bytes).map_err(|e| SnpError::Malformed(e.to_string()))
}

/// The checks made before the report leaves the guest (the version was
/// checked by [`parse_report`]).
pub fn check_report(
    report: &AttestationReport,
    expected: &[u8; REPORT_DATA_LEN],
    allow_debug: bool,
) -> Result<(), SnpError> {
    if report.report_data.0 != *expected {
        return Err(SnpError::ReportDataMismatch {
            expected: short_hex(expected, 16),
            found: short_hex(&report.report_data.0, 16),
        });
    }
    if report.policy.debug_allowed() && !allow_debug {
        return Err(SnpError::DebugPolicy { policy: u64::from(report.policy) });
    }
    Ok(())
}

/// Parses the GHCB certificate table: `{guid[16], offset u32, length u32}`
/// entries ended by an all-zero entry, offsets relative to the table start.
/// The host writes it, so every offset is checked. An empty blob (no
/// certificates, the normal case on upstream KVM) gives `None`.
pub fn parse_cert_table(blob: &[u8]) -> Result<Option<Vec<CertTableEntry>>, SnpError> {
    if blob.is_empty() {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for index in 0.. {
        let start = index * CERT_ENTRY_LEN;
        let Some(raw) = blob.get(start..start + CERT_ENTRY_LEN) else {
            return Err(SnpError::CertTable(format!("no terminating entry within {} bytes", blob.len())));
        };
        let guid: [u8; 16] = raw[..16].try_into().map_err(|_| SnpError::CertTable("short GUID".into()))?;
        let offset = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]) as usize;
        let length = u32::from_le_bytes([raw[20], raw[21], raw[22], raw[23]]) as usize;
        if guid == [0; 16] {
            break;
        }
        if index >= MAX_CERT_ENTRIES {
            return Err(SnpError::CertTable(format!("more than {MAX_CERT_ENTRIES} entries")));
        }
        let data = offset.checked_add(length).and_then(|end| blob.get(offset..end)).ok_or_else(|| {
            SnpError::CertTable(format!(
                "entry {index} points at {offset}+{length}, outside the {}-byte table",
                blob.len()
            ))
        })?;
        let uuid = uuid::Uuid::from_bytes(guid);
        let cert_type = CertType::try_from(&uuid).map_err(|e| SnpError::CertTable(e.to_string()))?;
        entries.push(CertTableEntry::new(cert_type, data.to_vec()));
    }
    Ok(if entries.is_empty() { None } else { Some(entries) })
}

/// Trustee's `snp` evidence document.
pub fn evidence_json(report: &AttestationReport, certs: Option<Vec<CertTableEntry>>) -> serde_json::Value {
    serde_json::json!({ "attestation_report": report, "cert_chain": certs })
}

/// Evidence from the SEV-SNP firmware through configfs-tsm.
pub struct SnpProvider {
    paths: TeePaths,
    allow_debug: bool,
}

impl SnpProvider {
    pub fn new(paths: TeePaths, allow_debug: bool) -> Self {
        Self { paths, allow_debug }
    }

    fn report(&self, report_data: &[u8; REPORT_DATA_LEN]) -> Result<(AttestationReport, Vec<u8>), TeeError> {
        let tsm = Tsm { fs: &*self.paths.configfs, base: &self.paths.tsm_report };
        let out = tsm.report(PROVIDER, report_data, true)?;
        let report = parse_report(&out.outblob)?;
        check_report(&report, report_data, self.allow_debug)?;
        Ok((report, out.auxblob))
    }
}

impl EvidenceProvider for SnpProvider {
    fn kind(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn evidence(&mut self, digest: &[u8]) -> Result<serde_json::Value, TeeError> {
        let report_data = pad_report_data(digest)?;
        let (report, auxblob) = self.report(&report_data)?;
        let certs = parse_cert_table(&auxblob)?;
        log::debug!(
            "SEV-SNP report v{} measurement {} with {} certificate(s)",
            report.version,
            hex::encode(report.measurement.0),
            certs.as_ref().map_or(0, Vec::len)
        );
        Ok(evidence_json(&report, certs))
    }

    fn host_data(&mut self) -> Result<Option<Vec<u8>>, TeeError> {
        let (report, _) = self.report(&[0; REPORT_DATA_LEN])?;
        Ok(Some(report.host_data.0.to_vec()))
    }
}
