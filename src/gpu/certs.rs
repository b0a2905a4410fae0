//! X.509 chains of NVIDIA devices and RIM signers: ECDSA P-384 / SHA-384
//! only (all NVIDIA device and RIM certificates use it), verified to a
//! pinned root at an injected time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use x509_cert::Certificate;

/// The NVIDIA device identity root ("NVIDIA Device Identity CA", P-384,
/// valid to 9999), pinned. Copied from the public samples (Trustee's
/// `nvidia_device_root.pem` == nvtrust's `verifier_device_root.pem`).
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("nvidia_device_root.pem");
/// The NVIDIA RIM signing root ("NVIDIA CoRIM signing Root CA"), pinned.
pub const NVIDIA_RIM_ROOT_PEM: &str = include_str!("nvidia_rim_root.pem");

/// Longest chain accepted (NVIDIA device chains have 5 certificates, RIM
/// chains 4).
pub const MAX_CHAIN_LEN: usize = 8;

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// TCG DICE FWID extension as Hopper GSP leaf certificates carry it.
pub const TCG_DICE_FWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1");
/// TCG DICE TcbInfo extension (Blackwell GSP leaf certificates).
pub const TCG_DICE_TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1.1");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate chain is not valid PEM/DER: {0}")]
    Parse(String),
    #[error("certificate chain is not valid PEM/DER: {0}")]
    Pem(#[from] crate::pem::PemChainError),
    #[error("certificate chain is empty")]
    Empty,
    #[error("certificate chain has {0} certificates, more than {MAX_CHAIN_LEN}")]
    TooLong(usize),
    #[error("certificate chain holds only the root, no device certificate")]
    OnlyRoot,
    #[error("certificate {index} ({subject}) is not issued by the next certificate ({issuer})")]
    IssuerMismatch { index: usize, subject: String, issuer: String },
    #[error("certificate {index} ({subject}): signature does not verify with its issuer's key")]
    BadSignature { index: usize, subject: String },
    #[error("certificate {index} ({subject}): unsupported algorithm {what}")]
    Unsupported { index: usize, subject: String, what: String },
    #[error("certificate {index} ({subject}) issues certificates but is not a CA")]
    NotCa { index: usize, subject: String },
    #[error("certificate {index} ({subject}) is not valid at {now}: valid {not_before} to {not_after}")]
    Expired { index: usize, subject: String, now: String, not_before: String, not_after: String },
    #[error("chain does not end at the pinned root {root} (it ends at {last})")]
    UntrustedRoot { root: String, last: String },
}

/// Parses a PEM chain (leaf first, as NVML and RIMs give it).
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<Certificate>, CertError> {
    if pem.iter().all(u8::is_ascii_whitespace) {
        return Err(CertError::Empty);
    }
    let certs = crate::pem::certificates(pem)?;
    if certs.len() > MAX_CHAIN_LEN {
        return Err(CertError::TooLong(certs.len()));
    }
    Ok(certs)
}

pub fn parse_pem_cert(pem: &str) -> Result<Certificate, CertError> {
    let mut certs = parse_pem_chain(pem.as_bytes())?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        n => Err(CertError::Parse(format!("expected one certificate, found {n}"))),
    }
}

pub fn parse_der_cert(der: &[u8]) -> Result<Certificate, CertError> {
    Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))
}

pub fn subject(cert: &Certificate) -> String {
    let s = cert.tbs_certificate.subject.to_string();
    if s.is_empty() { "<empty subject>".into() } else { s }
}

/// Verifies `chain` (leaf first) up to `root` at time `now`.
///
/// The chain may end with a copy of the root (as NVML returns it) or with
/// the certificate the root issued; either way trust comes only from the
/// pinned root, never from the chain's own last certificate.
pub fn verify_chain(chain: &[Certificate], root: &Certificate, now: SystemTime) -> Result<(), CertError> {
    let Some(last) = chain.last() else { return Err(CertError::Empty) };
    if chain.len() > MAX_CHAIN_LEN {
        return Err(CertError::TooLong(chain.len()));
    }
    let root_der = root.to_der().map_err(|e| CertError::Parse(e.to_string()))?;
    let is_root = |c: &Certificate| c.to_der().is_ok_and(|d| d == root_der);
    let mut path: Vec<&Certificate> = chain.iter().collect();
    if is_root(last) {
        if chain.len() == 1 {
            return Err(CertError::OnlyRoot);
        }
    } else {
        // A self-issued last certificate that is not the pinned root is a
        // foreign root; anything else must be issued by the pinned root.
        if last.tbs_certificate.issuer != root.tbs_certificate.subject
            || last.tbs_certificate.issuer == last.tbs_certificate.subject
        {
            return Err(CertError::UntrustedRoot { root: subject(root), last: subject(last) });
        }
        path.push(root);
    }
    for (index, cert) in path.iter().enumerate() {
        check_validity(index, cert, now)?;
        // The pinned root itself is trusted as configured, not by its self-signature.
        let Some(issuer) = path.get(index + 1).copied() else {
            break;
        };
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(CertError::IssuerMismatch { index, subject: subject(cert), issuer: subject(issuer) });
        }
        if !is_ca(issuer) {
            return Err(CertError::NotCa { index: index + 1, subject: subject(issuer) });
        }
        verify_signed_by(index, cert, issuer)?;
    }
    Ok(())
}

fn check_validity(index: usize, cert: &Certificate, now: SystemTime) -> Result<(), CertError> {
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_system_time();
    let na = v.not_after.to_system_time();
    if now < nb || now > na {
        return Err(CertError::Expired {
            index,
            subject: subject(cert),
            now: format_time(now),
            not_before: v.not_before.to_string(),
            not_after: v.not_after.to_string(),
        });
    }
    Ok(())
}

pub fn format_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    match der::DateTime::from_unix_duration(secs) {
        Ok(dt) => dt.to_string(),
        Err(_) => format!("{}s after the epoch", secs.as_secs()),
    }
}

pub fn is_ca(cert: &Certificate) -> bool {
    let Some(exts) = &cert.tbs_certificate.extensions else {
        return false;
    };
    exts.iter()
        .filter(|e| e.extn_id == BASIC_CONSTRAINTS)
        .any(|e| x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|bc| bc.ca))
}

/// The P-384 public key of a certificate.
pub fn p384_key(index: usize, cert: &Certificate) -> Result<VerifyingKey, CertError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let unsupported = |what: String| CertError::Unsupported { index, subject: subject(cert), what };
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(unsupported(format!("key {}", spki.algorithm.oid)));
    }
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(SECP384R1) {
        return Err(unsupported("curve (not P-384)".into()));
    }
    let point = spki.subject_public_key.as_bytes().ok_or_else(|| unsupported("key encoding".into()))?;
    VerifyingKey::from_sec1_bytes(point).map_err(|_| unsupported("P-384 point".into()))
}

fn verify_signed_by(index: usize, cert: &Certificate, issuer: &Certificate) -> Result<(), CertError> {
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA384 {
        return Err(CertError::Unsupported {
            index,
            subject: subject(cert),
            what: format!("signature {}", cert.signature_algorithm.oid),
        });
    }
    let key = p384_key(index + 1, issuer)?;
    let tbs = cert.tbs_certificate.to_der().map_err(|e| CertError::Parse(e.to_string()))?;
    let bad = || CertError::BadSignature { index, subject: subject(cert) };
    let sig_bytes = cert.signature.as_bytes().ok_or_else(bad)?;
    let sig = Signature::from_der(sig_bytes).map_err(|_| bad())?;
    key.verify(&tbs, &sig).map_err(|_| bad())
}

/// The FWID a device leaf certificate binds: Hopper puts it in the last 48
/// bytes of the TCG DICE FWID extension; Blackwell in `fwids[0]` of the
/// DICE TcbInfo extension. `None` when the certificate carries neither.
pub fn leaf_fwid(cert: &Certificate) -> Option<Vec<u8>> {
    let exts = cert.tbs_certificate.extensions.as_ref()?;
    for e in exts {
        let value = e.extn_value.as_bytes();
        if e.extn_id == TCG_DICE_TCB_INFO {
            return tcb_info_first_fwid(value);
        }
        if e.extn_id == TCG_DICE_FWID && value.len() >= 48 {
            return Some(value[value.len() - 48..].to_vec());
        }
    }
    None
}

/// DiceTcbInfo ::= SEQUENCE { ... fwids [6] IMPLICIT SEQUENCE OF FWID ... }
/// FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }
fn tcb_info_first_fwid(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, body, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, value, next) = tlv(rest)?;
        rest = next;
        if tag == 0xA6 {
            let (fwid_tag, fwid, _) = tlv(value)?;
            if fwid_tag != 0x30 {
                return None;
            }
            let (oid_tag, _, after_oid) = tlv(fwid)?;
            let (digest_tag, digest, _) = tlv(after_oid)?;
            return (oid_tag == 0x06 && digest_tag == 0x04).then(|| digest.to_vec());
        }
    }
    None
}

/// One DER TLV with a single-byte tag: (tag, value, rest).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*data.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, data.get(header..end)?, data.get(end..)?))
}

/// The pinned NVIDIA device root.
pub fn nvidia_device_root() -> Certificate {
    // The embedded root is a constant checked by a unit test; failing here
    // would be a build defect, not input.
    parse_pem_cert(NVIDIA_DEVICE_ROOT_PEM).unwrap_or_else(|e| panic!("embedded NVIDIA device root: {e}"))
}

/// The pinned NVIDIA RIM signing root.
pub fn nvidia_rim_root() -> Certificate {
    parse_pem_cert(NVIDIA_RIM_ROOT_PEM).unwrap_or_else(|e| panic!("embedded NVIDIA RIM root: {e}"))
}

/// Seconds since the epoch as a `SystemTime` (for injected clocks).
pub fn unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
