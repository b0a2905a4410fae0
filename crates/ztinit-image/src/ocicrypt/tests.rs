//! Against layers encrypted by skopeo 1.9.3 (tests/fixtures/README.md).

use super::*;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ocicrypt/");
/// sha256 of the decrypted blob (the gzip skopeo made of the tar).
const DECRYPTED_DIGEST: &str = "3c2309b5d3449aec52b4d0328c56f8528134369a6e8adcd7aaae014bd4002247";
/// The tar's digest: what skopeo put in the private options.
const DIFF_ID: &str = "sha256:9a314ea24a4d5fc8dfd62330cc2ff8a1f2f59ed9dd1b6306f445b079628ab11f";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

fn keys(name: &str) -> PrivateKeys {
    PrivateKeys::from_pem(&fixture(name)).unwrap()
}

fn annotations(which: &str) -> BTreeMap<String, String> {
    let m: Value = serde_json::from_slice(&fixture(&format!("{which}-manifest.json"))).unwrap();
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip+encrypted");
    serde_json::from_value(m["layers"][0]["annotations"].clone()).unwrap()
}

fn decrypt_all(key: &LayerKey, ciphertext: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    key.decryptor(ciphertext).read_to_end(&mut out)?;
    Ok(out)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn skopeo_layers_decrypt_with_pkcs8_and_sec1_keys() {
    for (which, key_file) in [
        ("one-recipient", "layer.key"),
        ("one-recipient", "layer-sec1.key"),
        ("two-recipients", "layer.key"),
        ("two-recipients", "other.key"),
    ] {
        let key = unwrap_layer(&annotations(which), &keys(key_file)).unwrap();
        assert_eq!(key.original_digest(), Some(DIFF_ID));
        let plain = decrypt_all(&key, &fixture(&format!("{which}-layer.bin"))).unwrap();
        assert_eq!(sha256_hex(&plain), DECRYPTED_DIGEST, "{which} with {key_file}");
        assert_eq!(&plain[..3], &[0x1f, 0x8b, 0x08]);
    }
}

#[test]
fn any_of_several_keys_may_be_the_recipient() {
    let mut pem = fixture("stranger.key");
    pem.extend_from_slice(&fixture("layer-sec1.key"));
    let both = PrivateKeys::from_pem(&pem).unwrap();
    assert_eq!(both.len(), 2);
    unwrap_layer(&annotations("one-recipient"), &both).unwrap();
}

#[test]
fn small_reads_give_the_same_plaintext() {
    let key = unwrap_layer(&annotations("one-recipient"), &keys("layer.key")).unwrap();
    let ct = fixture("one-recipient-layer.bin");
    let mut d = key.decryptor(ct.as_slice());
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    assert_eq!(d.read(&mut []).unwrap(), 0, "an empty read is not EOF");
    loop {
        let n = d.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(sha256_hex(&out), DECRYPTED_DIGEST);
    assert_eq!(d.read(&mut buf).unwrap(), 0, "stays at EOF");
}

#[test]
fn a_key_that_is_not_a_recipient_is_named() {
    let err = unwrap_layer(&annotations("one-recipient"), &keys("stranger.key")).unwrap_err();
    assert_eq!(err, OcicryptError::NotForUs { keys: 1, recipients: 1 });
    let err = unwrap_layer(&annotations("one-recipient"), &keys("other.key")).unwrap_err();
    assert_eq!(err, OcicryptError::NotForUs { keys: 1, recipients: 1 });
    let err = unwrap_layer(&annotations("two-recipients"), &keys("stranger.key")).unwrap_err();
    assert_eq!(err, OcicryptError::NotForUs { keys: 1, recipients: 2 });
    assert!(err.to_string().contains("none of our 1 decryption keys"), "{err}");
}

fn hmac_failure(result: io::Result<Vec<u8>>) -> bool {
    match result {
        Err(e) => {
            e.kind() == io::ErrorKind::InvalidData
                && e.get_ref().and_then(|i| i.downcast_ref::<OcicryptError>()) == Some(&OcicryptError::Hmac)
        }
        Ok(_) => false,
    }
}

#[test]
fn tampered_or_truncated_ciphertext_fails_at_the_end() {
    let key = unwrap_layer(&annotations("one-recipient"), &keys("layer.key")).unwrap();
    let ct = fixture("one-recipient-layer.bin");
    for i in [0, 1000, ct.len() - 1] {
        let mut flipped = ct.clone();
        flipped[i] ^= 0x80;
        assert!(hmac_failure(decrypt_all(&key, &flipped)), "byte {i}");
    }
    assert!(hmac_failure(decrypt_all(&key, &ct[..ct.len() - 1])));
    assert!(hmac_failure(decrypt_all(&key, &[])));
    let mut longer = ct.clone();
    longer.push(0);
    assert!(hmac_failure(decrypt_all(&key, &longer)));
    // Once failed, always failed.
    let mut d = key.decryptor(&ct[..10]);
    let mut sink = Vec::new();
    assert!(d.read_to_end(&mut sink).is_err());
    assert!(d.read(&mut [0u8; 4]).is_err());
}

fn set_pubopts(a: &mut BTreeMap<String, String>, v: Value) {
    a.insert(PUBOPTS_ANNOTATION.into(), STANDARD.encode(serde_json::to_vec(&v).unwrap()));
}

fn pubopts(a: &BTreeMap<String, String>) -> Value {
    serde_json::from_slice(&STANDARD.decode(&a[PUBOPTS_ANNOTATION]).unwrap()).unwrap()
}

#[test]
fn a_tampered_hmac_annotation_fails_the_stream() {
    let mut a = annotations("one-recipient");
    let mut p = pubopts(&a);
    let mut mac = STANDARD.decode(p["hmac"].as_str().unwrap()).unwrap();
    mac[0] ^= 1;
    p["hmac"] = Value::String(STANDARD.encode(&mac));
    set_pubopts(&mut a, p);
    let key = unwrap_layer(&a, &keys("layer.key")).unwrap();
    assert!(hmac_failure(decrypt_all(&key, &fixture("one-recipient-layer.bin"))));
}

#[test]
fn public_options_are_checked() {
    let good = annotations("one-recipient");
    let k = keys("layer.key");
    let mut missing = good.clone();
    missing.remove(PUBOPTS_ANNOTATION);
    assert_eq!(unwrap_layer(&missing, &k).unwrap_err(), OcicryptError::MissingAnnotation(PUBOPTS_ANNOTATION));
    let mut missing = good.clone();
    missing.remove(KEYS_JWE_ANNOTATION);
    assert_eq!(unwrap_layer(&missing, &k).unwrap_err(), OcicryptError::MissingAnnotation(KEYS_JWE_ANNOTATION));
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Change); 4] = [
        ("cipher", Box::new(|p| p["cipher"] = "AES_128_CTR".into())),
        ("public cipheroptions", Box::new(|p| p["cipheroptions"] = serde_json::json!({"nonce": "AAAA"}))),
        ("hmac has 31", Box::new(|p| p["hmac"] = STANDARD.encode([0u8; 31]).into())),
        ("missing field `hmac`", Box::new(|p| drop(p.as_object_mut().unwrap().remove("hmac")))),
    ];
    for (what, change) in cases {
        let mut a = good.clone();
        let mut p = pubopts(&a);
        change(&mut p);
        set_pubopts(&mut a, p);
        let err = unwrap_layer(&a, &k).unwrap_err();
        assert!(matches!(err, OcicryptError::PublicOptions(_)) && err.to_string().contains(what), "{what}: {err}");
    }
    let mut a = good.clone();
    a.insert(PUBOPTS_ANNOTATION.into(), "!!".into());
    assert_eq!(unwrap_layer(&a, &k).unwrap_err(), OcicryptError::Base64(PUBOPTS_ANNOTATION));
}

/// The one-recipient JWE as a JSON object, to tamper with.
fn jwe(a: &BTreeMap<String, String>) -> Value {
    serde_json::from_slice(&STANDARD.decode(&a[KEYS_JWE_ANNOTATION]).unwrap()).unwrap()
}

fn with_jwe(v: &Value) -> BTreeMap<String, String> {
    let mut a = annotations("one-recipient");
    a.insert(KEYS_JWE_ANNOTATION.into(), STANDARD.encode(serde_json::to_vec(v).unwrap()));
    a
}

fn flip_b64url(s: &str, at: usize) -> String {
    let mut bytes = b64("x", s).unwrap();
    bytes[at] ^= 1;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_tampered_jwe_is_refused() {
    let k = keys("layer.key");
    let original = jwe(&annotations("one-recipient"));
    // Flattened: this is what skopeo wrote for one recipient.
    assert!(original.get("recipients").is_none());
    for member in ["ciphertext", "tag", "iv"] {
        let mut v = original.clone();
        v[member] = flip_b64url(v[member].as_str().unwrap(), 0).into();
        assert_eq!(unwrap_layer(&with_jwe(&v), &k).unwrap_err(), OcicryptError::Decrypt, "{member}");
    }
    // A flipped wrapped key fails the AES key unwrap: not ours.
    let mut v = original.clone();
    v["encrypted_key"] = flip_b64url(v["encrypted_key"].as_str().unwrap(), 3).into();
    assert!(matches!(unwrap_layer(&with_jwe(&v), &k).unwrap_err(), OcicryptError::NotForUs { .. }));
    // The protected header is authenticated: re-encoding it changes the AAD.
    let mut v = original.clone();
    let header: Value = serde_json::from_slice(&b64("p", v["protected"].as_str().unwrap()).unwrap()).unwrap();
    let reencoded = serde_json::to_vec_pretty(&header).unwrap();
    v["protected"] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(reencoded).into();
    assert_eq!(unwrap_layer(&with_jwe(&v), &k).unwrap_err(), OcicryptError::Decrypt);
}

#[test]
fn unsupported_or_malformed_jwes_name_the_fault() {
    let k = keys("layer.key");
    let original = jwe(&annotations("one-recipient"));
    let header: Value = serde_json::from_slice(&b64("p", original["protected"].as_str().unwrap()).unwrap()).unwrap();
    let with_header = |h: Value| {
        let mut v = original.clone();
        v["protected"] =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()).into();
        unwrap_layer(&with_jwe(&v), &k).unwrap_err().to_string()
    };
    let mut h = header.clone();
    h["alg"] = "RSA-OAEP".into();
    assert!(with_header(h).contains("RSA-OAEP (RSA) is not supported"));
    let mut h = header.clone();
    h["enc"] = "A128GCM".into();
    assert!(with_header(h).contains("enc \"A128GCM\""));
    let mut h = header.clone();
    h["zip"] = "DEF".into();
    assert!(with_header(h).contains("zip"));
    let mut h = header.clone();
    h["epk"]["crv"] = "P-384".into();
    assert!(with_header(h).contains("P-384"));
    // alg both protected and unprotected.
    let mut v = original.clone();
    v["header"] = serde_json::json!({"alg": KEY_ALG});
    let err = unwrap_layer(&with_jwe(&v), &k).unwrap_err().to_string();
    assert!(err.contains("\"alg\" appears twice"), "{err}");
    let mut v = original.clone();
    v["aad"] = "AAAA".into();
    assert!(unwrap_layer(&with_jwe(&v), &k).unwrap_err().to_string().contains("aad"));
    let mut v = original.clone();
    v.as_object_mut().unwrap().remove("iv");
    assert!(unwrap_layer(&with_jwe(&v), &k).unwrap_err().to_string().contains("iv is missing"));
    let mut v = original.clone();
    v["recipients"] = serde_json::json!([]);
    assert!(unwrap_layer(&with_jwe(&v), &k).unwrap_err().to_string().contains("0 recipients"));
    let mut a = annotations("one-recipient");
    a.insert(KEYS_JWE_ANNOTATION.into(), "e30=".repeat(MAX_KEYS_ANNOTATION_LEN / 4 + 1));
    assert!(matches!(unwrap_layer(&a, &k).unwrap_err(), OcicryptError::AnnotationTooLarge { .. }));
    a.insert(KEYS_JWE_ANNOTATION.into(), "not base64".into());
    assert_eq!(unwrap_layer(&a, &k).unwrap_err(), OcicryptError::Base64(KEYS_JWE_ANNOTATION));
    a.insert(KEYS_JWE_ANNOTATION.into(), ["e30="; MAX_JWES + 1].join(","));
    assert!(matches!(unwrap_layer(&a, &k).unwrap_err(), OcicryptError::Jwe { .. }));
}

/// ocicrypt appends a JWE per re-encryption, comma-separated: a JWE for
/// another key first, then ours.
#[test]
fn comma_separated_jwes_are_each_tried() {
    let one = annotations("one-recipient");
    let two = annotations("two-recipients");
    let mut a = one.clone();
    a.insert(KEYS_JWE_ANNOTATION.into(), format!("{},{}", two[KEYS_JWE_ANNOTATION], one[KEYS_JWE_ANNOTATION]));
    // The layer key of `one` (its pubopts) is found in the second JWE.
    let key = unwrap_layer(&a, &keys("layer.key")).unwrap();
    // ...but the first JWE (the other image's key) already opens for
    // layer.key: its symkey does not match this HMAC.
    assert!(hmac_failure(decrypt_all(&key, &fixture("one-recipient-layer.bin"))));
    let err = unwrap_layer(&a, &keys("stranger.key")).unwrap_err();
    assert_eq!(err, OcicryptError::NotForUs { keys: 1, recipients: 3 });
}

#[test]
fn private_options_are_checked() {
    let hmac = [0u8; HMAC_LEN];
    let ok = |v: Value| layer_key(&serde_json::to_vec(&v).unwrap(), hmac);
    let good = serde_json::json!({"symkey": STANDARD.encode([1u8; 32]), "digest": DIFF_ID,
        "cipheroptions": {"nonce": STANDARD.encode([2u8; 16])}});
    ok(good.clone()).unwrap();
    for (what, v) in [
        (
            "symkey has 16 bytes",
            serde_json::json!({"symkey": STANDARD.encode([1u8; 16]), "cipheroptions": {"nonce": STANDARD.encode([2u8; 16])}}),
        ),
        (
            "nonce has 12 bytes",
            serde_json::json!({"symkey": STANDARD.encode([1u8; 32]), "cipheroptions": {"nonce": STANDARD.encode([2u8; 12])}}),
        ),
        ("nonce is missing", serde_json::json!({"symkey": STANDARD.encode([1u8; 32]), "cipheroptions": {}})),
        (
            "symkey is not base64",
            serde_json::json!({"symkey": "!", "cipheroptions": {"nonce": STANDARD.encode([2u8; 16])}}),
        ),
        ("missing field `symkey`", serde_json::json!({"cipheroptions": {}})),
    ] {
        let err = ok(v).unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
}

/// Go's `cipher.NewCTR` increments the whole 16-byte block as one
/// big-endian number: a nonce ending in ff..ff carries into the upper half
/// (ctr::Ctr128BE; Ctr64BE or Ctr32BE would wrap differently).
#[test]
fn the_counter_carries_across_all_128_bits() {
    use aes::cipher::BlockEncrypt;
    let symkey = [9u8; 32];
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    nonce[8..].copy_from_slice(&[0xff; 8]);
    let ciphertext = [0u8; 32];
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(&symkey).unwrap().chain_update(ciphertext).finalize().into_bytes();
    let key = LayerKey { symkey: Zeroizing::new(symkey), nonce, hmac: mac.into(), original_digest: None };
    let keystream = decrypt_all(&key, &ciphertext).unwrap();
    let aes = <Aes256 as aes::cipher::KeyInit>::new(&symkey.into());
    let mut second = [0u8; 16];
    second[7] = 2;
    let mut block = second.into();
    aes.encrypt_block(&mut block);
    assert_eq!(&keystream[16..], &block[..]);
}

#[test]
fn key_files_other_than_ec_p256_are_refused() {
    let rsa_pkcs1 = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    let err = PrivateKeys::from_pem(rsa_pkcs1).unwrap_err();
    assert!(err.to_string().contains("RSA keys are not supported"), "{err}");
    let public = fixture("layer.pub");
    assert!(matches!(PrivateKeys::from_pem(&public), Err(OcicryptError::KeyLabel { index: 0, .. })));
    let encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(PrivateKeys::from_pem(encrypted).unwrap_err().to_string().contains("passphrase-encrypted"));
    let junk = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert!(matches!(PrivateKeys::from_pem(junk), Err(OcicryptError::KeyUnsupported { index: 0, .. })));
    assert!(matches!(PrivateKeys::from_pem(b""), Err(OcicryptError::Pem(PemError::NoBlock))));
    let k = keys("layer.key");
    assert!(!format!("{k:?}").contains("BEGIN"));
    let key = unwrap_layer(&annotations("one-recipient"), &k).unwrap();
    let shown = format!("{key:?}");
    assert!(shown.contains("original_digest") && !shown.contains("symkey"), "{shown}");
}
