//! What PID 1 and the `ztinit-image` helper say to each other: one JSON
//! [`Request`] on the helper's stdin, one JSON [`Answer`] on its stdout.
//! Both sides are measured code of the same image; the request carries the
//! KBS-released credentials and decryption keys, so it is built in
//! zeroizing buffers and never logged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bumped when either side changes incompatibly; the helper refuses
/// another version.
pub const VERSION: u32 = 1;

/// Largest request PID 1 sends (keys and certificates included).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Largest answer PID 1 accepts.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How the registry is authenticated (the baked `[image]` trust).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryTrust {
    /// Plain HTTP: every byte is still checked against a digest that a
    /// signature (or the baked reference) vouches for.
    InsecureHttp,
    /// PEM of the CA that issued the registry's certificate.
    Ca(String),
    /// PEM of the registry's own certificate.
    Pinned(String),
}

/// What must vouch for the image before anything of it is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignaturePolicy {
    /// A cosign signature by one of the baked keys over the manifest digest.
    Signed,
    /// The digest pinned in the baked reference suffices.
    Digest,
}

/// Registry credentials released by the KBS.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    /// `REGISTRY/REPO[:TAG][@sha256:DIGEST]`, validated by PID 1.
    pub reference: String,
    pub trust: RegistryTrust,
    pub policy: SignaturePolicy,
    /// PEM public keys of the publishers (baked).
    pub signature_keys: Vec<String>,
    pub credentials: Option<Credentials>,
    /// PEM private keys for ocicrypt JWE recipients (KBS resources).
    pub decryption_keys: Vec<DecryptionKey>,
    /// The directory to unpack into (empty, on a tmpfs PID 1 mounted).
    pub root: String,
    /// Where downloaded blobs wait for their digest check before they are
    /// unpacked (same tmpfs, outside `root`).
    pub work: String,
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
    pub retries: u32,
    pub deadline_ms: u64,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    /// `[image] user`, which replaces the image's `User` when set.
    pub user: Option<String>,
}

/// A PEM private key, wiped when dropped.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct DecryptionKey(pub String);

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptionKey(..)")
    }
}

/// The verified image, as the workload is to be run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub version: u32,
    /// `sha256:<hex>` of the manifest that was verified and unpacked.
    pub manifest_digest: String,
    /// How it was vouched for: `signed by <key fingerprint>` or `pinned digest`.
    pub verified_by: String,
    pub layers: u32,
    /// Bytes written under the root.
    pub unpacked_bytes: u64,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// The user resolved in the image's own /etc/passwd and /etc/group.
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Image annotations, for the log only.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
