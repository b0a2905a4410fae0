//! cosign signatures: the `.sig` manifest's signature layers verified
//! against the real signed payload with the real key (base64, DER,
//! ECDSA, the payload blob's size and digest); a fuzzed payload signed
//! with a fixed key so that the checks behind the signature run (the
//! strict payload JSON, the digest and identity bindings); PEM public keys.
#![no_main]
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use ztinit::image::digest::Digest;
use ztinit_image::signature::{self, PublicKeys};

// The signed image of tests/fixtures (README.md there).
static PAYLOAD: &[u8] = include_bytes!("../../crates/ztinit-image/tests/fixtures/signature/payload.json");
const MANIFEST_DIGEST: &str = "sha256:36eb22813ea17dc952bae5810b451d0bd2aae5228fc9e0d63036c3f224987d36";
const IDENTITY: &str = "10.0.2.101:5000/app:1";

static COSIGN_KEY: LazyLock<PublicKeys> = LazyLock::new(|| {
    let pem = include_bytes!("../../crates/ztinit-image/tests/fixtures/signature/cosign.pub");
    PublicKeys::from_pem(pem).expect("the fixture key parses")
});

/// A fixed P-256 key: the point is the parsing around the crypto.
static SIGNER: LazyLock<(SigningKey, PublicKeys)> = LazyLock::new(|| {
    let mut secret = [0u8; 32];
    secret[31] = 7;
    let key = SigningKey::from_bytes(&secret.into()).expect("a valid scalar");
    let pem = p256::PublicKey::from(key.verifying_key()).to_public_key_pem(LineEnding::LF).expect("PEM");
    let keys = PublicKeys::from_pem(pem.as_bytes()).expect("the key parses");
    (key, keys)
});

fuzz_target!(|data: &[u8]| {
    let _ = PublicKeys::from_pem(data);
    if let Ok(layers) = signature::signature_layers(data) {
        let payload_digest = Digest::of(PAYLOAD).to_string();
        // The registry serves the real payload under its digest only.
        let fetch = |layer: &signature::SignatureLayer| {
            if layer.digest == payload_digest { Ok(PAYLOAD.to_vec()) } else { Err("blob unknown".to_string()) }
        };
        let _ = signature::verify_any(&layers, fetch, &COSIGN_KEY, MANIFEST_DIGEST, IDENTITY);
    }
    // Only a JSON document can get past the payload parse; sign those.
    if data.len() <= signature::MAX_PAYLOAD_LEN && serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        let (key, keys) = &*SIGNER;
        let sig: Signature = key.sign(data);
        let sig_b64 = STANDARD.encode(sig.to_der().as_bytes());
        if signature::verify_payload(data, &sig_b64, keys, MANIFEST_DIGEST, IDENTITY).is_ok() {
            // Accepted: it binds this manifest to this image, and nothing else.
            let v: serde_json::Value = serde_json::from_slice(data).expect("accepted payloads are JSON");
            assert_eq!(v["critical"]["type"], signature::SIGNATURE_TYPE);
            assert_eq!(v["critical"]["image"]["docker-manifest-digest"], MANIFEST_DIGEST);
            let signed = v["critical"]["identity"]["docker-reference"].as_str().expect("a string");
            assert!(signed == IDENTITY || signed == "10.0.2.101:5000/app", "{signed}");
        }
    }
});
