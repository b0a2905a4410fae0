//! TDX evidence verification (Trustee `tdx` evidence JSON).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use der::Encode;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{VerifyError, check_init_data, check_report_data, eventlog};
use crate::tee::tdx::quote::{self, MAX_QUOTE_LEN, QE_REPORT_LEN, Quote};
use crate::tee::tdx::{MAX_EVENTLOG_LEN, TdReport};

/// SHA-256 of the DER of Intel's SGX Root CA, the last certificate of every
/// PCK chain (valid 2018-05-21 → 2049-12-31).
pub const INTEL_SGX_ROOT_CA_SHA256: &str = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";
/// Intel's QE vendor ID in the quote header.
pub const INTEL_QE_VENDOR_ID: &str = "939a7233f79c4ca9940a0db3957f0607";
/// MRSIGNER and ISVPRODID of Intel's TD Quoting Enclave (Intel PCS
/// `TD_QE` identity).
pub const TD_QE_MRSIGNER: &str = "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5";
pub const TD_QE_ISVPRODID: u16 = 2;

/// Reference values for TDX.
#[derive(Debug, Clone)]
pub struct TdxPolicy {
    /// Accepted MRTDs; empty accepts any (development only).
    pub mrtd: Vec<[u8; 48]>,
    /// Expected RTMR0..3 where given.
    pub rtmr: [Option<[u8; 48]>; 4],
    /// Expected MRCONFIGID (besides the init-data binding).
    pub mr_config_id: Option<[u8; 48]>,
    /// Accept TDs with TDATTRIBUTES.DEBUG.
    pub allow_debug: bool,
    /// Check the quote signature, QE report and PCK chain (on by default;
    /// only parser tests turn it off).
    pub verify_signature: bool,
    /// Replay `cc_eventlog` against RTMR0..3 when the evidence carries one.
    pub replay_eventlog: bool,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        Self {
            mrtd: Vec::new(),
            rtmr: [None; 4],
            mr_config_id: None,
            allow_debug: false,
            verify_signature: true,
            replay_eventlog: true,
        }
    }
}

#[derive(Deserialize)]
struct Evidence {
    cc_eventlog: Option<String>,
    quote: String,
}

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed { tee: "tdx", reason: reason.into() }
}

/// Verifies Trustee `tdx` evidence; returns its claims.
pub fn verify(
    evidence: &serde_json::Value,
    report_data_digest: &[u8],
    init_data_digest: Option<&[u8]>,
    policy: &TdxPolicy,
) -> Result<serde_json::Value, VerifyError> {
    let ev = Evidence::deserialize(evidence).map_err(|e| malformed(e.to_string()))?;
    // Bound the base64 before decoding it.
    if ev.quote.len() > MAX_QUOTE_LEN * 4 / 3 + 4 {
        return Err(malformed(format!("quote of {} base64 characters is too large", ev.quote.len())));
    }
    let raw = STANDARD.decode(&ev.quote).map_err(|e| malformed(format!("quote is not base64: {e}")))?;
    let quote = quote::parse(&raw).map_err(|e| malformed(e.to_string()))?;
    let body = &quote.body;

    check_report_data(&body.report_data, report_data_digest)?;
    check_init_data("MRCONFIGID", &body.mr_config_id, init_data_digest)?;
    if body.debug() && !policy.allow_debug {
        return Err(VerifyError::Debug(format!("TD attributes {:#x} have DEBUG set", body.attributes())));
    }
    check_reference_values(body, policy)?;
    if policy.verify_signature {
        verify_quote_signature(&quote)?;
    }
    let eventlog_events = match (&ev.cc_eventlog, policy.replay_eventlog) {
        (Some(log), true) => Some(replay(log, body)?),
        _ => None,
    };

    Ok(serde_json::json!({
        "tee": "tdx",
        "quote_version": quote.version,
        "mr_td": hex::encode(body.mr_td),
        "mr_config_id": hex::encode(body.mr_config_id),
        "mr_owner": hex::encode(body.mr_owner),
        "mr_seam": hex::encode(body.mr_seam),
        "rtmr": body.rtmr.iter().map(hex::encode).collect::<Vec<_>>(),
        "report_data": hex::encode(body.report_data),
        "td_attributes": body.attributes(),
        "debug": body.debug(),
        "tee_tcb_svn": hex::encode(body.tee_tcb_svn),
        "signature_verified": policy.verify_signature,
        "eventlog_events": eventlog_events,
    }))
}

fn check_reference_values(body: &TdReport, policy: &TdxPolicy) -> Result<(), VerifyError> {
    if !policy.mrtd.is_empty() && !policy.mrtd.contains(&body.mr_td) {
        return Err(VerifyError::ReferenceValue { field: "MRTD", found: hex::encode(body.mr_td) });
    }
    const RTMR: [&str; 4] = ["RTMR0", "RTMR1", "RTMR2", "RTMR3"];
    for (i, expected) in policy.rtmr.iter().enumerate() {
        if expected.is_some_and(|e| e != body.rtmr[i]) {
            return Err(VerifyError::ReferenceValue { field: RTMR[i], found: hex::encode(body.rtmr[i]) });
        }
    }
    if policy.mr_config_id.is_some_and(|e| e != body.mr_config_id) {
        return Err(VerifyError::ReferenceValue { field: "MRCONFIGID", found: hex::encode(body.mr_config_id) });
    }
    Ok(())
}

fn replay(log_b64: &str, body: &TdReport) -> Result<usize, VerifyError> {
    if log_b64.len() > MAX_EVENTLOG_LEN * 4 / 3 + 4 {
        return Err(VerifyError::EventLogSize(log_b64.len()));
    }
    let log = STANDARD.decode(log_b64).map_err(VerifyError::EventLogEncoding)?;
    let replayed = eventlog::replay(&log)?;
    for (index, (rtmr, quoted)) in replayed.rtmr.iter().zip(&body.rtmr).enumerate() {
        if rtmr != quoted {
            return Err(VerifyError::RtmrMismatch { index, replayed: hex::encode(rtmr), quoted: hex::encode(quoted) });
        }
    }
    Ok(replayed.events)
}

fn signature_error(what: impl Into<String>) -> VerifyError {
    VerifyError::Signature(what.into())
}

/// Quote signature → attestation key → QE report → PCK leaf → Intel root.
fn verify_quote_signature(quote: &Quote<'_>) -> Result<(), VerifyError> {
    if hex::encode(quote.qe_vendor_id) != INTEL_QE_VENDOR_ID {
        return Err(signature_error(format!("QE vendor {} is not Intel", hex::encode(quote.qe_vendor_id))));
    }
    let sig = quote.signature_data().map_err(|e| malformed(e.to_string()))?;

    let mut sec1 = [0u8; 65];
    sec1[0] = 4;
    sec1[1..].copy_from_slice(sig.attestation_key);
    let att_key =
        VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| signature_error("attestation key is not a P-256 point"))?;
    let quote_sig =
        Signature::from_slice(sig.signature).map_err(|_| signature_error("quote signature is malformed"))?;
    att_key
        .verify(quote.signed, &quote_sig)
        .map_err(|_| signature_error("the attestation key does not sign this quote"))?;

    // The QE vouches for the attestation key in its report data.
    let qe = sig.qe_report;
    let mut h = Sha256::new();
    h.update(sig.attestation_key);
    h.update(sig.qe_auth_data);
    let expected: [u8; 32] = h.finalize().into();
    if qe.len() != QE_REPORT_LEN || qe[320..352] != expected || qe[352..384].iter().any(|&b| b != 0) {
        return Err(signature_error("QE report data does not bind the attestation key"));
    }
    if hex::encode(&qe[128..160]) != TD_QE_MRSIGNER || u16::from_le_bytes([qe[256], qe[257]]) != TD_QE_ISVPRODID {
        return Err(signature_error("the quoting enclave is not Intel's TD QE"));
    }

    let chain = pck_chain(sig.pck_chain)?;
    let leaf_key = p256_key(&chain[0])?;
    let qe_sig = Signature::from_slice(sig.qe_report_signature)
        .map_err(|_| signature_error("QE report signature is malformed"))?;
    leaf_key.verify(qe, &qe_sig).map_err(|_| signature_error("the PCK certificate does not sign the QE report"))?;
    Ok(())
}

fn p256_key(cert: &x509_cert::Certificate) -> Result<VerifyingKey, VerifyError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| VerifyError::Chain("PCK chain certificate has no P-256 key".into()))
}

/// Parses the PEM chain (leaf first) and checks every signature up to the
/// pinned Intel root. Validity dates are not checked: the dev KBS has no
/// trusted time source policy, and Intel's root outlives this project.
fn pck_chain(pem: &[u8]) -> Result<Vec<x509_cert::Certificate>, VerifyError> {
    let chain_err = |m: String| VerifyError::Chain(m);
    let end = pem.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let certs = crate::pem::certificates(&pem[..end]).map_err(|e| chain_err(format!("PCK chain: {e}")))?;
    if certs.len() < 2 || certs.len() > 4 {
        return Err(chain_err(format!("PCK chain has {} certificates", certs.len())));
    }
    for (i, cert) in certs.iter().enumerate() {
        let issuer = certs.get(i + 1).unwrap_or(cert);
        let key = p256_key(issuer)?;
        let tbs = cert.tbs_certificate.to_der().map_err(|e| chain_err(e.to_string()))?;
        let sig = p256::ecdsa::Signature::from_der(cert.signature.raw_bytes())
            .map_err(|_| chain_err(format!("certificate {i} has no ECDSA signature")))?;
        key.verify(&tbs, &sig)
            .map_err(|_| chain_err(format!("certificate {i} of the PCK chain is not signed by its issuer")))?;
    }
    let root = certs.last().map(|c| c.to_der()).transpose().map_err(|e| chain_err(e.to_string()))?.unwrap_or_default();
    if hex::encode(Sha256::digest(&root)) != INTEL_SGX_ROOT_CA_SHA256 {
        return Err(chain_err("the PCK chain does not end at Intel's SGX Root CA".into()));
    }
    Ok(certs)
}
