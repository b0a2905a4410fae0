//! `[kbs]` and `[[secrets]]`: where the Key Broker Service is, how it is
//! authenticated, how long to try, and which resources become files.
//!
//! Everything security-relevant (URL, certificate, `insecure_http`,
//! resources) comes only from the baked, measured file; the kernel command
//! line may tune the timeouts and retry counts (see `config::cmdline`).

use serde::Deserialize;

use super::resource::ResourcePath;
use super::transport::{Endpoint, Scheme, parse_pem_certs};
use crate::schema::{Section, Validator};

/// A pinned certificate or CA bundle file is small; anything larger is not one.
pub const MAX_CERT_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KbsConfig {
    /// Base URL, e.g. `https://kbs.example:8080`. Empty: no KBS.
    pub url: String,
    /// PEM of the CA(s) that issued the KBS certificate (hostname and
    /// validity are checked).
    pub ca_cert: Option<String>,
    /// The same, as a file in the image.
    pub ca_cert_file: Option<String>,
    /// PEM of the KBS's own certificate: the server must present exactly
    /// this certificate (no chain, hostname or validity check).
    pub pinned_cert: Option<String>,
    /// The same, as a file in the image.
    pub pinned_cert_file: Option<String>,
    /// Allow a plain `http://` URL (development only).
    pub insecure_http: bool,
    /// TCP connect timeout per attempt.
    pub connect_timeout_ms: u64,
    /// Longest wait for the next bytes of a response.
    pub read_timeout_ms: u64,
    /// Further attempts after a connection failure, per request.
    pub retries: u32,
    /// First pause between attempts; doubled each time, up to 8 s.
    pub retry_backoff_ms: u64,
    /// Bound on the whole KBS conversation: attestation and every resource.
    pub deadline_ms: u64,
    /// Largest resource accepted (plaintext bytes).
    pub max_resource_bytes: u64,
}

impl Default for KbsConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_cert: None,
            ca_cert_file: None,
            pinned_cert: None,
            pinned_cert_file: None,
            insecure_http: false,
            connect_timeout_ms: 5_000,
            read_timeout_ms: 30_000,
            retries: 5,
            retry_backoff_ms: 500,
            deadline_ms: 120_000,
            max_resource_bytes: 1 << 20,
        }
    }
}

/// Upper bound of `max_resource_bytes`.
pub const MAX_RESOURCE_BYTES: u64 = 64 << 20;

impl KbsConfig {
    /// True when a KBS is configured.
    pub fn is_enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The certificate keys that are set, by name.
    fn cert_keys(&self) -> Vec<&'static str> {
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

impl Section for KbsConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        v.range("connect_timeout_ms", self.connect_timeout_ms, 100, 600_000);
        v.range("read_timeout_ms", self.read_timeout_ms, 100, 600_000);
        v.range("retries", self.retries, 0, 100);
        v.range("retry_backoff_ms", self.retry_backoff_ms, 0, 60_000);
        v.range("deadline_ms", self.deadline_ms, 1_000, 3_600_000);
        v.range("max_resource_bytes", self.max_resource_bytes, 1, MAX_RESOURCE_BYTES);
        if !self.is_enabled() {
            let mut stray = self.cert_keys();
            if self.insecure_http {
                stray.push("insecure_http");
            }
            for k in stray {
                v.error(k, "has no effect without kbs.url");
            }
            return;
        }
        let endpoint = match Endpoint::parse(&self.url) {
            Ok(e) => e,
            Err(e) => return v.error("url", e),
        };
        let certs = self.cert_keys();
        match endpoint.scheme {
            Scheme::Http => {
                if !self.insecure_http {
                    v.error(
                        "url",
                        "http:// needs insecure_http = true (development only); use https:// with a pinned certificate",
                    );
                }
                for k in certs {
                    v.error(k, "has no effect with an http:// url");
                }
            }
            Scheme::Https => {
                if self.insecure_http {
                    v.error("insecure_http", "the url is https://: insecure_http = true must go with an http:// url");
                }
                match certs.as_slice() {
                    [] => v.error(
                        "",
                        "an https:// url needs exactly one of ca_cert, ca_cert_file, pinned_cert, pinned_cert_file (the guest has no system roots)",
                    ),
                    [_] => self.validate_cert(v),
                    several => v.error(several[1], format!("only one of {} may be set", several.join(", "))),
                }
            }
        }
    }
}

impl KbsConfig {
    fn validate_cert(&self, v: &mut Validator<'_>) {
        let check = |v: &mut Validator<'_>, key: &str, pem: &[u8]| {
            if let Err(e) = parse_pem_certs(pem) {
                v.error(key, e);
            }
        };
        if let Some(pem) = self.ca_cert.as_ref().or(self.pinned_cert.as_ref()) {
            let key = if self.ca_cert.is_some() { "ca_cert" } else { "pinned_cert" };
            check(v, key, pem.as_bytes());
        }
        if let Some(path) = self.ca_cert_file.as_ref().or(self.pinned_cert_file.as_ref()) {
            let key = if self.ca_cert_file.is_some() { "ca_cert_file" } else { "pinned_cert_file" };
            if v.absolute_path(key, path)
                && let Some(bytes) = v.file(key, path, MAX_CERT_FILE_BYTES)
            {
                check(v, key, &bytes);
            }
        }
    }
}

/// One `[[secrets]]` entry: a KBS resource delivered to the workload as a
/// file under `$CREDENTIALS_DIRECTORY`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SecretConfig {
    /// `repo/type/tag`.
    pub resource: String,
    /// File name under the credentials directory.
    pub file: String,
    /// File mode: 0o400 (default) or 0o440 (readable by the workload's group).
    pub mode: u32,
}

impl Default for SecretConfig {
    fn default() -> Self {
        Self { resource: String::new(), file: String::new(), mode: 0o400 }
    }
}

impl SecretConfig {
    /// The resource path (validated when the configuration was loaded).
    pub fn resource_path(&self) -> Result<ResourcePath, super::resource::ResourcePathError> {
        ResourcePath::parse(&self.resource)
    }
}

/// A name for a file directly under the credentials directory.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Section for SecretConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.resource.is_empty() {
            v.error("resource", "required: the KBS resource path repo/type/tag");
        } else if let Err(e) = self.resource_path() {
            v.error("resource", e);
        }
        if !valid_file_name(&self.file) {
            v.error(
                "file",
                format!("{:?} must be a plain file name: 1-255 of a-z A-Z 0-9 . _ -, not starting with '.'", self.file),
            );
        }
        if self.mode != 0o400 && self.mode != 0o440 {
            v.error("mode", format!("{:#o} is not allowed: use 0o400 or 0o440", self.mode));
        }
    }
}

/// Rules between `[kbs]` and `[[secrets]]`, as (key, message) pairs. The
/// integrator's `Config::validate_across` records each with `v.error(key, msg)`.
pub fn cross_check(kbs: &KbsConfig, secrets: &[SecretConfig]) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    if !secrets.is_empty() && !kbs.is_enabled() {
        issues.push(("kbs.url".to_string(), "required: [[secrets]] are fetched from the KBS".to_string()));
    }
    for (i, s) in secrets.iter().enumerate() {
        if secrets[..i].iter().any(|earlier| earlier.file == s.file) {
            issues.push((format!("secrets[{i}].file"), format!("{:?} is already used by another secret", s.file)));
        }
    }
    issues
}

#[cfg(test)]
mod tests;
