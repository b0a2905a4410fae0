//! ocicrypt layer decryption (docs/image.md), for layers encrypted by
//! `skopeo copy --encryption-key jwe:PUBKEY.pem`.
//!
//! An encrypted layer descriptor carries two annotations:
//! - `org.opencontainers.image.enc.keys.jwe`: comma-separated standard
//!   base64 of JWE JSON serializations as go-jose writes them, flattened for
//!   one recipient (`protected` holds alg, enc and epk) and general for
//!   several (`protected` holds enc, each `recipients[i].header` alg and
//!   epk). Only `ECDH-ES+A256KW` recipients with `A256GCM` content are
//!   accepted (EC P-256 keys); the plaintext is ocicrypt's private options,
//!   JSON `{"symkey": b64, "digest": "sha256:…", "cipheroptions": {"nonce":
//!   b64}}`.
//! - `org.opencontainers.image.enc.pubopts`: base64 JSON `{"cipher":
//!   "AES_256_CTR_HMAC_SHA256", "hmac": b64, "cipheroptions": {}}`.
//!
//! The layer is AES-256-CTR (Go's `cipher.NewCTR`: the 16-byte nonce is
//! the initial counter block, incremented as a 128-bit big-endian number)
//! and HMAC-SHA256 keyed with the *same* symmetric key over the ciphertext
//! (ocicrypt blockcipher_aes_ctr.go). The MAC is checked at the end of the
//! stream: a mismatch is the error of the final read, never an EOF.
//!
//! Decisions that differ from ocicrypt, both fail-closed: the nonce is
//! taken only from the JWE-protected private options (ocicrypt would
//! prefer a nonce in the unauthenticated pubopts; any public cipher option
//! is refused here), and a missing pubopts annotation is an error.

use std::collections::BTreeMap;
use std::io::{self, Read};

use aes::Aes256;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ctr::cipher::{KeyIvInit, StreamCipher};
use p256::SecretKey;
use p256::pkcs8::PrivateKeyInfo;
use p256::pkcs8::der::Decode;
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};
use ztinit::kbs::jwe::{b64, concat_kdf, parse_epk};

use crate::signature::{Block, PemError, pem_blocks};

pub const KEYS_JWE_ANNOTATION: &str = "org.opencontainers.image.enc.keys.jwe";
pub const PUBOPTS_ANNOTATION: &str = "org.opencontainers.image.enc.pubopts";
pub const CIPHER: &str = "AES_256_CTR_HMAC_SHA256";
const KEY_ALG: &str = "ECDH-ES+A256KW";
const ENC: &str = "A256GCM";

/// A keys annotation is one JWE per key-wrapping pass, ~1-2 KiB each.
pub const MAX_KEYS_ANNOTATION_LEN: usize = 64 * 1024;
const MAX_PUBOPTS_LEN: usize = 4096;
const MAX_JWES: usize = 8;
const MAX_RECIPIENTS: usize = 32;
pub const MAX_PRIVATE_KEYS: usize = 8;
const MAX_PROTECTED_LEN: usize = 4096;
const MAX_JWE_CIPHERTEXT_LEN: usize = 8192;

const SYMKEY_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const HMAC_LEN: usize = 32;
const WRAPPED_CEK_LEN: usize = 40;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;

const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Why a layer key could not be unwrapped or a layer not decrypted.
/// Messages never contain key, nonce or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcicryptError {
    #[error("image decryption keys: {0}")]
    Pem(#[from] PemError),
    #[error("image decryption key {index} is a {label:?} PEM block, not a PRIVATE KEY or EC PRIVATE KEY")]
    KeyLabel { index: usize, label: String },
    #[error("image decryption key {index}: {reason}")]
    KeyUnsupported { index: usize, reason: String },
    #[error("layer annotation {0} is missing")]
    MissingAnnotation(&'static str),
    #[error("layer annotation {name} is {got} bytes, more than the {cap}-byte cap")]
    AnnotationTooLarge { name: &'static str, got: usize, cap: usize },
    #[error("layer annotation {0} is not standard base64")]
    Base64(&'static str),
    #[error("layer key JWE {index}: {reason}")]
    Jwe { index: usize, reason: String },
    #[error("the layer key is wrapped for none of our {keys} decryption keys ({recipients} recipients)")]
    NotForUs { keys: usize, recipients: usize },
    #[error("layer key JWE authentication failed (tampered ciphertext, tag or header)")]
    Decrypt,
    #[error("layer key options: {0}")]
    PrivateOptions(String),
    #[error("layer pubopts: {0}")]
    PublicOptions(String),
    #[error("layer HMAC-SHA256 mismatch at end of stream: the encrypted layer was tampered with or truncated")]
    Hmac,
}

/// The KBS-released image decryption keys (EC P-256). The scalars are
/// zeroized on drop (`SecretKey` is `ZeroizeOnDrop`).
pub struct PrivateKeys {
    keys: Vec<SecretKey>,
}

impl std::fmt::Debug for PrivateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKeys({} keys, <redacted>)", self.keys.len())
    }
}

impl PrivateKeys {
    /// PEM text with one or more EC P-256 keys, PKCS#8 (`PRIVATE KEY`) or
    /// SEC1 (`EC PRIVATE KEY`). RSA and encrypted keys are refused with a
    /// message saying so.
    pub fn from_pem(pem: &[u8]) -> Result<Self, OcicryptError> {
        let mut keys = Vec::new();
        for (index, Block { label, der }) in pem_blocks(pem, MAX_PRIVATE_KEYS)?.into_iter().enumerate() {
            let unsupported = |reason: String| OcicryptError::KeyUnsupported { index, reason };
            let key = match label.as_str() {
                "PRIVATE KEY" => {
                    let info = PrivateKeyInfo::from_der(&der).map_err(|e| unsupported(format!("not PKCS#8: {e}")))?;
                    if info.algorithm.oid.to_string() == RSA_ENCRYPTION_OID {
                        return Err(unsupported("RSA keys are not supported; use an EC P-256 key".into()));
                    }
                    SecretKey::try_from(info).map_err(|e| unsupported(format!("not an EC P-256 key: {e}")))?
                }
                "EC PRIVATE KEY" => {
                    SecretKey::from_sec1_der(&der).map_err(|e| unsupported(format!("not an EC P-256 key: {e}")))?
                }
                "RSA PRIVATE KEY" => return Err(unsupported("RSA keys are not supported; use an EC P-256 key".into())),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(unsupported("passphrase-encrypted keys are not supported".into()));
                }
                other => return Err(OcicryptError::KeyLabel { index, label: other.chars().take(40).collect() }),
            };
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

/// An unwrapped layer key: the symmetric key (zeroized on drop), the CTR
/// nonce and the expected HMAC.
pub struct LayerKey {
    symkey: Zeroizing<[u8; SYMKEY_LEN]>,
    nonce: [u8; NONCE_LEN],
    hmac: [u8; HMAC_LEN],
    original_digest: Option<String>,
}

impl std::fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerKey").field("original_digest", &self.original_digest).finish_non_exhaustive()
    }
}

impl LayerKey {
    /// The decrypting reader over the encrypted blob `encrypted`.
    pub fn decryptor<R: Read>(&self, encrypted: R) -> Decryptor<R> {
        Decryptor {
            inner: encrypted,
            cipher: Aes256Ctr::new(self.symkey.as_ref().into(), (&self.nonce).into()),
            mac: Some(ring::hmac::Context::with_key(&ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                self.symkey.as_ref(),
            ))),
            expected: self.hmac,
            state: State::Streaming,
        }
    }

    /// The private options' `digest`: the digest of the layer as it was
    /// *before* encryption in the pipeline that encrypted it. When skopeo
    /// compressed on the way (as it does for a plain tar) this is the
    /// uncompressed diff_id, not the digest of the decrypted blob, so it is
    /// informational: integrity comes from the HMAC and the config's
    /// diff_ids.
    pub fn original_digest(&self) -> Option<&str> {
        self.original_digest.as_deref()
    }
}

/// ocicrypt's private options (the JWE plaintext).
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct PrivateOptions {
    symkey: String,
    #[zeroize(skip)]
    #[serde(default)]
    digest: Option<String>,
    #[zeroize(skip)]
    #[serde(default)]
    cipheroptions: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct PublicOptions {
    cipher: String,
    hmac: String,
    #[serde(default)]
    cipheroptions: Option<BTreeMap<String, Value>>,
}

/// Unwraps the layer key of an encrypted layer from its descriptor's
/// annotations with one of `keys`.
pub fn unwrap_layer(annotations: &BTreeMap<String, String>, keys: &PrivateKeys) -> Result<LayerKey, OcicryptError> {
    let cipher_hmac = public_options(annotations)?;
    let jwes = annotations.get(KEYS_JWE_ANNOTATION).ok_or(OcicryptError::MissingAnnotation(KEYS_JWE_ANNOTATION))?;
    if jwes.len() > MAX_KEYS_ANNOTATION_LEN {
        return Err(OcicryptError::AnnotationTooLarge {
            name: KEYS_JWE_ANNOTATION,
            got: jwes.len(),
            cap: MAX_KEYS_ANNOTATION_LEN,
        });
    }
    let entries: Vec<&str> = jwes.split(',').collect();
    if entries.len() > MAX_JWES {
        return Err(OcicryptError::Jwe { index: MAX_JWES, reason: format!("more than {MAX_JWES} JWEs") });
    }
    let mut recipients = 0;
    for (index, entry) in entries.into_iter().enumerate() {
        let json = STANDARD.decode(entry).map_err(|_| OcicryptError::Base64(KEYS_JWE_ANNOTATION))?;
        let jwe = Jwe::parse(&json).map_err(|reason| OcicryptError::Jwe { index, reason })?;
        recipients += jwe.recipients.len();
        if let Some(plaintext) = jwe.decrypt(&keys.keys).map_err(|e| e.at(index))? {
            return layer_key(&plaintext, cipher_hmac);
        }
    }
    Err(OcicryptError::NotForUs { keys: keys.len(), recipients })
}

/// The pubopts: the cipher must be ocicrypt's only one and no public
/// cipher option may be set. Returns the expected HMAC.
fn public_options(annotations: &BTreeMap<String, String>) -> Result<[u8; HMAC_LEN], OcicryptError> {
    let b64 = annotations.get(PUBOPTS_ANNOTATION).ok_or(OcicryptError::MissingAnnotation(PUBOPTS_ANNOTATION))?;
    if b64.len() > MAX_PUBOPTS_LEN {
        return Err(OcicryptError::AnnotationTooLarge {
            name: PUBOPTS_ANNOTATION,
            got: b64.len(),
            cap: MAX_PUBOPTS_LEN,
        });
    }
    let json = STANDARD.decode(b64).map_err(|_| OcicryptError::Base64(PUBOPTS_ANNOTATION))?;
    let opts: PublicOptions = serde_json::from_slice(&json).map_err(|e| OcicryptError::PublicOptions(e.to_string()))?;
    if opts.cipher != CIPHER {
        return Err(OcicryptError::PublicOptions(format!(
            "cipher {:?} is not {CIPHER}",
            opts.cipher.chars().take(60).collect::<String>()
        )));
    }
    if opts.cipheroptions.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(OcicryptError::PublicOptions(
            "public cipheroptions are not accepted (ocicrypt writes none)".into(),
        ));
    }
    let hmac = STANDARD.decode(&opts.hmac).map_err(|_| OcicryptError::PublicOptions("hmac is not base64".into()))?;
    let hmac = <[u8; HMAC_LEN]>::try_from(hmac.as_slice())
        .map_err(|_| OcicryptError::PublicOptions(format!("hmac has {} bytes, not {HMAC_LEN}", hmac.len())))?;
    Ok(hmac)
}

fn layer_key(plaintext: &[u8], hmac: [u8; HMAC_LEN]) -> Result<LayerKey, OcicryptError> {
    let opts: PrivateOptions =
        serde_json::from_slice(plaintext).map_err(|e| OcicryptError::PrivateOptions(e.to_string()))?;
    let symkey = Zeroizing::new(
        STANDARD.decode(&opts.symkey).map_err(|_| OcicryptError::PrivateOptions("symkey is not base64".into()))?,
    );
    let symkey = Zeroizing::new(<[u8; SYMKEY_LEN]>::try_from(symkey.as_slice()).map_err(|_| {
        OcicryptError::PrivateOptions(format!("symkey has {} bytes, not {SYMKEY_LEN} (AES-256)", symkey.len()))
    })?);
    let nonce = opts
        .cipheroptions
        .as_ref()
        .and_then(|o| o.get("nonce"))
        .ok_or_else(|| OcicryptError::PrivateOptions("cipheroptions.nonce is missing".into()))?;
    let nonce = STANDARD.decode(nonce).map_err(|_| OcicryptError::PrivateOptions("nonce is not base64".into()))?;
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce.as_slice())
        .map_err(|_| OcicryptError::PrivateOptions(format!("nonce has {} bytes, not {NONCE_LEN}", nonce.len())))?;
    Ok(LayerKey { symkey, nonce, hmac, original_digest: opts.digest.clone() })
}

/// One JWE JSON serialization, flattened or general.
struct Jwe {
    protected_b64: String,
    protected: Map<String, Value>,
    unprotected: Map<String, Value>,
    recipients: Vec<Recipient>,
    iv: String,
    ciphertext: String,
    tag: String,
}

struct Recipient {
    header: Map<String, Value>,
    encrypted_key: String,
}

/// A recipient's failure: `Unwrap` (not our key) is expected and skipped,
/// anything else names the fault.
enum TryError {
    Fatal(OcicryptError),
    Malformed(String),
}

impl TryError {
    fn at(self, index: usize) -> OcicryptError {
        match self {
            TryError::Fatal(e) => e,
            TryError::Malformed(reason) => OcicryptError::Jwe { index, reason },
        }
    }
}

fn object(v: Option<&Value>, member: &str) -> Result<Map<String, Value>, String> {
    match v {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(format!("{member} is not an object")),
    }
}

fn string(v: &Map<String, Value>, member: &str) -> Result<String, String> {
    match v.get(member) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{member} is not a string")),
        None => Err(format!("{member} is missing")),
    }
}

impl Jwe {
    fn parse(json: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let top = v.as_object().ok_or("not a JSON object")?;
        if top.contains_key("aad") {
            return Err("member aad is not supported".into());
        }
        let protected_b64 = string(top, "protected")?;
        if protected_b64.len() > MAX_PROTECTED_LEN {
            return Err(format!("protected header is more than {MAX_PROTECTED_LEN} bytes"));
        }
        let protected = b64("protected", &protected_b64).map_err(|e| e.to_string())?;
        let protected: Value = serde_json::from_slice(&protected).map_err(|e| format!("protected header: {e}"))?;
        let protected = object(Some(&protected), "protected header")?;
        let unprotected = object(top.get("unprotected"), "unprotected")?;
        let recipients = match top.get("recipients") {
            // General serialization; go-jose also repeats the first
            // recipient's encrypted_key at the top level: ignored.
            Some(Value::Array(list)) => {
                if list.is_empty() || list.len() > MAX_RECIPIENTS {
                    return Err(format!("{} recipients (1 to {MAX_RECIPIENTS} accepted)", list.len()));
                }
                list.iter()
                    .map(|r| {
                        let r = r.as_object().ok_or("a recipient is not an object")?;
                        Ok(Recipient {
                            header: object(r.get("header"), "header")?,
                            encrypted_key: string(r, "encrypted_key")?,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?
            }
            Some(_) => return Err("recipients is not an array".into()),
            None => vec![Recipient {
                header: object(top.get("header"), "header")?,
                encrypted_key: string(top, "encrypted_key")?,
            }],
        };
        let ciphertext = string(top, "ciphertext")?;
        if ciphertext.len() > MAX_JWE_CIPHERTEXT_LEN {
            return Err(format!("ciphertext is more than {MAX_JWE_CIPHERTEXT_LEN} bytes"));
        }
        Ok(Jwe {
            protected_b64,
            protected,
            unprotected,
            recipients,
            iv: string(top, "iv")?,
            ciphertext,
            tag: string(top, "tag")?,
        })
    }

    /// The plaintext when one of `keys` is a recipient; `None` when none is.
    fn decrypt(&self, keys: &[SecretKey]) -> Result<Option<Zeroizing<Vec<u8>>>, TryError> {
        for recipient in &self.recipients {
            let header = self.header_of(recipient).map_err(TryError::Malformed)?;
            for key in keys {
                if let Some(cek) = unwrap_cek(key, &header, &recipient.encrypted_key)? {
                    return self.open(&cek).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The JOSE header of a recipient: the union of the three headers,
    /// whose member names must be disjoint (RFC 7516 §7.2.1).
    fn header_of(&self, recipient: &Recipient) -> Result<Map<String, Value>, String> {
        let mut header = self.protected.clone();
        for (k, v) in self.unprotected.iter().chain(recipient.header.iter()) {
            if header.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("header member {k:?} appears twice"));
            }
        }
        match header.get("alg").and_then(Value::as_str) {
            Some(KEY_ALG) => {}
            Some(alg @ ("RSA-OAEP" | "RSA-OAEP-256")) => return Err(format!("alg {alg} (RSA) is not supported")),
            other => return Err(format!("alg {:?} is not supported (only {KEY_ALG})", other.unwrap_or("<missing>"))),
        }
        match header.get("enc").and_then(Value::as_str) {
            Some(ENC) => {}
            other => return Err(format!("enc {:?} is not supported (only {ENC})", other.unwrap_or("<missing>"))),
        }
        for refused in ["zip", "crit"] {
            if header.contains_key(refused) {
                return Err(format!("header member {refused} is not supported"));
            }
        }
        Ok(header)
    }

    fn open(&self, cek: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, TryError> {
        let malformed = |e: ztinit::kbs::jwe::JweError| TryError::Malformed(e.to_string());
        let iv = b64("iv", &self.iv).map_err(malformed)?;
        let iv = <[u8; GCM_IV_LEN]>::try_from(iv.as_slice())
            .map_err(|_| TryError::Malformed(format!("iv has {} bytes, not {GCM_IV_LEN}", iv.len())))?;
        let tag = b64("tag", &self.tag).map_err(malformed)?;
        let tag = <[u8; GCM_TAG_LEN]>::try_from(tag.as_slice())
            .map_err(|_| TryError::Malformed(format!("tag has {} bytes, not {GCM_TAG_LEN}", tag.len())))?;
        let mut plaintext = Zeroizing::new(b64("ciphertext", &self.ciphertext).map_err(malformed)?);
        let cipher = Aes256Gcm::new_from_slice(cek).map_err(|_| TryError::Fatal(OcicryptError::Decrypt))?;
        cipher
            .decrypt_in_place_detached(
                &Nonce::from(iv),
                self.protected_b64.as_bytes(),
                plaintext.as_mut(),
                &Tag::from(tag),
            )
            .map_err(|_| TryError::Fatal(OcicryptError::Decrypt))?;
        Ok(plaintext)
    }
}

/// ECDH-ES+A256KW for one recipient and one of our keys: the content key,
/// or `None` when the key unwrap fails (wrapped for another key).
fn unwrap_cek(
    key: &SecretKey,
    header: &Map<String, Value>,
    encrypted_key: &str,
) -> Result<Option<Zeroizing<[u8; 32]>>, TryError> {
    let malformed = |e: ztinit::kbs::jwe::JweError| TryError::Malformed(e.to_string());
    let epk =
        parse_epk(header.get("epk").ok_or_else(|| TryError::Malformed("epk is missing".into()))?).map_err(malformed)?;
    let party = |k: &'static str| -> Result<Vec<u8>, TryError> {
        match header.get(k) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => b64(k, s).map_err(malformed),
            Some(_) => Err(TryError::Malformed(format!("{k} is not a string"))),
        }
    };
    let (apu, apv) = (party("apu")?, party("apv")?);
    let wrapped = b64("encrypted_key", encrypted_key).map_err(malformed)?;
    if wrapped.len() != WRAPPED_CEK_LEN {
        return Err(TryError::Malformed(format!("encrypted_key has {} bytes, not {WRAPPED_CEK_LEN}", wrapped.len())));
    }
    let shared = p256::ecdh::diffie_hellman(key.to_nonzero_scalar(), epk.as_affine());
    let kek = concat_kdf::<32>(shared.raw_secret_bytes(), KEY_ALG.as_bytes(), &apu, &apv);
    let mut cek = Zeroizing::new([0u8; 32]);
    let Ok(kw) = aes_kw::KekAes256::try_from(kek.as_slice()) else { return Ok(None) };
    Ok(kw.unwrap(&wrapped, cek.as_mut()).ok().map(|()| cek))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    Verified,
    Failed,
}

/// Decrypts an ocicrypt AES-256-CTR layer as it is read, authenticating
/// the ciphertext with HMAC-SHA256. The plaintext is released before the
/// MAC is checked (the layer is streamed): only a read that returns
/// `Ok(0)` says the whole layer was authentic; a mismatch makes the final
/// read (and every later one) fail with `InvalidData` wrapping
/// [`OcicryptError::Hmac`], so nothing unpacked from it may be kept.
pub struct Decryptor<R> {
    inner: R,
    cipher: Aes256Ctr,
    /// ring's HMAC: its SHA-256 is assembly, and every byte of a layer
    /// goes through it.
    mac: Option<ring::hmac::Context>,
    expected: [u8; HMAC_LEN],
    state: State,
}

impl<R> std::fmt::Debug for Decryptor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor").field("state", &self.state).finish_non_exhaustive()
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Verified => return Ok(0),
            State::Failed => return Err(hmac_error()),
            State::Streaming => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            let verified = self.mac.take().is_some_and(|mac| tags_equal(mac.sign().as_ref(), &self.expected));
            self.state = if verified { State::Verified } else { State::Failed };
            return if verified { Ok(0) } else { Err(hmac_error()) };
        }
        let Some(chunk) = buf.get_mut(..n) else {
            self.state = State::Failed;
            return Err(io::Error::other("encrypted layer reader returned more bytes than asked for"));
        };
        if let Some(mac) = self.mac.as_mut() {
            mac.update(chunk);
        }
        self.cipher.apply_keystream(chunk);
        Ok(n)
    }
}

/// Compares two tags in time independent of where they differ.
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, OcicryptError::Hmac)
}

#[cfg(test)]
mod tests;
