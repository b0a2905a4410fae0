//! The `[image]` section: run a container image pulled from a registry
//! instead of a program baked into the initramfs (docs/image.md).
//!
//! Trust anchors (the registry's certificate, the publishers' keys, the
//! signature policy, the KBS resources of credentials and keys) are baked;
//! initdata may choose *which* image only when a baked signature policy
//! verifies whatever it chooses (`config::overlay`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::protocol::SignaturePolicy;
use super::reference::Reference;
use crate::kbs::ResourcePath;
use crate::schema::{Section, Validator};

/// Where the helper lives in the image unless `helper` says otherwise.
pub const DEFAULT_HELPER: &str = "/usr/libexec/ztinit-image";
/// The largest image a guest may unpack (the tmpfs size cap).
pub const MAX_UNPACKED_MIB: u64 = 1 << 20;
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// `REGISTRY/REPO[:TAG][@sha256:DIGEST]`. Absent: no image.
    pub reference: Option<String>,
    /// Plain HTTP to the registry. Content is digest-checked either way.
    pub insecure_http: bool,
    pub ca_cert: Option<String>,
    pub ca_cert_file: Option<String>,
    pub pinned_cert: Option<String>,
    pub pinned_cert_file: Option<String>,
    /// `signed` (default when keys are configured) or `digest`.
    pub signature_policy: Option<SignaturePolicy>,
    /// PEM public keys of the publishers, inline.
    pub signature_keys: Vec<String>,
    /// PEM public keys of the publishers, as files of the image.
    pub signature_key_files: Vec<String>,
    /// KBS resource with `{"username": .., "password": ..}` for the registry.
    pub credentials: Option<ResourcePath>,
    /// KBS resources with the PEM private keys of encrypted layers.
    pub decryption_keys: Vec<ResourcePath>,
    /// Cap on the unpacked image (and the size of its tmpfs).
    pub max_unpacked_mib: u64,
    /// Cap on the number of files, directories and links unpacked.
    pub max_entries: u64,
    pub retries: u32,
    pub deadline_ms: u64,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    /// Replaces the image's Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    pub args: Option<Vec<String>>,
    /// Merged over the image's Env (these win).
    pub env: BTreeMap<String, String>,
    /// Replaces the image's User: `uid[:gid]` or `name[:group]`.
    pub user: Option<String>,
    /// Replaces the image's WorkingDir.
    pub workdir: Option<String>,
    /// The helper that pulls and unpacks.
    pub helper: String,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            reference: None,
            insecure_http: false,
            ca_cert: None,
            ca_cert_file: None,
            pinned_cert: None,
            pinned_cert_file: None,
            signature_policy: None,
            signature_keys: Vec::new(),
            signature_key_files: Vec::new(),
            credentials: None,
            decryption_keys: Vec::new(),
            max_unpacked_mib: 1024,
            max_entries: 500_000,
            retries: 3,
            deadline_ms: 600_000,
            connect_timeout_ms: 5_000,
            read_timeout_ms: 30_000,
            entrypoint: None,
            args: None,
            env: BTreeMap::new(),
            user: None,
            workdir: None,
            helper: DEFAULT_HELPER.into(),
        }
    }
}

impl ImageConfig {
    /// True when the workload is a container image.
    pub fn is_enabled(&self) -> bool {
        self.reference.is_some()
    }

    /// The parsed reference (validated at load).
    pub fn parsed_reference(&self) -> Option<Reference> {
        self.reference.as_deref().and_then(|r| Reference::parse(r).ok())
    }

    /// The policy in force: the configured one, else `signed` with keys,
    /// else `digest`.
    pub fn policy(&self) -> SignaturePolicy {
        self.signature_policy.unwrap_or(if self.has_keys() { SignaturePolicy::Signed } else { SignaturePolicy::Digest })
    }

    pub fn has_keys(&self) -> bool {
        !self.signature_keys.is_empty() || !self.signature_key_files.is_empty()
    }

    /// True when whatever reference initdata names is still checked by a
    /// baked publisher key (so initdata may choose the image).
    pub fn verifies_any_reference(&self) -> bool {
        self.policy() == SignaturePolicy::Signed && self.has_keys()
    }

    /// The trust keys that are set, by name.
    fn trust_keys(&self) -> Vec<&'static str> {
        [
            ("ca_cert", self.ca_cert.is_some()),
            ("ca_cert_file", self.ca_cert_file.is_some()),
            ("pinned_cert", self.pinned_cert.is_some()),
            ("pinned_cert_file", self.pinned_cert_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

impl Section for ImageConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        let Some(reference) = &self.reference else {
            if self.has_keys() || self.credentials.is_some() || !self.decryption_keys.is_empty() {
                v.error("reference", "required when other [image] keys are set");
            }
            return;
        };
        let parsed = match Reference::parse(reference) {
            Ok(r) => Some(r),
            Err(e) => {
                v.error("reference", e);
                None
            }
        };
        let trust = self.trust_keys();
        match (self.insecure_http, trust.as_slice()) {
            (true, []) => {}
            (true, [k, ..]) => v.error(k, "has no effect with insecure_http = true"),
            (false, []) => v.error(
                "",
                "the registry needs exactly one of ca_cert, ca_cert_file, pinned_cert, pinned_cert_file, or insecure_http = true (the guest has no system roots)",
            ),
            (false, [_]) => {}
            (false, several) => v.error(several[1], format!("only one of {} may be set", several.join(", "))),
        }
        for key in ["ca_cert_file", "pinned_cert_file"] {
            let path = if key == "ca_cert_file" { &self.ca_cert_file } else { &self.pinned_cert_file };
            if let Some(p) = path
                && v.absolute_path(key, p)
                && let Some(bytes) = v.file(key, p, MAX_KEY_FILE_BYTES)
                && crate::kbs::transport::parse_pem_certs(&bytes).is_err()
            {
                v.error(key, format!("{p}: no valid PEM certificate"));
            }
        }
        for key in ["ca_cert", "pinned_cert"] {
            let pem = if key == "ca_cert" { &self.ca_cert } else { &self.pinned_cert };
            if let Some(p) = pem
                && let Err(e) = crate::kbs::transport::parse_pem_certs(p.as_bytes())
            {
                v.error(key, e);
            }
        }
        for (i, pem) in self.signature_keys.iter().enumerate() {
            if let Err(e) = check_public_key(pem.as_bytes()) {
                v.error(&format!("signature_keys[{i}]"), e);
            }
        }
        for (i, path) in self.signature_key_files.iter().enumerate() {
            let key = format!("signature_key_files[{i}]");
            if v.absolute_path(&key, path)
                && let Some(bytes) = v.file(&key, path, MAX_KEY_FILE_BYTES)
                && let Err(e) = check_public_key(&bytes)
            {
                v.error(&key, format!("{path}: {e}"));
            }
        }
        match self.policy() {
            SignaturePolicy::Signed if !self.has_keys() => v.error(
                "signature_policy",
                "\"signed\" needs signature_keys or signature_key_files (the publishers' public keys)",
            ),
            SignaturePolicy::Digest if parsed.as_ref().is_some_and(|r| r.digest.is_none()) => v.error(
                "reference",
                "signature_policy \"digest\" needs a pinned @sha256: digest in the reference (or signature keys with \"signed\")",
            ),
            _ => {}
        }
        v.range("max_unpacked_mib", self.max_unpacked_mib, 1, MAX_UNPACKED_MIB);
        v.range("max_entries", self.max_entries, 1, 100_000_000);
        v.range("retries", self.retries, 0, 100);
        v.range("deadline_ms", self.deadline_ms, 1_000, 24 * 3_600_000);
        v.range("connect_timeout_ms", self.connect_timeout_ms, 100, 600_000);
        v.range("read_timeout_ms", self.read_timeout_ms, 100, 600_000);
        if let Some(e) = &self.entrypoint
            && e.is_empty()
        {
            v.error("entrypoint", "must name a program (or leave it out to use the image's)");
        }
        for (key, list) in [("entrypoint", &self.entrypoint), ("args", &self.args)] {
            for (i, a) in list.iter().flatten().enumerate() {
                if a.contains('\0') {
                    v.error(&format!("{key}[{i}]"), "contains a NUL byte");
                }
            }
        }
        for (k, val) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || val.contains('\0') {
                v.error(&format!("env.{k}"), "names must be non-empty without '=' or NUL; values without NUL");
            }
            if k == crate::secrets::CREDENTIALS_ENV {
                v.error(&format!("env.{k}"), "is set by ztinit when secrets are delivered");
            }
        }
        if let Some(u) = &self.user
            && !valid_user_spec(u)
        {
            v.error("user", format!("{u:?} is not uid[:gid] or name[:group]"));
        }
        if let Some(w) = &self.workdir {
            v.absolute_path("workdir", w);
        }
        if v.absolute_path("helper", &self.helper) {
            v.file_head("helper", &self.helper, 4);
        }
    }
}

/// `uid[:gid]` or `name[:group]`: a portable user name or a number each.
pub fn valid_user_spec(spec: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && !p.starts_with('-')
    };
    match spec.split_once(':') {
        Some((u, g)) => part(u) && part(g),
        None => part(spec),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublicKeyError {
    #[error("not a PEM \"PUBLIC KEY\" block: {0}")]
    Pem(String),
    #[error("the PEM block is {0:?}, expected \"PUBLIC KEY\"")]
    Label(String),
    #[error("not an ECDSA P-256 SubjectPublicKeyInfo: {0}")]
    Key(String),
}

/// A publisher key must be an ECDSA P-256 SubjectPublicKeyInfo in PEM (what
/// cosign and skopeo write).
pub fn check_public_key(pem: &[u8]) -> Result<(), PublicKeyError> {
    use p256::pkcs8::DecodePublicKey;
    let text = std::str::from_utf8(pem).map_err(|e| PublicKeyError::Pem(e.to_string()))?;
    let (label, der) = der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| PublicKeyError::Pem(e.to_string()))?;
    if label != "PUBLIC KEY" {
        return Err(PublicKeyError::Label(label.to_string()));
    }
    p256::PublicKey::from_public_key_der(&der).map(drop).map_err(|e| PublicKeyError::Key(e.to_string()))
}
