//! Offline verification of one device's evidence: every check is run that
//! can be run and reports its own outcome, so a caller (boot flow, `xtask
//! verify-gpu`, the dev KBS) can print one line per check and refuse on the
//! first failure.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use p384::ecdsa::Signature;
use p384::ecdsa::signature::Verifier;
use x509_cert::Certificate;

use super::certs;
use super::spdm::{self, NONCE_LEN, Report};

/// Device architecture as Trustee names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Arch {
    Hopper,
    Blackwell,
    /// NVSwitch (protected PCIe).
    Ls10,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Hopper => "HOPPER",
            Arch::Blackwell => "BLACKWELL",
            Arch::Ls10 => "LS10",
        }
    }

    /// Accepts the spellings Trustee's verifier accepts.
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "HOPPER" | "Hopper" => Some(Arch::Hopper),
            "BLACKWELL" | "Blackwell" => Some(Arch::Blackwell),
            "LS10" => Some(Arch::Ls10),
            _ => None,
        }
    }

    /// The architecture a device leaf certificate names (`GH100 A01 GSP FMC
    /// LF`, `GB100 ...`, `LS10 ...`).
    pub fn of_leaf(cert: &Certificate) -> Option<Arch> {
        let subject = certs::subject(cert);
        let cn = subject.split(',').find_map(|p| p.trim().strip_prefix("CN="))?.trim();
        if cn.starts_with("GH1") {
            Some(Arch::Hopper)
        } else if cn.starts_with("GB1") || cn.starts_with("GB2") {
            Some(Arch::Blackwell)
        } else if cn.starts_with("LS10") || cn.starts_with("LS_10") {
            Some(Arch::Ls10)
        } else {
            None
        }
    }

    pub fn is_gpu(self) -> bool {
        !matches!(self, Arch::Ls10)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Golden measurements by 1-based SPDM block index (= RIM index + 1, the
/// index Trustee's claims use). Each index lists the accepted alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    pub entries: BTreeMap<u8, Vec<Vec<u8>>>,
    /// Where each index came from, for messages ("VBIOS RIM ...", "config").
    pub sources: BTreeMap<u8, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reference measurement {index} is defined by both {first} and {second}")]
pub struct ReferenceConflict {
    pub index: u8,
    pub first: String,
    pub second: String,
}

impl ReferenceValues {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds values from another source; the same index from two sources is
    /// an error (as NVIDIA's verifiers treat driver/VBIOS overlaps).
    pub fn merge(&mut self, other: ReferenceValues) -> Result<(), ReferenceConflict> {
        for (index, values) in other.entries {
            let source = other.sources.get(&index).cloned().unwrap_or_default();
            if let Some(first) = self.sources.get(&index) {
                return Err(ReferenceConflict { index, first: first.clone(), second: source });
            }
            self.entries.insert(index, values);
            self.sources.insert(index, source);
        }
        Ok(())
    }

    pub fn insert(&mut self, index: u8, values: Vec<Vec<u8>>, source: &str) {
        self.entries.insert(index, values);
        self.sources.insert(index, source.to_string());
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    /// Not applicable or not requested (e.g. no expected nonce given).
    Skip(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Pass(d) => write!(f, "{}: ok: {d}", self.name),
            Outcome::Fail(d) => write!(f, "{}: FAIL: {d}", self.name),
            Outcome::Skip(d) => write!(f, "{}: skipped: {d}", self.name),
        }
    }
}

/// All checks of one device, in order.
#[derive(Debug, Clone)]
pub struct DeviceVerdict {
    pub checks: Vec<Check>,
    pub report: Option<Report>,
    pub arch: Option<Arch>,
}

impl DeviceVerdict {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| !matches!(c.outcome, Outcome::Fail(_)))
    }

    /// The first failed check, for a one-line error.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn push(&mut self, name: &'static str, outcome: Outcome) {
        self.checks.push(Check { name, outcome });
    }
}

/// What the verifier trusts: the pinned root and the time.
#[derive(Debug, Clone)]
pub struct Trust {
    pub root: Certificate,
    pub now: SystemTime,
}

impl Trust {
    /// The pinned NVIDIA device root at the current time.
    pub fn nvidia_now() -> Trust {
        Trust { root: certs::nvidia_device_root(), now: SystemTime::now() }
    }
}

/// One device's evidence as collected.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The raw SPDM transcript.
    pub report: &'a [u8],
    /// The PEM certificate chain (leaf first).
    pub chain_pem: &'a [u8],
    /// The architecture the collector declared, if any.
    pub arch: Option<Arch>,
}

/// What the evidence must show. `None` skips that check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    pub nonce: Option<&'a [u8; NONCE_LEN]>,
    /// Accepted driver versions (the inventory's one, or a policy's list);
    /// empty skips the check.
    pub driver_versions: &'a [String],
    /// Accepted VBIOS versions, compared case-insensitively.
    pub vbios_versions: &'a [String],
    pub reference: Option<&'a ReferenceValues>,
}

/// Runs every check on one device's evidence.
pub fn verify_device(evidence: &Evidence<'_>, expected: &Expected<'_>, trust: &Trust) -> DeviceVerdict {
    let mut v = DeviceVerdict { checks: Vec::new(), report: None, arch: evidence.arch };
    let report = match Report::parse(evidence.report) {
        Ok(r) => {
            let trailing =
                if r.trailing > 0 { format!(", {} bytes after the signature", r.trailing) } else { String::new() };
            v.push("parse", Outcome::Pass(format!("{} measurement blocks{trailing}", r.measurements.len())));
            r
        }
        Err(e) => {
            v.push("parse", Outcome::Fail(format!("attestation report: {e}")));
            return v;
        }
    };

    let chain = certs::parse_pem_chain(evidence.chain_pem);
    let leaf = chain.as_ref().ok().and_then(|c| c.first());
    match &chain {
        // A CA certificate in the leaf position (e.g. a chain missing its
        // leaf) never signs reports.
        Ok(c) if c.len() > 1 && certs::is_ca(&c[0]) => v.push(
            "chain",
            Outcome::Fail(format!("first certificate {} is a CA, not a device leaf", certs::subject(&c[0]))),
        ),
        Ok(c) => v.push("chain", chain_outcome(c, trust)),
        Err(e) => v.push("chain", Outcome::Fail(e.to_string())),
    }

    // Architecture: what the collector declared must be what the chain names.
    let leaf_arch = leaf.and_then(Arch::of_leaf);
    match (evidence.arch, leaf_arch) {
        (Some(d), Some(l)) if d != l => {
            v.push("arch", Outcome::Fail(format!("declared {d} but the device certificate is {l}")))
        }
        (_, Some(l)) => {
            v.arch = Some(l);
            v.push("arch", Outcome::Pass(l.to_string()))
        }
        (Some(d), None) => {
            v.push("arch", Outcome::Fail(format!("declared {d}, device certificate names no known architecture")))
        }
        (None, None) => v.push("arch", Outcome::Fail("device certificate names no known architecture".into())),
    }

    v.push("signature", signature_outcome(&report, evidence.report, leaf));
    v.push("fwid", fwid_outcome(&report, leaf));

    let nonce = match expected.nonce {
        None => Outcome::Skip("no expected nonce given".into()),
        Some(n) if n == &report.request_nonce => Outcome::Pass(hex::encode(n)),
        Some(n) => Outcome::Fail(format!(
            "report was requested with nonce {}, expected {}",
            hex::encode(report.request_nonce),
            hex::encode(n)
        )),
    };
    v.push("nonce", nonce);

    let is_switch = v.arch == Some(Arch::Ls10);
    v.push("driver-version", version_outcome("driver", report.driver_version(), expected.driver_versions, is_switch));
    v.push("vbios-version", version_outcome("VBIOS", report.vbios_version(), expected.vbios_versions, is_switch));
    v.push("measurements", measurements_outcome(&report, expected.reference));
    v.report = Some(report);
    v
}

fn chain_outcome(chain: &[Certificate], trust: &Trust) -> Outcome {
    match certs::verify_chain(chain, &trust.root, trust.now) {
        Ok(()) => Outcome::Pass(format!("{} certificates to pinned root {}", chain.len(), certs::subject(&trust.root))),
        Err(e) => Outcome::Fail(e.to_string()),
    }
}

fn signature_outcome(report: &Report, raw: &[u8], leaf: Option<&Certificate>) -> Outcome {
    let Some(leaf) = leaf else {
        return Outcome::Fail("no device certificate to verify the report signature with".into());
    };
    let key = match certs::p384_key(0, leaf) {
        Ok(k) => k,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let Ok(sig) = Signature::from_slice(&report.signature) else {
        return Outcome::Fail("report signature is not a valid P-384 r||s value".into());
    };
    match key.verify(&raw[..report.signed_len], &sig) {
        Ok(()) => Outcome::Pass(format!("ECDSA P-384 by {}", certs::subject(leaf))),
        Err(_) => Outcome::Fail(format!("report signature does not verify with the key of {}", certs::subject(leaf))),
    }
}

fn fwid_outcome(report: &Report, leaf: Option<&Certificate>) -> Outcome {
    let Some(report_fwid) = report.fwid() else {
        return Outcome::Skip("report has no FWID (older driver)".into());
    };
    let Some(leaf) = leaf else {
        return Outcome::Fail("no device certificate to compare the FWID with".into());
    };
    match certs::leaf_fwid(leaf) {
        None => Outcome::Fail(format!("{} carries no FWID extension", certs::subject(leaf))),
        Some(cert_fwid) if cert_fwid == report_fwid => Outcome::Pass(hex::encode(report_fwid)),
        Some(cert_fwid) => Outcome::Fail(format!(
            "report FWID {} differs from the certificate's {}",
            hex::encode(report_fwid),
            hex::encode(cert_fwid)
        )),
    }
}

fn version_outcome(what: &str, reported: Option<String>, accepted: &[String], is_switch: bool) -> Outcome {
    match reported {
        None if is_switch => Outcome::Skip(format!("switches report no {what} version")),
        None => Outcome::Fail(format!("report carries no {what} version")),
        Some(r) if accepted.is_empty() => Outcome::Skip(format!("report says {r}; no expected version given")),
        Some(r) if accepted.iter().any(|e| r.eq_ignore_ascii_case(e.trim())) => Outcome::Pass(r),
        Some(r) => Outcome::Fail(format!("report says {what} {r}, expected {}", accepted.join(" or "))),
    }
}

/// RIM index 35 (SPDM block 36) measures NVDEC0; NVIDIA's verifiers skip it
/// when the report says the engine is disabled.
const NVDEC0_BLOCK: u8 = 36;

fn measurements_outcome(report: &Report, reference: Option<&ReferenceValues>) -> Outcome {
    let Some(reference) = reference.filter(|r| !r.is_empty()) else {
        return Outcome::Skip("no reference measurements given".into());
    };
    let mut mismatches = Vec::new();
    let mut compared = 0usize;
    for (&index, alternatives) in &reference.entries {
        if index == NVDEC0_BLOCK && !report.nvdec0_enabled() {
            continue;
        }
        compared += 1;
        let source = reference.sources.get(&index).map(String::as_str).unwrap_or("reference");
        match report.measurement(index) {
            None => {
                mismatches.push(format!("block {index} (RIM index {}) missing from the report ({source})", index - 1))
            }
            Some(m) if alternatives.iter().any(|a| a == &m.value) => {}
            Some(m) => mismatches.push(format!(
                "block {index} (RIM index {}) is {} but {source} expects {}",
                index - 1,
                hex::encode(&m.value),
                alternatives.iter().map(hex::encode).collect::<Vec<_>>().join(" or ")
            )),
        }
    }
    if mismatches.is_empty() {
        Outcome::Pass(format!("{compared} reference measurements match"))
    } else {
        let more = if mismatches.len() > 1 { format!(" (and {} more)", mismatches.len() - 1) } else { String::new() };
        Outcome::Fail(format!("{}{more}", mismatches[0]))
    }
}

/// All report measurements as Trustee's claims name them (1-based index → hex).
pub fn measurement_claims(report: &Report) -> BTreeMap<String, String> {
    report.measurements.iter().map(|m| (m.index.to_string(), hex::encode(&m.value))).collect()
}

/// The nonce an SPDM request carries for a device digest: Trustee's
/// `regularize_data(digest, 32)`, i.e. the first 32 bytes, zero-padded when
/// the digest is shorter.
pub fn nonce_from_digest(digest: &[u8]) -> [u8; spdm::NONCE_LEN] {
    let mut nonce = [0u8; spdm::NONCE_LEN];
    let n = digest.len().min(spdm::NONCE_LEN);
    nonce[..n].copy_from_slice(&digest[..n]);
    nonce
}
