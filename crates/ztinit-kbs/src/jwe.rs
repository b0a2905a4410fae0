//! The server side of resource encryption, as Trustee's `jwe()` does it for
//! an EC P-256 tee-pubkey: ECDH-ES+A256KW key management, A256GCM content
//! encryption, the protected header's ASCII as AAD.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;
use ztinit::kbs::jwe::concat_kdf;
use ztinit::kbs::protocol::{JweResponse, KEY_ALG};

/// kbs-types' `TeePubKey`: tagged by `kty`, only these members. The server
/// hashes the key as this type re-serialises it, so a member the guest adds
/// (`use`, `kid`) changes the digest, exactly as with Trustee.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kty")]
pub enum TeePubKey {
    RSA {
        alg: String,
        n: String,
        e: String,
    },
    EC {
        crv: String,
        alg: String,
        x: String,
        y: String,
    },
    AKP {
        alg: String,
        #[serde(rename = "pub")]
        public_key: String,
    },
}

impl TeePubKey {
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[derive(Serialize)]
struct Epk<'a> {
    crv: &'a str,
    kty: &'a str,
    x: String,
    y: String,
}

#[derive(Serialize)]
struct ProtectedHeader<'a> {
    alg: &'a str,
    enc: &'a str,
    epk: Epk<'a>,
}

/// Why a resource cannot be encrypted to this key (Trustee: `JweError`).
pub fn recipient(key: &TeePubKey) -> Result<PublicKey, String> {
    match key {
        TeePubKey::EC { crv, alg, .. } if crv == "P-256" && alg == KEY_ALG => {
            ztinit::kbs::jwe::parse_epk(&key.to_value()).map_err(|e| e.to_string())
        }
        TeePubKey::EC { crv, alg, .. } => Err(format!("curve {crv} and algorithm {alg} is not supported")),
        TeePubKey::RSA { alg, .. } | TeePubKey::AKP { alg, .. } => Err(format!("algorithm {alg} is not supported")),
    }
}

/// Encrypts `plaintext` to `recipient`.
pub fn encrypt(recipient: &PublicKey, plaintext: &[u8]) -> Result<JweResponse, String> {
    let ephemeral = SecretKey::random(&mut OsRng);
    let point = ephemeral.public_key().to_encoded_point(false);
    let coord = |c: Option<&p256::FieldBytes>| c.map(|c| URL_SAFE_NO_PAD.encode(c)).unwrap_or_default();
    let header = ProtectedHeader {
        alg: KEY_ALG,
        enc: "A256GCM",
        epk: Epk { crv: "P-256", kty: "EC", x: coord(point.x()), y: coord(point.y()) },
    };
    let header = serde_json::to_string(&header).map_err(|e| e.to_string())?;
    let protected = URL_SAFE_NO_PAD.encode(header.as_bytes());

    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), recipient.as_affine());
    let kek = concat_kdf::<32>(shared.raw_secret_bytes(), KEY_ALG.as_bytes(), b"", b"");
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(cek.as_mut());
    let mut wrapped = [0u8; 40];
    aes_kw::KekAes256::from(*kek).wrap(cek.as_ref(), &mut wrapped).map_err(|e| e.to_string())?;
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let mut buf = Zeroizing::new(plaintext.to_vec());
    let cipher = Aes256Gcm::new_from_slice(cek.as_ref()).map_err(|e| e.to_string())?;
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(iv), protected.as_bytes(), buf.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(JweResponse {
        protected,
        encrypted_key: URL_SAFE_NO_PAD.encode(wrapped),
        aad: None,
        iv: URL_SAFE_NO_PAD.encode(iv),
        ciphertext: URL_SAFE_NO_PAD.encode(buf.as_slice()),
        tag: URL_SAFE_NO_PAD.encode(tag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ztinit::kbs::jwe::TeeKey;

    fn tee_pubkey(k: &TeeKey) -> TeePubKey {
        serde_json::from_value(k.public_jwk().clone()).unwrap()
    }

    /// The client decrypts what this encryptor produces.
    #[test]
    fn the_client_decrypts_it() {
        let key = TeeKey::generate().unwrap();
        let jwe = encrypt(&recipient(&tee_pubkey(&key)).unwrap(), b"the model key").unwrap();
        assert_eq!(key.decrypt(&jwe).unwrap().as_slice(), b"the model key");
    }

    /// The protected header has Trustee's member order (alg, enc, epk{crv, kty, x, y}).
    #[test]
    fn header_matches_trustee() {
        let key = TeeKey::generate().unwrap();
        let jwe = encrypt(&recipient(&tee_pubkey(&key)).unwrap(), b"x").unwrap();
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(&jwe.protected).unwrap()).unwrap();
        assert!(
            header.starts_with(r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":""#),
            "{header}"
        );
    }

    #[test]
    fn keys_trustee_refuses_are_refused() {
        let p384 = TeePubKey::EC { crv: "P-384".into(), alg: KEY_ALG.into(), x: "AA".into(), y: "AA".into() };
        assert!(recipient(&p384).unwrap_err().contains("P-384"));
        let rsa = TeePubKey::RSA { alg: "RSA-OAEP".into(), n: "AA".into(), e: "AQAB".into() };
        assert!(recipient(&rsa).is_err());
    }

    #[test]
    fn extra_members_are_dropped_on_reconstruction() {
        let v = serde_json::json!({"kty": "EC", "crv": "P-256", "alg": KEY_ALG, "x": "a", "y": "b", "use": "enc"});
        let k: TeePubKey = serde_json::from_value(v).unwrap();
        assert!(k.to_value().get("use").is_none());
        assert_eq!(k.to_value()["kty"], "EC");
    }
}
