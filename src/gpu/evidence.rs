//! The `nvidia` additional evidence in Trustee's format, NVAT's serialized
//! evidence, and the verification the dev KBS (and `xtask verify-gpu`) runs
//! on it.
//!
//! Trustee (guest-components `nvat.rs`, trustee `deps/verifier/src/nvidia`):
//! `{"device_evidence_list":[{"arch":"HOPPER","uuid":"...","evidence":"<base64
//! report>","certificate":"<base64 of the PEM chain>"}]}`; the verifier also
//! accepts hex evidence. NVAT: `[{"arch","nonce","evidence","certificate"}]`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::spdm::{self, NONCE_LEN};
use super::verify::{self, Arch, DeviceVerdict, Evidence, Expected, ReferenceValues, Trust};

/// More devices than an 8-GPU + 4-switch PPCIe system is not plausible.
pub const MAX_DEVICES: usize = 16;
/// Certificate chains larger than NVML's buffer cannot be genuine.
pub const MAX_CHAIN_PEM: usize = 0x1400 * 2;

/// One device entry on the wire (Trustee's `device_evidence_list` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub arch: String,
    #[serde(default = "unknown_uuid")]
    pub uuid: String,
    pub evidence: String,
    pub certificate: String,
    /// NVAT's files carry the nonce in clear; Trustee's do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

fn unknown_uuid() -> String {
    "unknown".into()
}

/// The whole `nvidia` evidence value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvidiaEvidence {
    pub device_evidence_list: Vec<DeviceEntry>,
}

/// One device as collected from the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedDevice {
    pub arch: Arch,
    pub uuid: String,
    pub report: Vec<u8>,
    pub chain_pem: Vec<u8>,
}

impl NvidiaEvidence {
    /// Builds the evidence exactly as guest-components sends it.
    pub fn from_devices(devices: &[CollectedDevice]) -> NvidiaEvidence {
        NvidiaEvidence {
            device_evidence_list: devices
                .iter()
                .map(|d| DeviceEntry {
                    arch: d.arch.as_str().to_string(),
                    uuid: d.uuid.clone(),
                    evidence: B64.encode(&d.report),
                    certificate: B64.encode(&d.chain_pem),
                    nonce: None,
                })
                .collect(),
        }
    }

    pub fn to_value(&self) -> serde_json::Value {
        // Serialising plain strings into a Value cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Accepts Trustee's object or NVAT's array.
    pub fn from_value(value: &serde_json::Value) -> Result<NvidiaEvidence, EvidenceError> {
        let parsed = if value.is_array() {
            serde_json::from_value::<Vec<DeviceEntry>>(value.clone())
                .map(|device_evidence_list| NvidiaEvidence { device_evidence_list })
        } else {
            serde_json::from_value::<NvidiaEvidence>(value.clone())
        };
        let ev = parsed.map_err(|e| EvidenceError::Format(e.to_string()))?;
        if ev.device_evidence_list.is_empty() {
            return Err(EvidenceError::NoDevices);
        }
        if ev.device_evidence_list.len() > MAX_DEVICES {
            return Err(EvidenceError::TooManyDevices(ev.device_evidence_list.len()));
        }
        Ok(ev)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("nvidia evidence is not in Trustee's or NVAT's format: {0}")]
    Format(String),
    #[error("nvidia evidence lists no device")]
    NoDevices,
    #[error("nvidia evidence lists {0} devices, more than {MAX_DEVICES}")]
    TooManyDevices(usize),
    #[error("device {index}: unknown arch {arch:?}")]
    Arch { index: usize, arch: String },
    #[error("device {index}: evidence is neither hex nor base64")]
    Report { index: usize },
    #[error("device {index}: certificate is not base64 of a PEM chain of at most {MAX_CHAIN_PEM} bytes")]
    Certificate { index: usize },
    #[error("device {index}: nonce field is not 32 bytes of hex")]
    Nonce { index: usize },
}

/// A device entry decoded into bytes.
#[derive(Debug, Clone)]
pub struct DecodedDevice {
    pub arch: Arch,
    pub uuid: String,
    pub report: Vec<u8>,
    pub chain_pem: Vec<u8>,
    /// NVAT's clear nonce, if present.
    pub nonce: Option<[u8; NONCE_LEN]>,
}

impl DeviceEntry {
    pub fn decode(&self, index: usize) -> Result<DecodedDevice, EvidenceError> {
        let arch = Arch::parse(&self.arch).ok_or_else(|| EvidenceError::Arch { index, arch: self.arch.clone() })?;
        let report = spdm::decode_report_text(self.evidence.as_bytes()).ok_or(EvidenceError::Report { index })?;
        let chain_pem = B64
            .decode(self.certificate.trim())
            .ok()
            .filter(|c| c.len() <= MAX_CHAIN_PEM && c.starts_with(b"-----BEGIN"))
            .ok_or(EvidenceError::Certificate { index })?;
        let nonce = (self.nonce.as_deref())
            .map(|n| crate::tee::verify::parse_hex(n).map_err(|_| EvidenceError::Nonce { index }))
            .transpose()?;
        Ok(DecodedDevice { arch, uuid: self.uuid.clone(), report, chain_pem, nonce })
    }
}

/// What a relying party (the dev KBS, `xtask verify-gpu`) requires of GPU
/// evidence beyond signature, chain and nonce.
#[derive(Debug, Clone, Default)]
pub struct NvidiaPolicy {
    /// Golden measurements (1-based SPDM index); empty: not compared.
    pub reference: ReferenceValues,
    /// Accepted driver versions; empty: any.
    pub driver_versions: Vec<String>,
    /// Accepted VBIOS versions; empty: any.
    pub vbios_versions: Vec<String>,
    /// Refuse NVSwitch entries (a plain GPU pass-through has none).
    pub refuse_switches: bool,
}

/// Verdicts of every device in one `nvidia` evidence value.
#[derive(Debug, Clone)]
pub struct NvidiaVerdict {
    pub devices: Vec<(String, DeviceVerdict)>,
}

impl NvidiaVerdict {
    pub fn passed(&self) -> bool {
        !self.devices.is_empty() && self.devices.iter().all(|(_, v)| v.passed())
    }

    /// `"<device label>: <check line>"` for the first failure.
    pub fn first_failure(&self) -> Option<String> {
        self.devices.iter().find_map(|(label, v)| v.first_failure().map(|c| format!("{label}: {c}")))
    }

    /// Claims in Trustee's local-verifier shape, one entry per device.
    pub fn claims(&self) -> serde_json::Value {
        let devices: Vec<serde_json::Value> = self
            .devices
            .iter()
            .filter_map(|(label, v)| {
                let r = v.report.as_ref()?;
                Some(serde_json::json!({
                    "device": label,
                    "arch": v.arch.map(|a| a.as_str()),
                    "measurements": verify::measurement_claims(r),
                    "driver_version": r.driver_version(),
                    "vbios_version": r.vbios_version(),
                }))
            })
            .collect();
        serde_json::Value::Array(devices)
    }
}

/// Verifies Trustee-format (or NVAT-format) `nvidia` evidence against the
/// device digest the relying party computed (SHA-384 of the JCS of
/// `{"nonce","tee-pubkey"}`): each report must carry its first 32 bytes.
/// `device_digest = None` skips the nonce check (offline inspection only).
pub fn verify_nvidia_evidence(
    value: &serde_json::Value,
    device_digest: Option<&[u8]>,
    policy: &NvidiaPolicy,
    trust: &Trust,
) -> Result<NvidiaVerdict, EvidenceError> {
    let ev = NvidiaEvidence::from_value(value)?;
    let nonce = device_digest.map(verify::nonce_from_digest);
    let mut devices = Vec::new();
    for (index, entry) in ev.device_evidence_list.iter().enumerate() {
        let d = entry.decode(index)?;
        let label = format!("device {index} ({} {})", d.arch, d.uuid);
        let expected = Expected {
            nonce: nonce.as_ref().or(if device_digest.is_none() { d.nonce.as_ref() } else { None }),
            driver_versions: &policy.driver_versions,
            vbios_versions: &policy.vbios_versions,
            reference: if d.arch.is_gpu() { Some(&policy.reference) } else { None },
        };
        let evidence = Evidence { report: &d.report, chain_pem: &d.chain_pem, arch: Some(d.arch) };
        let mut verdict = verify::verify_device(&evidence, &expected, trust);
        if policy.refuse_switches && !d.arch.is_gpu() {
            verdict.checks.push(verify::Check {
                name: "policy",
                outcome: verify::Outcome::Fail("NVSwitch evidence is not accepted by this policy".into()),
            });
        }
        devices.push((label, verdict));
    }
    Ok(NvidiaVerdict { devices })
}

/// The dev KBS's `nvidia` device verifier, ready to wrap in its `Verifier`
/// trait: `tee() = "nvidia"`, `verify(evidence, report_data, _)` =
/// [`NvidiaVerifier::verify`].
#[derive(Debug, Clone)]
pub struct NvidiaVerifier {
    pub policy: NvidiaPolicy,
    /// The pinned device root (NVIDIA's unless a test policy pins another).
    pub root: x509_cert::Certificate,
}

/// The `nvidia` part of a relying party's policy file (TOML or JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NvidiaPolicyFile {
    /// Reference values by SPDM block index (1-based): accepted hex values.
    pub measurements: std::collections::BTreeMap<String, Vec<String>>,
    pub driver_versions: Vec<String>,
    pub vbios_versions: Vec<String>,
    pub refuse_switches: bool,
    /// PEM of a device root to pin instead of NVIDIA's (test KBS only).
    pub device_root_pem: Option<String>,
}

/// An `nvidia` policy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaPolicyError {
    #[error("nvidia policy: measurement key {0:?} is not an SPDM block index 1-255")]
    Index(String),
    #[error("nvidia policy: measurement {key}: {value:?} is not hex")]
    Value { key: String, value: String },
    #[error("nvidia policy: device root: {0}")]
    DeviceRoot(#[source] super::certs::CertError),
}

/// Why `nvidia` evidence was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaRejection {
    #[error("device report data is {0} bytes, fewer than 32")]
    ShortReportData(usize),
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The first failed check, as `device I (ARCH UUID): CHECK: FAIL (...)`.
    #[error("{0}")]
    Failed(String),
    #[error("no device verified")]
    NoneVerified,
}

impl NvidiaVerifier {
    pub fn from_policy(file: &NvidiaPolicyFile) -> Result<NvidiaVerifier, NvidiaPolicyError> {
        let mut reference = ReferenceValues::default();
        for (key, values) in &file.measurements {
            let index =
                key.parse::<u8>().ok().filter(|&i| i >= 1).ok_or_else(|| NvidiaPolicyError::Index(key.clone()))?;
            let decoded = values
                .iter()
                .map(|v| hex::decode(v).map_err(|_| NvidiaPolicyError::Value { key: key.clone(), value: v.clone() }))
                .collect::<Result<Vec<_>, _>>()?;
            reference.insert(index, decoded, "policy");
        }
        let root = match &file.device_root_pem {
            Some(pem) => super::certs::parse_pem_cert(pem).map_err(NvidiaPolicyError::DeviceRoot)?,
            None => super::certs::nvidia_device_root(),
        };
        Ok(NvidiaVerifier {
            policy: NvidiaPolicy {
                reference,
                driver_versions: file.driver_versions.clone(),
                vbios_versions: file.vbios_versions.clone(),
                refuse_switches: file.refuse_switches,
            },
            root,
        })
    }

    /// Verifies the `nvidia` additional evidence bound to `report_data` (the
    /// device digest the KBS computed from `{nonce, tee-pubkey}`) at the
    /// current time; returns Trustee-style claims or the first failure.
    pub fn verify(
        &self,
        evidence: &serde_json::Value,
        report_data: &[u8],
    ) -> Result<serde_json::Value, NvidiaRejection> {
        self.verify_at(evidence, report_data, std::time::SystemTime::now())
    }

    pub fn verify_at(
        &self,
        evidence: &serde_json::Value,
        report_data: &[u8],
        now: std::time::SystemTime,
    ) -> Result<serde_json::Value, NvidiaRejection> {
        if report_data.len() < NONCE_LEN {
            return Err(NvidiaRejection::ShortReportData(report_data.len()));
        }
        let trust = Trust { root: self.root.clone(), now };
        let verdict = verify_nvidia_evidence(evidence, Some(report_data), &self.policy, &trust)?;
        match verdict.first_failure() {
            Some(failure) => Err(NvidiaRejection::Failed(failure)),
            None if verdict.passed() => Ok(verdict.claims()),
            None => Err(NvidiaRejection::NoneVerified),
        }
    }
}
