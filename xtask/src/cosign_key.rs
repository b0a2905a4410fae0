//! `xtask cosign-key` and `xtask cosign-sign`: test keys and sigstore
//! signatures for the container-image scenarios (docs/image.md).
//!
//! - `cosign-key --out DIR [--passphrase-file F]` writes an ECDSA P-256
//!   signing key as the encrypted cosign key that containers/image (skopeo
//!   `--sign-by-sigstore-private-key`) and cosign read: an `ENCRYPTED COSIGN
//!   PRIVATE KEY` PEM block holding go-tuf's `encrypted` JSON envelope
//!   (scrypt N=32768 r=8 p=1 over the passphrase, a 32-byte salt, NaCl
//!   secretbox with a 24-byte nonce, around the PKCS#8 DER key). Files:
//!   `DIR/cosign.key`, `DIR/cosign.pass` (the passphrase: copied from F, or
//!   random when F is not given) and `DIR/key.pub` (SPKI PEM).
//! - `cosign-key --out DIR --ec-pair NAME` writes a plain EC P-256 key pair
//!   for ocicrypt JWE recipients (`skopeo copy --encryption-key
//!   jwe:DIR/NAME.pub`): `DIR/NAME.key` (PKCS#8 PEM, what the guest gets
//!   from the KBS) and `DIR/NAME.pub` (SPKI PEM).
//! - `cosign-sign --key K --passphrase-file F --digest sha256:HEX
//!   --identity REF --out DIR` writes an OCI layout whose tag
//!   `sha256-HEX.sig` is the sigstore attachment that containers/image
//!   would push for that manifest digest. Debian 12's skopeo is built with
//!   sigstore *signing* disabled ("Debian-local change: sigstore disabled"),
//!   so the harness signs with this and pushes the layout with `skopeo copy
//!   --preserve-digests oci:DIR:sha256-HEX.sig docker://HOST/REPO:sha256-HEX.sig`.
//!   The layout reproduces containers/image's attachment (and the JSON
//!   field order Go writes): OCI manifest, a config with the payloads as `diff_ids`, one
//!   `application/vnd.dev.cosign.simplesigning.v1+json` layer whose
//!   annotation `dev.cosignproject.cosign/signature` is the base64 DER
//!   ECDSA-SHA256 signature of the simple-signing payload.
//!
//! A passphrase file is read as its first line, without the line ending.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::der::pem as pem_rfc7468;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cli;

pub const KEY_USAGE: &str = "usage: cargo xtask cosign-key --out DIR [--passphrase-file F]
         writes DIR/cosign.key (encrypted cosign/sigstore private key, ECDSA P-256),
         DIR/cosign.pass (its passphrase: F's first line, or random) and DIR/key.pub (SPKI PEM)
       cargo xtask cosign-key --out DIR --ec-pair NAME
         writes DIR/NAME.key (EC P-256 PKCS#8 PEM) and DIR/NAME.pub (SPKI PEM), for ocicrypt jwe: recipients";

pub const SIGN_USAGE: &str =
    "usage: cargo xtask cosign-sign --key K --passphrase-file F --digest sha256:HEX --identity REF --out DIR
         writes an OCI layout DIR whose tag sha256-HEX.sig is the sigstore signature attachment of
         manifest HEX for REF (registry/repo[:tag]), as containers/image writes it; push it with
         skopeo copy --preserve-digests oci:DIR:sha256-HEX.sig docker://REGISTRY/REPO:sha256-HEX.sig";

const PEM_TYPE: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// go-tuf's `encrypted` package accepts exactly these (`CheckParams`).
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const BOX_KEY_LEN: usize = 32;

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// go-tuf `encrypted.data`: Go encodes `[]byte` as padded standard base64.
#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

pub fn key_cmd(args: &[String]) -> Result<()> {
    let (mut out, mut pass_file, mut ec_pair) = (None, None, None);
    let mut p = cli::Args::new(args, KEY_USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("out") => out = Some(PathBuf::from(p.value()?)),
            cli::Long("passphrase-file") => pass_file = Some(PathBuf::from(p.value()?)),
            cli::Long("ec-pair") => ec_pair = Some(p.string()?),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let Some(out) = out else { return Err(p.error("--out is required")) };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let key = generate()?;
    if let Some(name) = ec_pair {
        if pass_file.is_some() {
            return Err(p.error("--ec-pair writes an unencrypted key: --passphrase-file does not apply"));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(p.error(format!("--ec-pair {name:?}: use letters, digits, - and _")));
        }
        let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow!("cannot encode the key: {e}"))?;
        write_private(&out.join(format!("{name}.key")), pkcs8.as_bytes())?;
        write_public(&key, &out.join(format!("{name}.pub")))?;
        println!("cosign-key: EC P-256 pair {0}.key / {0}.pub in {1}", name, out.display());
        return Ok(());
    }
    let passphrase = match pass_file {
        Some(f) => read_passphrase(&f)?,
        None => {
            let mut raw = Zeroizing::new([0u8; 16]);
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(raw.as_mut()))
                .context("cannot read /dev/urandom")?;
            Zeroizing::new(hex::encode(raw.as_ref()).into_bytes())
        }
    };
    let salt = random::<SALT_LEN>()?;
    let nonce = random::<NONCE_LEN>()?;
    let pem = encrypt_key(&key, &passphrase, &salt, &nonce)?;
    write_private(&out.join("cosign.key"), pem.as_bytes())?;
    let mut line = passphrase.to_vec();
    line.push(b'\n');
    write_private(&out.join("cosign.pass"), &line)?;
    write_public(&key, &out.join("key.pub"))?;
    println!("cosign-key: cosign.key, cosign.pass and key.pub in {}", out.display());
    Ok(())
}

pub fn sign_cmd(args: &[String]) -> Result<()> {
    let (mut key, mut pass, mut digest, mut identity, mut out) = (None, None, None, None, None);
    let mut p = cli::Args::new(args, SIGN_USAGE);
    while let Some(arg) = p.next()? {
        match arg {
            cli::Long("key") => key = Some(PathBuf::from(p.value()?)),
            cli::Long("passphrase-file") => pass = Some(PathBuf::from(p.value()?)),
            cli::Long("digest") => digest = Some(p.string()?),
            cli::Long("identity") => identity = Some(p.string()?),
            cli::Long("out") => out = Some(PathBuf::from(p.value()?)),
            cli::Short('h') | cli::Long("help") => return p.help(),
            other => {
                let e = other.unexpected();
                return Err(p.error(e));
            }
        }
    }
    let (Some(key), Some(pass), Some(digest), Some(identity), Some(out)) = (key, pass, digest, identity, out) else {
        return Err(p.error("--key, --passphrase-file, --digest, --identity and --out are required"));
    };
    let hex_digest = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| p.error(format!("--digest {digest:?} is not sha256:<64 lowercase hex>")))?;
    let pem = std::fs::read_to_string(&key).with_context(|| format!("cannot read {}", key.display()))?;
    let signing = decrypt_key(&pem, &read_passphrase(&pass)?)?;
    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let payload = simple_signing_payload(&digest, &identity, timestamp);
    let tag = format!("sha256-{hex_digest}.sig");
    write_attachment(&out, &tag, &signing, &payload)?;
    println!("cosign-sign: {tag} in {}", out.display());
    Ok(())
}

fn generate() -> Result<SigningKey> {
    // A uniformly random 32-byte string is a valid scalar except with
    // probability ~2^-32; retry rather than bias.
    for _ in 0..8 {
        let bytes = random::<32>()?;
        if let Ok(k) = SigningKey::from_slice(bytes.as_ref()) {
            return Ok(k);
        }
    }
    bail!("no valid P-256 scalar after 8 draws")
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut b = Zeroizing::new([0u8; N]);
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(b.as_mut()))
        .context("cannot read /dev/urandom")?;
    Ok(b)
}

fn read_passphrase(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let all = Zeroizing::new(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?);
    let line = all.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(Zeroizing::new(line.to_vec()))
}

fn box_key(passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; BOX_KEY_LEN]>> {
    let params = scrypt::Params::new(SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, BOX_KEY_LEN)
        .map_err(|e| anyhow!("scrypt parameters: {e}"))?;
    let mut key = Zeroizing::new([0u8; BOX_KEY_LEN]);
    scrypt::scrypt(passphrase, salt, &params, key.as_mut()).map_err(|e| anyhow!("scrypt: {e}"))?;
    Ok(key)
}

/// The encrypted cosign key PEM for `key`, with the given salt and nonce
/// (fresh random ones in use; fixed ones in tests).
fn encrypt_key(key: &SigningKey, passphrase: &[u8], salt: &[u8; SALT_LEN], nonce: &[u8; NONCE_LEN]) -> Result<String> {
    let der = key.to_pkcs8_der().map_err(|e| anyhow!("cannot encode the key: {e}"))?;
    let boxed = XSalsa20Poly1305::new(&Key::from(*box_key(passphrase, salt)?))
        .encrypt(&Nonce::from(*nonce), der.as_bytes())
        .map_err(|_| anyhow!("secretbox seal failed"))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: "scrypt".into(),
            params: KdfParams { n: 1 << SCRYPT_LOG_N, r: SCRYPT_R, p: SCRYPT_P },
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher { name: "nacl/secretbox".into(), nonce: STANDARD.encode(nonce) },
        ciphertext: STANDARD.encode(boxed),
    };
    let json = serde_json::to_vec(&envelope)?;
    pem_rfc7468::encode_string(PEM_TYPE, LineEnding::LF, &json).map_err(|e| anyhow!("cannot PEM-encode the key: {e}"))
}

/// Reads an encrypted cosign key as containers/image does: the PEM type,
/// go-tuf's fixed scrypt parameters, then PKCS#8 (ECDSA P-256 only here).
fn decrypt_key(pem: &str, passphrase: &[u8]) -> Result<SigningKey> {
    let (label, json) = pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| anyhow!("key PEM: {e}"))?;
    ensure!(
        label == PEM_TYPE || label == "ENCRYPTED SIGSTORE PRIVATE KEY",
        "key PEM type {label:?} is not {PEM_TYPE:?}"
    );
    let envelope: Envelope = serde_json::from_slice(&json).context("key envelope")?;
    ensure!(envelope.kdf.name == "scrypt", "kdf {:?} is not scrypt", envelope.kdf.name);
    ensure!(envelope.cipher.name == "nacl/secretbox", "cipher {:?} is not nacl/secretbox", envelope.cipher.name);
    let KdfParams { n, r, p } = envelope.kdf.params;
    ensure!((n, r, p) == (1 << SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P), "unexpected scrypt parameters N={n} r={r} p={p}");
    let salt = STANDARD.decode(&envelope.kdf.salt).context("salt")?;
    let nonce = STANDARD.decode(&envelope.cipher.nonce).context("nonce")?;
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce.as_slice())
        .map_err(|_| anyhow!("nonce has {} bytes, not {NONCE_LEN}", nonce.len()))?;
    let boxed = STANDARD.decode(&envelope.ciphertext).context("ciphertext")?;
    let der = Zeroizing::new(
        XSalsa20Poly1305::new(&Key::from(*box_key(passphrase, &salt)?))
            .decrypt(&Nonce::from(nonce), boxed.as_slice())
            .map_err(|_| anyhow!("cannot decrypt the key: wrong passphrase or corrupted key"))?,
    );
    SigningKey::from_pkcs8_der(&der).map_err(|e| anyhow!("the key is not an ECDSA P-256 PKCS#8 key: {e}"))
}

/// containers/image's `UntrustedSigstorePayload` as Go's encoding/json
/// writes it (map keys sorted, compact).
fn simple_signing_payload(digest: &str, identity: &str, timestamp: u64) -> Vec<u8> {
    let v = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": {"creator": "ztinit xtask cosign-sign", "timestamp": timestamp},
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

fn write_attachment(out: &Path, tag: &str, key: &SigningKey, payload: &[u8]) -> Result<()> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
    let put = |bytes: &[u8]| -> Result<(String, usize)> {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let signature: DerSignature = key.sign(payload);
    let (payload_digest, payload_size) = put(payload)?;
    let config = serde_json::to_vec(&SigConfig {
        architecture: "",
        os: "",
        config: Empty {},
        rootfs: RootFs { kind: "layers", diff_ids: vec![payload_digest.clone()] },
    })?;
    let (config_digest, config_size) = put(&config)?;
    let manifest = serde_json::to_vec(&SigManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        config: Descriptor { media_type: OCI_CONFIG, digest: config_digest, size: config_size, annotations: None },
        layers: vec![Descriptor {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE,
            digest: payload_digest,
            size: payload_size,
            annotations: Some(std::collections::BTreeMap::from([(
                SIGNATURE_ANNOTATION,
                STANDARD.encode(signature.as_bytes()),
            )])),
        }],
    })?;
    let (manifest_digest, manifest_size) = put(&manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

// containers/image's attachment types, in the field order Go's
// encoding/json writes them (struct order; `imgspecv1.Image` with empty
// platform strings and an empty `config` object).
#[derive(Serialize)]
struct SigConfig {
    architecture: &'static str,
    os: &'static str,
    config: Empty,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SigManifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<&'static str, String>>,
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn write_public(key: &SigningKey, path: &Path) -> Result<()> {
    let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| anyhow!("public key: {e}"))?;
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;

    /// `cosign generate-key-pair` output with an empty password, published
    /// with its public key in a cosign user's tests: a known answer for the
    /// envelope format.
    const COSIGN_KEY: &str = "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjozMjc2OCwiciI6
OCwicCI6MX0sInNhbHQiOiJlRHVYMWRQMGtIWVRnK0xkbjcxM0tjbFVJaU92eFVX
VXgvNi9BbitFVk5BPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJwaWhLL2txNmFXa2hqSVVHR3RVUzhTVkdHTDNIWWp4TCJ9LCJj
aXBoZXJ0ZXh0Ijoidm81SHVWRVFWcUZ2WFlQTTVPaTVaWHM5a255bndZU2dvcyth
VklIeHcrOGFPamNZNEtvVjVmL3lHRHR0K3BHV2toanJPR1FLOWdBbmtsazFpQ0c5
a2czUXpPQTZsU2JRaHgvZlowRVRZQ0hLeElncEdPRVRyTDlDenZDemhPZXVSOXJ6
TDcvRjBBVy9vUDVqZXR3dmJMNmQxOEhjck9kWE8yVmYxY2w0YzNLZjVRcnFSZzlN
dlRxQWFsNXJCNHNpY1JaMVhpUUJjb0YwNHc9PSJ9
-----END ENCRYPTED COSIGN PRIVATE KEY-----";
    const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEu78QgxOOcao6U91CSzEXxrKhvFTt
JHNy+eX6EMePtDm8CnDF9HSwnTlD0itGJ/XHPQA5YX10fJAqI1y+ehlFMw==
-----END PUBLIC KEY-----";

    #[test]
    fn a_key_written_by_cosign_decrypts_to_its_public_key() {
        let key = decrypt_key(COSIGN_KEY, b"").unwrap();
        let expected = VerifyingKey::from_public_key_pem(COSIGN_PUB).unwrap();
        assert_eq!(key.verifying_key(), &expected);
        assert!(decrypt_key(COSIGN_KEY, b"wrong").unwrap_err().to_string().contains("wrong passphrase"));
    }

    #[test]
    fn our_envelope_round_trips_and_has_go_tufs_shape() {
        let key = generate().unwrap();
        let pem = encrypt_key(&key, b"pass word", &[7; SALT_LEN], &[9; NONCE_LEN]).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"), "{pem}");
        let (_, json) = pem_rfc7468::decode_vec(pem.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["kdf"]["name"], "scrypt");
        assert_eq!(v["kdf"]["params"], serde_json::json!({"N": 32768, "r": 8, "p": 1}));
        assert_eq!(v["kdf"]["salt"], STANDARD.encode([7; SALT_LEN]));
        assert_eq!(
            v["cipher"],
            serde_json::json!({"name": "nacl/secretbox", "nonce": STANDARD.encode([9; NONCE_LEN])})
        );
        assert_eq!(decrypt_key(&pem, b"pass word").unwrap().to_bytes(), key.to_bytes());
        assert!(decrypt_key(&pem, b"pass wore").is_err());
    }

    #[test]
    fn the_attachment_verifies_under_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = decrypt_key(COSIGN_KEY, b"").unwrap();
        let digest = format!("sha256:{}", "ab".repeat(32));
        let payload = simple_signing_payload(&digest, "10.0.2.101:5000/app:1", 1_700_000_000);
        assert_eq!(
            String::from_utf8(payload.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"10.0.2.101:5000/app:1"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":{{"creator":"ztinit xtask cosign-sign","timestamp":1700000000}}}}"#
            )
        );
        let tag = format!("sha256-{}.sig", "ab".repeat(32));
        write_attachment(dir.path(), &tag, &key, &payload).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], tag.as_str());
        let blob = |d: &serde_json::Value| {
            std::fs::read(dir.path().join("blobs/sha256").join(d.as_str().unwrap().trim_start_matches("sha256:")))
                .unwrap()
        };
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
        assert_eq!(blob(&layer["digest"]), payload);
        let sig = STANDARD.decode(layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap()).unwrap();
        let sig = Signature::from_der(&sig).unwrap();
        let public = VerifyingKey::from_public_key_pem(COSIGN_PUB).unwrap();
        public.verify(&payload, &sig).unwrap();
        assert!(public.verify(b"other", &sig).is_err());
    }

    #[test]
    fn the_passphrase_is_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "secret\nignored\n").unwrap();
        assert_eq!(read_passphrase(&f).unwrap().as_slice(), b"secret");
        std::fs::write(&f, "").unwrap();
        assert_eq!(read_passphrase(&f).unwrap().as_slice(), b"");
    }
}
