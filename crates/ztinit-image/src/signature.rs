//! Sigstore/cosign key-based image signatures (docs/image.md).
//!
//! The signature of manifest `sha256:HEX` lives in the same repository at
//! tag `sha256-HEX.sig`: an OCI manifest whose layers are simple-signing
//! payloads (`application/vnd.dev.cosign.simplesigning.v1+json`), each
//! with the annotation `dev.cosignproject.cosign/signature`: standard
//! base64 of an ASN.1 DER ECDSA signature over the payload bytes with
//! SHA-256. This is what `cosign sign --key` and containers/image
//! (`skopeo copy --sign-by-sigstore-private-key` with
//! `use-sigstore-attachments`) write.
//!
//! Order of checks, cheapest and least exposed first: sizes, then the
//! signature over the raw payload bytes, and only then is the (now
//! authentic) payload JSON parsed and compared with what was pulled.

mod pem_blocks;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub(crate) use pem_blocks::{Block, PemError, blocks as pem_blocks};

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// Payloads are a few hundred bytes (digest, reference, creator, time).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024;
/// The `.sig` manifest: a few hundred bytes per signature.
pub const MAX_SIG_MANIFEST_LEN: usize = 256 * 1024;
/// More signatures than this on one image is an attack, not a policy.
pub const MAX_SIGNATURE_LAYERS: usize = 64;
/// Publisher keys in the baked policy.
pub const MAX_PUBLIC_KEYS: usize = 32;
/// Base64 of a DER P-256 signature is at most 96 characters.
const MAX_SIGNATURE_B64_LEN: usize = 256;

/// Why a signature (or the key list, or the `.sig` manifest) was refused.
/// Messages name what failed; they carry no secret material (there is none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature public keys: {0}")]
    Pem(#[from] PemError),
    #[error("signature public key {index} is a {label:?} PEM block, not a PUBLIC KEY")]
    KeyLabel { index: usize, label: String },
    #[error("signature public key {index} is not an ECDSA P-256 SubjectPublicKeyInfo: {reason}")]
    KeyType { index: usize, reason: String },
    #[error("signature manifest is {got} bytes, more than the {MAX_SIG_MANIFEST_LEN}-byte cap")]
    ManifestTooLarge { got: usize },
    #[error("signature manifest is not an OCI manifest: {0}")]
    Manifest(String),
    #[error("signature manifest has {got} layers, more than the cap of {MAX_SIGNATURE_LAYERS}")]
    TooManyLayers { got: usize },
    #[error("signature manifest layer {index}: {reason}")]
    Layer { index: usize, reason: String },
    #[error("signature manifest has no {SIMPLE_SIGNING_MEDIA_TYPE} layer with a {SIGNATURE_ANNOTATION} annotation")]
    NoSignatures,
    #[error("signature payload is {got} bytes, more than the {MAX_PAYLOAD_LEN}-byte cap")]
    PayloadTooLarge { got: u64 },
    #[error("signature payload does not match its layer descriptor ({0})")]
    PayloadBlob(String),
    #[error("signature annotation is not standard base64")]
    Base64,
    #[error("signature is not an ASN.1 DER ECDSA P-256 signature")]
    Der,
    #[error("signature does not verify under any of the {keys} configured public keys")]
    NoKeyVerifies { keys: usize },
    #[error("signed payload is not a simple-signing document: {0}")]
    Payload(String),
    #[error("signed payload critical.type {0:?} is not {SIGNATURE_TYPE:?}")]
    Type(String),
    #[error("signed manifest digest {signed} is not the pulled manifest's {pulled}")]
    DigestMismatch { signed: String, pulled: String },
    #[error("signed identity {signed:?} does not match the image reference {expected:?}")]
    IdentityMismatch { signed: String, expected: String },
    #[error("no valid signature among {} signature layers: {}", .0.len(), .0.join("; "))]
    NoneVerified(Vec<String>),
}

/// The publishers' keys of a signature policy (baked only).
#[derive(Debug, Clone)]
pub struct PublicKeys {
    keys: Vec<VerifyingKey>,
}

impl PublicKeys {
    /// One or more `PUBLIC KEY` (SubjectPublicKeyInfo) PEM blocks, each an
    /// ECDSA P-256 key (what `cosign generate-key-pair` writes as
    /// `cosign.pub`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, SignatureError> {
        let mut keys = Vec::new();
        for (index, Block { label, der }) in pem_blocks(pem, MAX_PUBLIC_KEYS)?.into_iter().enumerate() {
            if label != "PUBLIC KEY" {
                return Err(SignatureError::KeyLabel { index, label: label.chars().take(40).collect() });
            }
            let key = VerifyingKey::from_public_key_der(&der)
                .map_err(|e| SignatureError::KeyType { index, reason: e.to_string() })?;
            keys.push(key);
        }
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One signature of the `.sig` manifest: the payload blob's descriptor
/// (fetch it with the registry client, capped at [`MAX_PAYLOAD_LEN`]) and
/// the signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub media_type: String,
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
    pub signature_b64: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SigManifest {
    schema_version: u32,
    #[serde(default)]
    layers: Vec<SigDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SigDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The signature layers of a `sha256-HEX.sig` manifest. Layers of other
/// media types (other attachments) are skipped; a simple-signing layer
/// without the signature annotation cannot verify and is skipped too.
pub fn signature_layers(sig_manifest: &[u8]) -> Result<Vec<SignatureLayer>, SignatureError> {
    if sig_manifest.len() > MAX_SIG_MANIFEST_LEN {
        return Err(SignatureError::ManifestTooLarge { got: sig_manifest.len() });
    }
    let manifest: SigManifest =
        serde_json::from_slice(sig_manifest).map_err(|e| SignatureError::Manifest(e.to_string()))?;
    if manifest.schema_version != 2 {
        return Err(SignatureError::Manifest(format!("schemaVersion {} is not 2", manifest.schema_version)));
    }
    if manifest.layers.len() > MAX_SIGNATURE_LAYERS {
        return Err(SignatureError::TooManyLayers { got: manifest.layers.len() });
    }
    let mut out = Vec::new();
    for (index, layer) in manifest.layers.into_iter().enumerate() {
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            continue;
        }
        let Some(signature_b64) = layer.annotations.get(SIGNATURE_ANNOTATION).cloned() else { continue };
        if !is_sha256_digest(&layer.digest) {
            return Err(SignatureError::Layer {
                index,
                reason: format!("digest {:?} is not sha256:<hex>", layer.digest),
            });
        }
        out.push(SignatureLayer {
            media_type: layer.media_type,
            digest: layer.digest,
            size: layer.size,
            annotations: layer.annotations,
            signature_b64,
        });
    }
    if out.is_empty() {
        return Err(SignatureError::NoSignatures);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    critical: Critical,
    // Free-form (creator, timestamp, annotations); cosign writes null.
    #[serde(default)]
    #[allow(dead_code)] // present so that deny_unknown_fields admits it
    optional: Option<serde::de::IgnoredAny>,
}

// Every member of `critical` must be understood (as containers/image
// requires): unknown ones are refused, duplicates too (serde's derive).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: CriticalImage,
    identity: CriticalIdentity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CriticalIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

/// Checks one signature: valid under one of `keys` over `payload`, and the
/// payload binds `manifest_digest` (`sha256:<hex>` of the pulled manifest
/// bytes) to `identity` (`registry/repo[:tag]`, `Reference::identity()`).
pub fn verify_payload(
    payload: &[u8],
    signature_b64: &str,
    keys: &PublicKeys,
    manifest_digest: &str,
    identity: &str,
) -> Result<(), SignatureError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(SignatureError::PayloadTooLarge { got: u64::try_from(payload.len()).unwrap_or(u64::MAX) });
    }
    if signature_b64.len() > MAX_SIGNATURE_B64_LEN {
        return Err(SignatureError::Base64);
    }
    let der = STANDARD.decode(signature_b64).map_err(|_| SignatureError::Base64)?;
    let signature = Signature::from_der(&der).map_err(|_| SignatureError::Der)?;
    if !keys.keys.iter().any(|k| k.verify(payload, &signature).is_ok()) {
        return Err(SignatureError::NoKeyVerifies { keys: keys.len() });
    }
    let payload: Payload = serde_json::from_slice(payload).map_err(|e| SignatureError::Payload(e.to_string()))?;
    let critical = payload.critical;
    if critical.kind != SIGNATURE_TYPE {
        return Err(SignatureError::Type(critical.kind.chars().take(80).collect()));
    }
    if critical.image.docker_manifest_digest != manifest_digest {
        return Err(SignatureError::DigestMismatch {
            signed: critical.image.docker_manifest_digest.chars().take(80).collect(),
            pulled: manifest_digest.to_owned(),
        });
    }
    if !identity_matches(&critical.identity.docker_reference, identity) {
        return Err(SignatureError::IdentityMismatch {
            signed: critical.identity.docker_reference.chars().take(300).collect(),
            expected: identity.to_owned(),
        });
    }
    Ok(())
}

/// containers/image signs the reference with its tag (`registry/repo:tag`);
/// `cosign sign` signs the repository alone (`registry/repo`). Either binds
/// the exact manifest digest; a signed tag must be the pulled one.
fn identity_matches(signed: &str, expected: &str) -> bool {
    signed == expected || signed == repository_of(expected)
}

/// `registry/repo` of `registry/repo[:tag]` (a registry port's colon comes
/// before the first `/`, a tag's after the last).
fn repository_of(identity: &str) -> &str {
    let last_slash = identity.rfind('/').unwrap_or(0);
    match identity[last_slash..].find(':') {
        Some(colon) => &identity[..last_slash + colon],
        None => identity,
    }
}

/// Verifies the layers in order until one passes. `fetch_payload` returns
/// the blob of a layer (the registry client, with the cap); its digest and
/// size are checked here again. Returns the index of the layer that
/// verified, or every layer's reason.
pub fn verify_any<F>(
    layers: &[SignatureLayer],
    mut fetch_payload: F,
    keys: &PublicKeys,
    manifest_digest: &str,
    identity: &str,
) -> Result<usize, SignatureError>
where
    F: FnMut(&SignatureLayer) -> Result<Vec<u8>, String>,
{
    let mut reasons = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        let result = check_layer(layer, &mut fetch_payload, keys, manifest_digest, identity);
        match result {
            Ok(()) => return Ok(index),
            Err(e) => reasons.push(format!("layer {index} ({}): {e}", layer.digest)),
        }
    }
    Err(SignatureError::NoneVerified(reasons))
}

fn check_layer<F>(
    layer: &SignatureLayer,
    fetch_payload: &mut F,
    keys: &PublicKeys,
    manifest_digest: &str,
    identity: &str,
) -> Result<(), SignatureError>
where
    F: FnMut(&SignatureLayer) -> Result<Vec<u8>, String>,
{
    // Refused before anything is fetched or allocated.
    if layer.size > u64::try_from(MAX_PAYLOAD_LEN).unwrap_or(u64::MAX) {
        return Err(SignatureError::PayloadTooLarge { got: layer.size });
    }
    let payload = fetch_payload(layer).map_err(SignatureError::PayloadBlob)?;
    if u64::try_from(payload.len()).ok() != Some(layer.size) {
        return Err(SignatureError::PayloadBlob(format!("{} bytes, descriptor says {}", payload.len(), layer.size)));
    }
    if format!("sha256:{}", hex::encode(Sha256::digest(&payload))) != layer.digest {
        return Err(SignatureError::PayloadBlob("sha256 differs from the descriptor's digest".into()));
    }
    verify_payload(&payload, &layer.signature_b64, keys, manifest_digest, identity)
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use serde_json::{Value, json};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/signature/");
    const IDENTITY: &str = "10.0.2.101:5000/app:1";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    fn keys() -> PublicKeys {
        PublicKeys::from_pem(&fixture("cosign.pub")).unwrap()
    }

    /// The digest the signature is for: of the image manifest's bytes.
    fn manifest_digest() -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(fixture("image-manifest.json"))))
    }

    fn layer() -> SignatureLayer {
        let mut l = signature_layers(&fixture("sig-manifest.json")).unwrap();
        assert_eq!(l.len(), 1);
        l.remove(0)
    }

    fn verify(payload: &[u8], sig: &str) -> Result<(), SignatureError> {
        verify_payload(payload, sig, &keys(), &manifest_digest(), IDENTITY)
    }

    #[test]
    fn the_real_signature_verifies() {
        let l = layer();
        assert_eq!(l.media_type, SIMPLE_SIGNING_MEDIA_TYPE);
        assert_eq!(l.size, 294);
        let payload = fixture("payload.json");
        verify(&payload, &l.signature_b64).unwrap();
        let fetched = verify_any(&[l], |_| Ok(payload.clone()), &keys(), &manifest_digest(), IDENTITY).unwrap();
        assert_eq!(fetched, 0);
    }

    #[test]
    fn another_key_or_another_payload_fails() {
        let l = layer();
        let other = PublicKeys::from_pem(&fixture("other.pub")).unwrap();
        let payload = fixture("payload.json");
        assert_eq!(
            verify_payload(&payload, &l.signature_b64, &other, &manifest_digest(), IDENTITY),
            Err(SignatureError::NoKeyVerifies { keys: 1 })
        );
        // Either key of a two-key policy may have signed.
        let mut both = fixture("other.pub");
        both.extend_from_slice(&fixture("cosign.pub"));
        let both = PublicKeys::from_pem(&both).unwrap();
        assert_eq!(both.len(), 2);
        verify_payload(&payload, &l.signature_b64, &both, &manifest_digest(), IDENTITY).unwrap();
        for i in [0, 100, payload.len() - 2] {
            let mut flipped = payload.clone();
            flipped[i] ^= 1;
            assert_eq!(verify(&flipped, &l.signature_b64), Err(SignatureError::NoKeyVerifies { keys: 1 }), "byte {i}");
        }
    }

    /// Go's ECDSA does not normalise s: half of cosign's and
    /// containers/image's signatures have a high s, and must verify.
    #[test]
    fn high_s_signatures_verify() {
        let l = layer();
        let payload = fixture("payload.json");
        let sig = Signature::from_der(&STANDARD.decode(&l.signature_b64).unwrap()).unwrap();
        let (r, s) = sig.split_scalars();
        let flipped = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_ne!(flipped.normalize_s().is_some(), sig.normalize_s().is_some(), "exactly one of them is high-S");
        verify(&payload, &STANDARD.encode(flipped.to_der().as_bytes())).unwrap();
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let l = layer();
        let payload = fixture("payload.json");
        let der = STANDARD.decode(&l.signature_b64).unwrap();
        assert_eq!(verify(&payload, "not base64!"), Err(SignatureError::Base64));
        assert_eq!(verify(&payload, &l.signature_b64[1..]), Err(SignatureError::Base64));
        assert_eq!(verify(&payload, &STANDARD.encode(b"not DER at all")), Err(SignatureError::Der));
        // Trailing bytes after the DER SEQUENCE.
        let mut long = der.clone();
        long.push(0);
        assert_eq!(verify(&payload, &STANDARD.encode(&long)), Err(SignatureError::Der));
        // The raw r||s form is not DER.
        let raw = Signature::from_der(&der).unwrap().to_bytes();
        assert_eq!(verify(&payload, &STANDARD.encode(raw)), Err(SignatureError::Der));
        // A flipped bit inside r or s.
        let mut flipped = der.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verify(&payload, &STANDARD.encode(&flipped)), Err(SignatureError::NoKeyVerifies { keys: 1 }));
        assert_eq!(verify(&payload, &"A".repeat(400)), Err(SignatureError::Base64));
    }

    #[test]
    fn digest_and_identity_must_match() {
        let l = layer();
        let payload = fixture("payload.json");
        let other_digest = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            verify_payload(&payload, &l.signature_b64, &keys(), &other_digest, IDENTITY),
            Err(SignatureError::DigestMismatch { .. })
        ));
        for wrong in ["10.0.2.101:5000/app:2", "10.0.2.101:5000/app", "10.0.2.101:5000/other:1", "evil/app:1", ""] {
            assert!(
                matches!(
                    verify_payload(&payload, &l.signature_b64, &keys(), &manifest_digest(), wrong),
                    Err(SignatureError::IdentityMismatch { .. })
                ),
                "{wrong}"
            );
        }
    }

    #[test]
    fn repository_of_strips_only_a_tag() {
        assert_eq!(repository_of("10.0.2.101:5000/app:1"), "10.0.2.101:5000/app");
        assert_eq!(repository_of("10.0.2.101:5000/team/app"), "10.0.2.101:5000/team/app");
        assert_eq!(repository_of("localhost/app:v1.2"), "localhost/app");
        assert!(identity_matches("10.0.2.101:5000/app", "10.0.2.101:5000/app:1"));
        assert!(!identity_matches("10.0.2.101:5000", "10.0.2.101:5000/app:1"));
        assert!(!identity_matches("10.0.2.101:5000/app:2", "10.0.2.101:5000/app:1"));
    }

    /// Payloads signed here with a throwaway key, to reach the checks that
    /// come after the signature.
    fn signed(payload: &Value) -> (PublicKeys, Vec<u8>, String) {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let bytes = serde_json::to_vec(payload).unwrap();
        let sig: p256::ecdsa::DerSignature = key.sign(&bytes);
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(key.verifying_key(), Default::default()).unwrap();
        (PublicKeys::from_pem(pem.as_bytes()).unwrap(), bytes, STANDARD.encode(sig.as_bytes()))
    }

    fn check(payload: Value) -> Result<(), SignatureError> {
        let (keys, bytes, sig) = signed(&payload);
        verify_payload(&bytes, &sig, &keys, &manifest_digest(), IDENTITY)
    }

    fn good() -> Value {
        json!({"critical": {"identity": {"docker-reference": IDENTITY},
            "image": {"docker-manifest-digest": manifest_digest()},
            "type": SIGNATURE_TYPE}, "optional": null})
    }

    #[test]
    fn the_payload_document_is_checked_strictly() {
        check(good()).unwrap();
        // The repository-only identity `cosign sign` writes matches too.
        let mut repo_only = good();
        repo_only["critical"]["identity"]["docker-reference"] = json!("10.0.2.101:5000/app");
        check(repo_only).unwrap();
        let mut no_optional = good();
        no_optional.as_object_mut().unwrap().remove("optional");
        check(no_optional).unwrap();
        let mut t = good();
        t["critical"]["type"] = json!("atomic container signature");
        assert_eq!(check(t), Err(SignatureError::Type("atomic container signature".into())));
        let mut extra = good();
        extra["critical"]["unknown"] = json!(1);
        assert!(matches!(check(extra), Err(SignatureError::Payload(_))));
        let mut extra = good();
        extra["critical"]["image"]["other"] = json!("x");
        assert!(matches!(check(extra), Err(SignatureError::Payload(_))));
        let mut top = good();
        top["extra"] = json!({});
        assert!(matches!(check(top), Err(SignatureError::Payload(_))));
        let mut missing = good();
        missing["critical"].as_object_mut().unwrap().remove("identity");
        assert!(matches!(check(missing), Err(SignatureError::Payload(_))));
        let (keys, _, _) = signed(&good());
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let dup = format!(
            r#"{{"critical":{{"type":"{SIGNATURE_TYPE}","type":"x","image":{{"docker-manifest-digest":"{}"}},"identity":{{"docker-reference":"{IDENTITY}"}}}}}}"#,
            manifest_digest()
        );
        let sig: p256::ecdsa::DerSignature = key.sign(dup.as_bytes());
        assert!(matches!(
            verify_payload(dup.as_bytes(), &STANDARD.encode(sig.as_bytes()), &keys, &manifest_digest(), IDENTITY),
            Err(SignatureError::Payload(_))
        ));
    }

    #[test]
    fn oversized_payloads_are_refused_before_fetching() {
        let (keys, _, sig) = signed(&good());
        let big = vec![b' '; MAX_PAYLOAD_LEN + 1];
        assert!(matches!(
            verify_payload(&big, &sig, &keys, &manifest_digest(), IDENTITY),
            Err(SignatureError::PayloadTooLarge { .. })
        ));
        let mut l = layer();
        l.size = 1 << 30;
        let err = verify_any(&[l], |_| panic!("fetched"), &keys, &manifest_digest(), IDENTITY).unwrap_err();
        assert!(err.to_string().contains("more than the 16384-byte cap"), "{err}");
    }

    #[test]
    fn verify_any_checks_the_blob_and_reports_every_layer() {
        let good_layer = layer();
        let payload = fixture("payload.json");
        let mut wrong_sig = good_layer.clone();
        wrong_sig.signature_b64 = STANDARD.encode(b"junk");
        // A bad layer first, then the good one: the good one wins.
        let i = verify_any(
            &[wrong_sig.clone(), good_layer.clone()],
            |_| Ok(payload.clone()),
            &keys(),
            &manifest_digest(),
            IDENTITY,
        )
        .unwrap();
        assert_eq!(i, 1);
        // A payload that is not the descriptor's blob.
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        let err = verify_any(
            std::slice::from_ref(&good_layer),
            |_| Ok(tampered.clone()),
            &keys(),
            &manifest_digest(),
            IDENTITY,
        )
        .unwrap_err();
        assert!(err.to_string().contains("sha256 differs"), "{err}");
        let err = verify_any(
            std::slice::from_ref(&good_layer),
            |_| Ok(payload[1..].to_vec()),
            &keys(),
            &manifest_digest(),
            IDENTITY,
        )
        .unwrap_err();
        assert!(err.to_string().contains("293 bytes, descriptor says 294"), "{err}");
        let err =
            verify_any(&[wrong_sig, good_layer], |_| Err("blob: 404".into()), &keys(), &manifest_digest(), IDENTITY)
                .unwrap_err();
        let SignatureError::NoneVerified(reasons) = &err else { panic!("{err}") };
        assert_eq!(reasons.len(), 2);
        assert!(reasons.iter().all(|r| r.contains("blob: 404")), "{reasons:?}");
    }

    #[test]
    fn sig_manifests_are_parsed_with_caps() {
        let real: Value = serde_json::from_slice(&fixture("sig-manifest.json")).unwrap();
        let mut other_media = real.clone();
        other_media["layers"][0]["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        assert_eq!(signature_layers(&serde_json::to_vec(&other_media).unwrap()), Err(SignatureError::NoSignatures));
        let mut unannotated = real.clone();
        unannotated["layers"][0].as_object_mut().unwrap().remove("annotations");
        assert_eq!(signature_layers(&serde_json::to_vec(&unannotated).unwrap()), Err(SignatureError::NoSignatures));
        let mut bad_digest = real.clone();
        bad_digest["layers"][0]["digest"] = json!("sha512:00");
        assert!(matches!(
            signature_layers(&serde_json::to_vec(&bad_digest).unwrap()),
            Err(SignatureError::Layer { index: 0, .. })
        ));
        let mut many = real.clone();
        many["layers"] = Value::Array(vec![real["layers"][0].clone(); MAX_SIGNATURE_LAYERS + 1]);
        assert_eq!(
            signature_layers(&serde_json::to_vec(&many).unwrap()),
            Err(SignatureError::TooManyLayers { got: MAX_SIGNATURE_LAYERS + 1 })
        );
        let mut two = real.clone();
        two["layers"] = Value::Array(vec![real["layers"][0].clone(); 2]);
        assert_eq!(signature_layers(&serde_json::to_vec(&two).unwrap()).unwrap().len(), 2);
        let mut v1 = real.clone();
        v1["schemaVersion"] = json!(1);
        assert!(matches!(signature_layers(&serde_json::to_vec(&v1).unwrap()), Err(SignatureError::Manifest(_))));
        assert!(matches!(signature_layers(b"{"), Err(SignatureError::Manifest(_))));
        assert!(matches!(
            signature_layers(&vec![b' '; MAX_SIG_MANIFEST_LEN + 1]),
            Err(SignatureError::ManifestTooLarge { .. })
        ));
    }

    #[test]
    fn key_lists_accept_only_p256_spki() {
        assert!(matches!(PublicKeys::from_pem(b""), Err(SignatureError::Pem(PemError::NoBlock))));
        let private = include_bytes!("../tests/fixtures/ocicrypt/layer.key");
        assert!(matches!(PublicKeys::from_pem(private), Err(SignatureError::KeyLabel { index: 0, .. })));
        // An EC SPKI on another curve (P-384's OID) is not P-256.
        let p384 = p384_spki_pem();
        assert!(matches!(PublicKeys::from_pem(p384.as_bytes()), Err(SignatureError::KeyType { index: 0, .. })));
        let mut truncated = fixture("cosign.pub");
        let s = String::from_utf8(truncated.clone()).unwrap().replace("==", "");
        truncated = s.into_bytes();
        assert!(PublicKeys::from_pem(&truncated).is_err());
    }

    fn p384_spki_pem() -> String {
        use p256::pkcs8::der::{Encode, asn1::BitString};
        use p256::pkcs8::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
        // id-ecPublicKey with the secp384r1 curve OID and a 97-byte point.
        let ec = "1.2.840.10045.2.1".parse().unwrap();
        let p384: p256::pkcs8::ObjectIdentifier = "1.3.132.0.34".parse().unwrap();
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned { oid: ec, parameters: Some(p384.into()) },
            subject_public_key: BitString::from_bytes(&[4u8; 97]).unwrap(),
        };
        let der = spki.to_der().unwrap();
        p256::pkcs8::der::pem::encode_string("PUBLIC KEY", Default::default(), &der).unwrap()
    }
}
