//! The ephemeral TEE key and JWE decryption of KBS resources.
//!
//! Only what Trustee sends for an EC P-256 tee-pubkey is accepted:
//! `alg = "ECDH-ES+A256KW"` (ephemeral-static ECDH on P-256, Concat KDF with
//! SHA-256, then AES-256 key unwrap of the content key) and
//! `enc = "A256GCM"`, with the received `protected` string as additional
//! authenticated data (RFC 7516 §5.2, RFC 7518 §4.6).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::{EncodedPoint, PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::protocol::{JweResponse, KEY_ALG};

/// The only content encryption we accept.
pub const ENC: &str = "A256GCM";
/// Sizes fixed by the algorithms.
const COORD_LEN: usize = 32;
const CEK_LEN: usize = 32;
const WRAPPED_CEK_LEN: usize = CEK_LEN + 8;
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The protected header is a few hundred bytes; anything much larger is hostile.
const MAX_PROTECTED_LEN: usize = 4096;

/// Why a resource could not be decrypted. Messages never contain key or
/// plaintext bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JweError {
    #[error("cannot generate the ephemeral key: {0}")]
    KeyGeneration(String),
    #[error("JWE member {0} is not base64url without padding")]
    Base64(&'static str),
    #[error("JWE protected header is not a JSON object: {0}")]
    Header(String),
    #[error("JWE protected header is larger than {MAX_PROTECTED_LEN} bytes")]
    HeaderTooLarge,
    #[error("JWE alg {0:?} is not supported (only {KEY_ALG})")]
    UnsupportedAlg(String),
    #[error("JWE enc {0:?} is not supported (only {ENC})")]
    UnsupportedEnc(String),
    #[error("JWE header member {0:?} is not supported")]
    UnsupportedMember(String),
    #[error("JWE epk is not an EC P-256 key: {0}")]
    BadEpk(String),
    #[error("JWE {member} has {got} bytes, expected {want}")]
    BadLength { member: &'static str, got: usize, want: usize },
    #[error("JWE content key unwrap failed (encrypted to another key, or tampered)")]
    Unwrap,
    #[error("JWE authentication failed (tampered ciphertext, tag or header)")]
    Decrypt,
}

/// The guest's ephemeral EC P-256 key. Lives only in memory; the secret
/// scalar is zeroized when dropped (`SecretKey` is `ZeroizeOnDrop`).
pub struct TeeKey {
    secret: SecretKey,
    jwk: Value,
}

impl std::fmt::Debug for TeeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKey").field("public", &self.jwk).field("secret", &"<redacted>").finish()
    }
}

impl TeeKey {
    /// A fresh key from the kernel's CSPRNG (getrandom).
    pub fn generate() -> Result<Self, JweError> {
        // A uniformly random 32-byte string is a valid scalar except with
        // probability ~2^-32; retry rather than bias.
        for _ in 0..8 {
            let mut bytes = Zeroizing::new([0u8; 32]);
            OsRng.try_fill_bytes(bytes.as_mut()).map_err(|e| JweError::KeyGeneration(e.to_string()))?;
            if let Ok(secret) = SecretKey::from_slice(bytes.as_ref()) {
                return Ok(Self::from_secret(secret));
            }
        }
        Err(JweError::KeyGeneration("no valid scalar after 8 draws".into()))
    }

    /// A key from known bytes (tests, known-answer vectors).
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, JweError> {
        SecretKey::from_slice(bytes)
            .map(Self::from_secret)
            .map_err(|_| JweError::KeyGeneration("invalid scalar".into()))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let jwk = public_jwk(&secret.public_key());
        Self { secret, jwk }
    }

    /// The tee-pubkey as sent and hashed: exactly `kty, crv, alg, x, y`.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Decrypts a resource sent by the KBS.
    pub fn decrypt(&self, jwe: &JweResponse) -> Result<Zeroizing<Vec<u8>>, JweError> {
        if jwe.aad.is_some() {
            return Err(JweError::UnsupportedMember("aad".into()));
        }
        if jwe.protected.len() > MAX_PROTECTED_LEN {
            return Err(JweError::HeaderTooLarge);
        }
        let header_bytes = b64("protected", &jwe.protected)?;
        let header: Value = serde_json::from_slice(&header_bytes).map_err(|e| JweError::Header(e.to_string()))?;
        let header = header.as_object().ok_or_else(|| JweError::Header("not an object".into()))?;
        let member = |k: &str| header.get(k).and_then(Value::as_str);
        match member("alg") {
            Some(KEY_ALG) => {}
            other => {
                return Err(JweError::UnsupportedAlg(other.unwrap_or("<missing>").into()));
            }
        }
        match member("enc") {
            Some(ENC) => {}
            other => {
                return Err(JweError::UnsupportedEnc(other.unwrap_or("<missing>").into()));
            }
        }
        // Members that would change how the content must be processed.
        for refused in ["zip", "crit"] {
            if header.contains_key(refused) {
                return Err(JweError::UnsupportedMember(refused.into()));
            }
        }
        let epk = header.get("epk").ok_or_else(|| JweError::BadEpk("missing".into()))?;
        let epk = parse_epk(epk)?;
        let party = |k: &'static str| -> Result<Vec<u8>, JweError> {
            match header.get(k) {
                None => Ok(Vec::new()),
                Some(Value::String(s)) => b64(k, s),
                Some(_) => Err(JweError::Base64(k)),
            }
        };
        let (apu, apv) = (party("apu")?, party("apv")?);

        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), epk.as_affine());
        let kek = concat_kdf::<32>(shared.raw_secret_bytes(), KEY_ALG.as_bytes(), &apu, &apv);

        let wrapped = b64("encrypted_key", &jwe.encrypted_key)?;
        expect_len("encrypted_key", wrapped.len(), WRAPPED_CEK_LEN)?;
        let mut cek = Zeroizing::new([0u8; CEK_LEN]);
        aes_kw::KekAes256::try_from(kek.as_slice())
            .map_err(|_| JweError::Unwrap)?
            .unwrap(&wrapped, cek.as_mut())
            .map_err(|_| JweError::Unwrap)?;

        let iv = b64("iv", &jwe.iv)?;
        let iv: [u8; IV_LEN] =
            iv.as_slice().try_into().map_err(|_| JweError::BadLength { member: "iv", got: iv.len(), want: IV_LEN })?;
        let tag = b64("tag", &jwe.tag)?;
        let tag: [u8; TAG_LEN] = tag.as_slice().try_into().map_err(|_| JweError::BadLength {
            member: "tag",
            got: tag.len(),
            want: TAG_LEN,
        })?;
        let mut plaintext = Zeroizing::new(b64("ciphertext", &jwe.ciphertext)?);
        let cipher = Aes256Gcm::new_from_slice(cek.as_ref()).map_err(|_| JweError::Decrypt)?;
        cipher
            .decrypt_in_place_detached(&Nonce::from(iv), jwe.protected.as_bytes(), plaintext.as_mut(), &Tag::from(tag))
            .map_err(|_| JweError::Decrypt)?;
        Ok(plaintext)
    }
}

/// The public JWK of an EC P-256 key, with fixed-length coordinates.
pub fn public_jwk(key: &PublicKey) -> Value {
    let point = key.to_encoded_point(false);
    // Uncompressed points always carry both coordinates.
    let x = point.x().map(|x| URL_SAFE_NO_PAD.encode(x)).unwrap_or_default();
    let y = point.y().map(|y| URL_SAFE_NO_PAD.encode(y)).unwrap_or_default();
    json!({ "kty": "EC", "crv": "P-256", "alg": KEY_ALG, "x": x, "y": y })
}

/// Parses an EC P-256 public JWK (`epk`, or a tee-pubkey on the server side);
/// the point must be on the curve.
pub fn parse_epk(v: &Value) -> Result<PublicKey, JweError> {
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    if field("kty") != Some("EC") {
        return Err(JweError::BadEpk("kty is not \"EC\"".into()));
    }
    if field("crv") != Some("P-256") {
        return Err(JweError::BadEpk(format!("curve {:?} does not match our P-256 key", field("crv").unwrap_or(""))));
    }
    let coord = |k: &'static str| -> Result<Vec<u8>, JweError> {
        let b = b64(k, field(k).ok_or_else(|| JweError::BadEpk(format!("missing {k}")))?)?;
        expect_len(k, b.len(), COORD_LEN)?;
        Ok(b)
    };
    let (x, y) = (coord("x")?, coord("y")?);
    let point = EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
    Option::from(PublicKey::from_encoded_point(&point))
        .ok_or_else(|| JweError::BadEpk("point is not on the curve".into()))
}

/// Concat KDF (NIST SP 800-56A §5.8.1, as profiled by RFC 7518 §4.6.2) with
/// SHA-256, producing `N` bytes.
pub fn concat_kdf<const N: usize>(z: &[u8], algorithm_id: &[u8], apu: &[u8], apv: &[u8]) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    // Every input is a header field or a key of at most a few KiB, the
    // counter at most N / 32: all fit the KDF's 32-bit length fields.
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(len32(i + 1));
        h.update(z);
        h.update(len32(algorithm_id.len()));
        h.update(algorithm_id);
        h.update(len32(apu.len()));
        h.update(apu);
        h.update(len32(apv.len()));
        h.update(apv);
        h.update(len32(N * 8));
        let block = Zeroizing::new(h.finalize());
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    out
}

/// Strict base64url: no padding, no whitespace.
pub fn b64(member: &'static str, s: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JweError::Base64(member))
}

fn expect_len(member: &'static str, got: usize, want: usize) -> Result<(), JweError> {
    if got == want { Ok(()) } else { Err(JweError::BadLength { member, got, want }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbs::protocol::tests::LIVE_JWE;

    fn b64e(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Encrypts like Trustee's `jwe()` does for an EC P-256 tee-pubkey, with
    /// our own primitives, so that each check below changes one thing.
    fn encrypt(recipient: &PublicKey, plaintext: &[u8], header_extra: Value) -> JweResponse {
        let eph = SecretKey::random(&mut OsRng);
        let mut header = json!({"alg": KEY_ALG, "enc": ENC, "epk": public_jwk(&eph.public_key())});
        if let (Some(h), Some(extra)) = (header.as_object_mut(), header_extra.as_object()) {
            for (k, v) in extra {
                h.insert(k.clone(), v.clone());
            }
        }
        let header = serde_json::to_string(&header).unwrap();
        let protected = b64e(header.as_bytes());
        let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), recipient.as_affine());
        let kek = concat_kdf::<32>(shared.raw_secret_bytes(), KEY_ALG.as_bytes(), b"", b"");
        let mut cek = [0u8; 32];
        OsRng.fill_bytes(&mut cek);
        let mut wrapped = [0u8; 40];
        aes_kw::KekAes256::from(*kek).wrap(&cek, &mut wrapped).unwrap();
        let mut iv = [0u8; 12];
        OsRng.fill_bytes(&mut iv);
        let mut buf = plaintext.to_vec();
        let tag = Aes256Gcm::new_from_slice(&cek)
            .unwrap()
            .encrypt_in_place_detached(&Nonce::from(iv), protected.as_bytes(), &mut buf)
            .unwrap();
        JweResponse {
            protected,
            encrypted_key: b64e(&wrapped),
            aad: None,
            iv: b64e(&iv),
            ciphertext: b64e(&buf),
            tag: b64e(&tag),
        }
    }

    fn key() -> TeeKey {
        TeeKey::generate().unwrap()
    }

    fn public(k: &TeeKey) -> PublicKey {
        parse_epk(k.public_jwk()).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = key();
        let jwe = encrypt(&public(&k), b"model key 0123456789abcdef", json!({}));
        assert_eq!(k.decrypt(&jwe).unwrap().as_slice(), b"model key 0123456789abcdef");
    }

    #[test]
    fn public_jwk_has_exactly_the_hashed_members() {
        let k = key();
        let obj = k.public_jwk().as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5);
        for m in ["kty", "crv", "alg", "x", "y"] {
            assert!(obj.contains_key(m), "{m}");
        }
        assert_eq!(obj["alg"], KEY_ALG);
        assert_eq!(b64("x", obj["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(b64("y", obj["y"].as_str().unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let k = TeeKey::from_secret_bytes(&[0x42; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(!dbg.contains(&hex::encode([0x42u8; 32])));
    }

    #[test]
    fn another_keys_jwe_fails_to_unwrap() {
        let (ours, theirs) = (key(), key());
        let jwe = encrypt(&public(&theirs), b"secret", json!({}));
        assert_eq!(ours.decrypt(&jwe), Err(JweError::Unwrap));
    }

    #[test]
    fn tampering_anywhere_is_detected() {
        let k = key();
        let jwe = encrypt(&public(&k), b"secret bytes here", json!({}));
        let flip = |s: &str| {
            let mut b = b64("t", s).unwrap();
            b[0] ^= 1;
            b64e(&b)
        };
        let ct = JweResponse { ciphertext: flip(&jwe.ciphertext), ..jwe.clone() };
        assert_eq!(k.decrypt(&ct), Err(JweError::Decrypt));
        let tag = JweResponse { tag: flip(&jwe.tag), ..jwe.clone() };
        assert_eq!(k.decrypt(&tag), Err(JweError::Decrypt));
        let iv = JweResponse { iv: flip(&jwe.iv), ..jwe.clone() };
        assert_eq!(k.decrypt(&iv), Err(JweError::Decrypt));
        let ek = JweResponse { encrypted_key: flip(&jwe.encrypted_key), ..jwe.clone() };
        assert_eq!(k.decrypt(&ek), Err(JweError::Unwrap));
        // Same header JSON, different encoding of it: the AAD differs.
        let header = b64("protected", &jwe.protected).unwrap();
        let mut spaced = b" ".to_vec();
        spaced.extend_from_slice(&header);
        let reencoded = JweResponse { protected: b64e(&spaced), ..jwe.clone() };
        assert_eq!(k.decrypt(&reencoded), Err(JweError::Decrypt));
    }

    #[test]
    fn other_algorithms_and_curves_are_refused() {
        let k = key();
        let pk = public(&k);
        let e = |extra: Value| k.decrypt(&encrypt(&pk, b"x", extra)).unwrap_err();
        assert_eq!(e(json!({"alg": "RSA-OAEP-256"})), JweError::UnsupportedAlg("RSA-OAEP-256".into()));
        assert_eq!(e(json!({"alg": "ECDH-ES"})), JweError::UnsupportedAlg("ECDH-ES".into()));
        assert_eq!(e(json!({"enc": "A128GCM"})), JweError::UnsupportedEnc("A128GCM".into()));
        assert_eq!(e(json!({"zip": "DEF"})), JweError::UnsupportedMember("zip".into()));
        let p384 = json!({"epk": {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}});
        assert!(matches!(e(p384), JweError::BadEpk(m) if m.contains("P-384")));
        let off_curve = json!({"epk": {"kty": "EC", "crv": "P-256", "x": b64e(&[1; 32]), "y": b64e(&[1; 32])}});
        assert_eq!(e(off_curve), JweError::BadEpk("point is not on the curve".into()));
        let short = json!({"epk": {"kty": "EC", "crv": "P-256", "x": b64e(&[1; 31]), "y": b64e(&[1; 32])}});
        assert_eq!(e(short), JweError::BadLength { member: "x", got: 31, want: 32 });
    }

    #[test]
    fn wrong_sizes_and_encodings_are_refused() {
        let k = key();
        let jwe = encrypt(&public(&k), b"x", json!({}));
        let iv = JweResponse { iv: b64e(&[0; 16]), ..jwe.clone() };
        assert_eq!(k.decrypt(&iv), Err(JweError::BadLength { member: "iv", got: 16, want: 12 }));
        let tag = JweResponse { tag: b64e(&[0; 8]), ..jwe.clone() };
        assert_eq!(k.decrypt(&tag), Err(JweError::BadLength { member: "tag", got: 8, want: 16 }));
        let ek = JweResponse { encrypted_key: b64e(&[0; 24]), ..jwe.clone() };
        assert_eq!(k.decrypt(&ek), Err(JweError::BadLength { member: "encrypted_key", got: 24, want: 40 }));
        let padded = JweResponse { iv: format!("{}=", jwe.iv), ..jwe.clone() };
        assert_eq!(k.decrypt(&padded), Err(JweError::Base64("iv")));
        let aad = JweResponse { aad: Some("eA".into()), ..jwe.clone() };
        assert_eq!(k.decrypt(&aad), Err(JweError::UnsupportedMember("aad".into())));
        let huge = JweResponse { protected: "A".repeat(MAX_PROTECTED_LEN + 1), ..jwe };
        assert_eq!(k.decrypt(&huge), Err(JweError::HeaderTooLarge));
    }

    /// The live Trustee response: header members and sizes are what we accept;
    /// without the recipient's key it must fail at the key unwrap, not before.
    #[test]
    fn live_trustee_jwe_structure_is_accepted() {
        let jwe: JweResponse = serde_json::from_str(LIVE_JWE).unwrap();
        let header: Value = serde_json::from_slice(&b64("protected", &jwe.protected).unwrap()).unwrap();
        assert_eq!(header["alg"], KEY_ALG);
        assert_eq!(header["enc"], ENC);
        parse_epk(&header["epk"]).unwrap();
        assert_eq!(b64("encrypted_key", &jwe.encrypted_key).unwrap().len(), 40);
        assert_eq!(b64("iv", &jwe.iv).unwrap().len(), 12);
        assert_eq!(b64("tag", &jwe.tag).unwrap().len(), 16);
        assert_eq!(b64("ciphertext", &jwe.ciphertext).unwrap().len(), 32);
        assert_eq!(key().decrypt(&jwe), Err(JweError::Unwrap));
    }

    /// RFC 7518 Appendix C: ECDH-ES key agreement between Alice's ephemeral
    /// key and Bob's key, Concat KDF for A128GCM with apu "Alice", apv "Bob".
    #[test]
    fn rfc7518_appendix_c_key_agreement() {
        let bob = TeeKey::from_secret_bytes(&b64("d", "VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw").unwrap()).unwrap();
        assert_eq!(bob.public_jwk()["x"], "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ");
        assert_eq!(bob.public_jwk()["y"], "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck");
        let alice_epk = parse_epk(&json!({
            "kty": "EC", "crv": "P-256",
            "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
            "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"
        }))
        .unwrap();
        let z = p256::ecdh::diffie_hellman(bob.secret.to_nonzero_scalar(), alice_epk.as_affine());
        assert_eq!(
            &z.raw_secret_bytes()[..],
            &[
                158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128,
                106, 72, 246, 218, 167, 121, 140, 254, 144, 196
            ]
        );
        let key = concat_kdf::<16>(z.raw_secret_bytes(), b"A128GCM", b"Alice", b"Bob");
        assert_eq!(b64e(key.as_ref()), "VqqN6vgjbSBcIijNcacQGg");
    }
}
