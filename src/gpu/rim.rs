//! NVIDIA Reference Integrity Manifests: SWID tags (ISO 19770-2 + TCG RIM-IM)
//! listing golden measurements, signed with an enveloped XMLDSig
//! (ECDSA P-384 / SHA-384, Canonical XML 1.1) by a certificate chained to
//! the NVIDIA RIM root.
//!
//! RIM `index` is 0-based; SPDM block indexes are 1-based: RIM index i is
//! block i+1.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p384::ecdsa::Signature;
use p384::ecdsa::signature::Verifier;
use sha2::{Digest, Sha384};
use x509_cert::Certificate;

use super::certs::{self, CertError};
use super::verify::ReferenceValues;
use super::xml::{self, Element, XmlError};

const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
const SHA384_URIS: [&str; 2] =
    ["http://www.w3.org/2001/04/xmldsig-more#sha384", "http://www.w3.org/2001/04/xmlenc#sha384"];
/// NVIDIA RIMs have 64 measurement slots; refuse absurd files.
const MAX_MEASUREMENTS: usize = 256;
const MAX_ALTERNATIVES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RimError {
    #[error("RIM is not well-formed: {0}")]
    Xml(#[from] XmlError),
    #[error("RIM is not a SWID tag: {0}")]
    Format(String),
    #[error("RIM signature is malformed: {0}")]
    SignatureFormat(String),
    #[error("RIM has no canonical form: {0}")]
    Canonical(#[from] super::xml::UndeclaredPrefix),
    #[error("RIM signer chain: {0}")]
    Chain(#[from] CertError),
    #[error("RIM content digest does not match its signature's reference (the file was modified after signing)")]
    DigestMismatch,
    #[error("RIM signature does not verify with the key of {0}")]
    BadSignature(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RimKind {
    Driver,
    Vbios,
}

impl RimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RimKind::Driver => "driver",
            RimKind::Vbios => "VBIOS",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimMeasurement {
    /// 0-based RIM index.
    pub index: u16,
    pub active: bool,
    pub alternatives: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Rim {
    pub tag_id: String,
    /// Chip (`GH100`, `GB100`).
    pub product: String,
    /// Driver (`550.144.03`) or VBIOS (`96.00.5E.00.01`) version.
    pub version: String,
    pub kind: RimKind,
    pub measurements: Vec<RimMeasurement>,
    root: Element,
}

impl Rim {
    pub fn parse(bytes: &[u8]) -> Result<Rim, RimError> {
        let root = xml::parse(bytes)?;
        let fmt = |m: &str| RimError::Format(m.to_string());
        if root.local_name() != "SoftwareIdentity" {
            return Err(fmt("root element is not SoftwareIdentity"));
        }
        let tag_id = root.attr("tagId").unwrap_or_default().to_string();
        let meta = root.child("Meta").ok_or_else(|| fmt("no Meta element"))?;
        let version = meta.attr("colloquialVersion").ok_or_else(|| fmt("Meta has no colloquialVersion"))?.to_string();
        let product = meta.attr("product").or(root.attr("name")).unwrap_or_default().to_string();
        // VBIOS versions have five dotted hex parts; driver versions fewer.
        let kind = if version.split('.').count() == 5 { RimKind::Vbios } else { RimKind::Driver };
        let payload = root.child("Payload").ok_or_else(|| fmt("no Payload element"))?;
        let mut measurements: Vec<RimMeasurement> = Vec::new();
        for r in payload.elements().filter(|e| e.local_name() == "Resource") {
            if r.attr("type") != Some("Measurement") {
                continue;
            }
            if measurements.len() == MAX_MEASUREMENTS {
                return Err(fmt("too many measurements"));
            }
            let m = parse_measurement(r)?;
            if measurements.iter().any(|seen| seen.index == m.index) {
                return Err(RimError::Format(format!("measurement index {} appears twice", m.index)));
            }
            measurements.push(m);
        }
        Ok(Rim { tag_id, product, version, kind, measurements, root })
    }

    /// Golden values of the active measurements, keyed by SPDM block index.
    pub fn reference_values(&self) -> ReferenceValues {
        let source = format!("{} RIM {}", self.kind.as_str(), self.version);
        let mut rv = ReferenceValues::default();
        for m in self.measurements.iter().filter(|m| m.active) {
            if let Ok(block) = u8::try_from(m.index + 1) {
                rv.insert(block, m.alternatives.clone(), &source);
            }
        }
        rv
    }

    fn signature(&self) -> Result<&Element, RimError> {
        let mut sigs = self.root.elements().filter(|e| e.local_name() == "Signature");
        let sig = sigs.next().ok_or_else(|| RimError::SignatureFormat("no Signature element".into()))?;
        if sigs.next().is_some() {
            return Err(RimError::SignatureFormat("more than one Signature element".into()));
        }
        Ok(sig)
    }

    /// The signer chain from KeyInfo (signer first).
    pub fn signer_chain(&self) -> Result<Vec<Certificate>, RimError> {
        let sig = self.signature()?;
        let data = sig
            .child("KeyInfo")
            .and_then(|k| k.child("X509Data"))
            .ok_or_else(|| RimError::SignatureFormat("no KeyInfo/X509Data".into()))?;
        let mut chain = Vec::new();
        for c in data.elements().filter(|e| e.local_name() == "X509Certificate") {
            let der = decode_b64(&c.text())
                .ok_or_else(|| RimError::SignatureFormat("X509Certificate is not base64".into()))?;
            chain.push(certs::parse_der_cert(&der)?);
        }
        if chain.is_empty() {
            return Err(RimError::SignatureFormat("no X509Certificate".into()));
        }
        Ok(chain)
    }

    /// Verifies the signer chain to `root` at `now`, then the XMLDSig
    /// (reference digest over the canonical document without the signature,
    /// and the ECDSA signature over the canonical SignedInfo). Returns the
    /// signer's subject.
    pub fn verify_signature(&self, root: &Certificate, now: SystemTime) -> Result<String, RimError> {
        let chain = self.signer_chain()?;
        certs::verify_chain(&chain, root, now)?;
        let sig = self.signature()?;
        let dsig_fmt = |m: &str| RimError::SignatureFormat(m.to_string());
        let ds_prefix = sig.prefix();
        let ns_ok = sig.attrs.iter().any(|(n, v)| {
            v == DSIG_NS && (n == "xmlns" && ds_prefix.is_empty() || n.strip_prefix("xmlns:") == Some(ds_prefix))
        });
        if !ns_ok {
            return Err(dsig_fmt("Signature is not in the XMLDSig namespace"));
        }
        let signed_info = sig.child("SignedInfo").ok_or_else(|| dsig_fmt("no SignedInfo"))?;
        let alg = |e: Option<&Element>| e.and_then(|e| e.attr("Algorithm")).unwrap_or_default().to_string();
        if alg(signed_info.child("CanonicalizationMethod")) != C14N11 {
            return Err(dsig_fmt("SignedInfo canonicalization is not C14N 1.1"));
        }
        if alg(signed_info.child("SignatureMethod")) != ECDSA_SHA384 {
            return Err(dsig_fmt("signature method is not ecdsa-sha384"));
        }
        let mut refs = signed_info.elements().filter(|e| e.local_name() == "Reference");
        let reference = refs.next().ok_or_else(|| dsig_fmt("no Reference"))?;
        if refs.next().is_some() {
            return Err(dsig_fmt("more than one Reference"));
        }
        if reference.attr("URI") != Some("") {
            return Err(dsig_fmt("Reference does not cover the whole document (URI=\"\")"));
        }
        let transforms: Vec<String> =
            reference.child("Transforms").map(|t| t.elements().map(|e| alg(Some(e))).collect()).unwrap_or_default();
        if transforms != [ENVELOPED, C14N11] {
            return Err(dsig_fmt("Reference transforms are not enveloped-signature + C14N 1.1"));
        }
        if !SHA384_URIS.contains(&alg(reference.child("DigestMethod")).as_str()) {
            return Err(dsig_fmt("digest method is not SHA-384"));
        }
        let digest_value = reference
            .child("DigestValue")
            .and_then(|d| decode_b64(&d.text()))
            .ok_or_else(|| dsig_fmt("DigestValue is not base64"))?;

        let canonical_doc = xml::canonicalize(&self.root, &[], &|e| std::ptr::eq(e, sig))?;
        if Sha384::digest(canonical_doc.as_bytes())[..] != digest_value[..] {
            return Err(RimError::DigestMismatch);
        }
        let canonical_si = xml::canonicalize(signed_info, &[&self.root, sig], &|_| false)?;
        let sig_bytes = sig
            .child("SignatureValue")
            .and_then(|s| decode_b64(&s.text()))
            .ok_or_else(|| dsig_fmt("SignatureValue is not base64"))?;
        let signer = &chain[0];
        let bad = || RimError::BadSignature(certs::subject(signer));
        let signature = Signature::from_slice(&sig_bytes).map_err(|_| bad())?;
        let key = certs::p384_key(0, signer)?;
        key.verify(canonical_si.as_bytes(), &signature).map_err(|_| bad())?;
        Ok(certs::subject(signer))
    }
}

fn parse_measurement(r: &Element) -> Result<RimMeasurement, RimError> {
    let fmt = |m: String| RimError::Format(m);
    let index: u16 =
        r.attr("index").and_then(|i| i.parse().ok()).ok_or_else(|| fmt("Resource without a numeric index".into()))?;
    let active = match r.attr("active") {
        Some("True" | "true") => true,
        Some("False" | "false") => false,
        _ => {
            return Err(fmt(format!("measurement {index}: active is not True/False")));
        }
    };
    let count: usize = r
        .attr("alternatives")
        .and_then(|a| a.parse().ok())
        .filter(|&n| (1..=MAX_ALTERNATIVES).contains(&n))
        .ok_or_else(|| fmt(format!("measurement {index}: bad alternatives count")))?;
    let size: usize = r.attr("size").and_then(|s| s.parse().ok()).unwrap_or(48);
    let mut alternatives = Vec::with_capacity(count);
    for i in 0..count {
        let h = r
            .attr(&format!("Hash{i}"))
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| fmt(format!("measurement {index}: Hash{i} missing or not hex")))?;
        if h.len() != size {
            return Err(fmt(format!("measurement {index}: Hash{i} is {} bytes, size says {size}", h.len())));
        }
        alternatives.push(h);
    }
    Ok(RimMeasurement { index, active, alternatives })
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let t: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(t).ok()
}

/// The RIM service ID of a GPU's VBIOS RIM (NVIDIA's naming), from the
/// report's opaque project/SKU fields.
pub fn vbios_rim_id(project: &str, project_sku: &str, chip_sku: &str, vbios: &str) -> String {
    format!("NV_GPU_VBIOS_{project}_{project_sku}_{chip_sku}_{}", vbios.replace('.', "").to_uppercase())
}

/// Loads RIM files into reference values: each is parsed, its signature
/// and signer chain verified to `root` at `now` when `verify` is set, and
/// their active measurements merged (an index defined twice is an error).
pub fn load_reference(
    rims: &[(String, Vec<u8>)],
    root: &Certificate,
    now: SystemTime,
    verify: bool,
) -> Result<ReferenceValues, RimLoadError> {
    let mut reference = ReferenceValues::default();
    for (name, bytes) in rims {
        let at = |error: RimError| RimLoadError::Rim { name: name.clone(), error: Box::new(error) };
        let rim = Rim::parse(bytes).map_err(at)?;
        if verify {
            rim.verify_signature(root, now).map_err(at)?;
        }
        reference.merge(rim.reference_values()).map_err(|e| RimLoadError::Conflict(e.to_string()))?;
    }
    Ok(reference)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RimLoadError {
    #[error("{name}: {error}")]
    Rim { name: String, error: Box<RimError> },
    #[error("{0}")]
    Conflict(String),
}
